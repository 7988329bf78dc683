"""Figures of a trained PVDR agent.

    python -m sb3_pvdr.visualize tsne --model logs/pvdr/reach-v2_1/best_model.zip --env reach-v2 --out fig6.png
        [--samples 2000] [--seed 0] [--size 800] [--stochastic] [--env-kwargs variant:3]

``tsne``: paper Fig. 6 (§5.4, "relevance between visual dynamics representations and actions"). For one
observation context x (the m context frames of a reset: its first frame repeated, as the planning wrapper
builds it), ``--samples`` latents z_i ~ P(. | x) are drawn from the prior, each is labelled with the action the
loaded aligner outputs for (x, z_i) (its mean; ``--stochastic``: a sample, as the paper writes
a_i ~ Pi(x, z_i)), the z_i are embedded in 2-D with scikit-learn's t-SNE, and each point is coloured by its
action: scaled from [-1, 1] to [0, 1], the first four action dimensions are read as C, M, Y, K (Meta-World:
x, y, z and the gripper) and converted to RGB (R = (1 - C)(1 - K), G = (1 - M)(1 - K), B = (1 - Y)(1 - K));
missing dimensions count as 0. Colours that change smoothly over the map mean that nearby z give similar
actions. The context frame is drawn in the corner.

The env is built with the run's env kwargs when the model lies in a ``train.py`` run folder
(``<run>/<env>/config.yml``), else at the tokenizer's image size; ``--env-kwargs`` override them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional, Sequence

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from rl_zoo3.utils import StoreDict

from sb3_pvdr.common.errors import CheckpointError, ConfigError, DependencyError, cli_entry
from sb3_pvdr.dynamics import DiagonalGaussian
from sb3_pvdr.enjoy import CUSTOM_OBJECTS
from sb3_pvdr.zoo import DEFAULT_ENV, check_env_id, import_env_packages

# n - samples, m - context frames, h w - token grid, d - z features, a - action dimensions


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sb3_pvdr.visualize", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tsne = commands.add_parser("tsne", help="paper Fig. 6: t-SNE of prior samples of z coloured by the aligner's action")
    tsne.add_argument("--model", required=True, help="a PVDR zip (e.g. logs/pvdr/reach-v2_1/best_model.zip)")
    tsne.add_argument("--env", default=DEFAULT_ENV, help="environment id of the context frame")
    tsne.add_argument("--out", required=True, help="PNG file to write")
    tsne.add_argument("--samples", type=int, default=2000, help="prior samples of z (paper: 2000)")
    tsne.add_argument("--seed", type=int, default=0, help="seed of the env reset, the prior samples and t-SNE")
    tsne.add_argument("--size", type=int, default=800, help="width and height of the PNG in pixels")
    tsne.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (capped for few samples)")
    tsne.add_argument("--stochastic", action="store_true", help="sample the actions instead of the aligner's mean")
    tsne.add_argument("--device", default="cpu")
    tsne.add_argument("--env-kwargs", type=str, nargs="+", action=StoreDict, help="override env kwargs, key:value")
    args = parser.parse_args(argv)
    if args.samples < 8:
        raise ConfigError(f"--samples must be at least 8, got {args.samples}")
    if args.size < 100:
        raise ConfigError(f"--size must be at least 100 pixels, got {args.size}")
    if Path(args.out).suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out}: use a .png file name")
    return args


def cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """``(n, 4)`` CMYK in [0, 1] -> ``(n, 3)`` RGB in [0, 1]."""
    cmy, k = cmyk[:, :3], cmyk[:, 3:4]
    return (1.0 - cmy) * (1.0 - k)


def action_colors(actions: np.ndarray) -> np.ndarray:
    """Fig. 6's colouring: actions ``(n, a)`` in [-1, 1] -> RGB ``(n, 3)`` via CMYK (first 4 dims; missing = 0)."""
    scaled = (np.clip(actions, -1.0, 1.0) + 1.0) / 2.0
    cmyk = np.zeros((len(actions), 4))
    cmyk[:, : min(4, actions.shape[1])] = scaled[:, :4]
    return cmyk_to_rgb(cmyk)


def run_env_kwargs_of(model_path: Path, env_id: str) -> dict[str, Any]:
    """The env kwargs of the ``train.py`` run a model file lies in (``<run>/<env>/config.yml``), else ``{}``."""
    config = model_path.parent / env_id / "config.yml"
    if not config.is_file():
        return {}
    return dict((yaml.load(config.read_text(), Loader=yaml.UnsafeLoader) or {}).get("env_kwargs") or {})


@th.no_grad()
def prior_actions(model: Any, context: th.Tensor, n: int, seed: int = 0, deterministic: bool = True,
                  goal: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """
    ``n`` latents z ~ P(. | x) for one context x, and the aligner's actions for (x, z).
    ``goal``: the goal image ``(H, W, 3)`` uint8, for a goal-conditioned prior (``prior_goal``).

    :param model: a PVDR model (``dynamics``, ``policy``)
    :param context: context tokens ``(m, h, w)``
    :return: ``z (n, h, w, d)`` and actions ``(n, a)`` (clipped to the action space)
    """
    device = model.device
    x = context[None].to(device)
    model.dynamics.eval()
    model.policy.set_training_mode(False)
    goal_tokens = model.tokenizer.encode(goal[None]).long().to(device) if goal is not None else None
    prior = model.dynamics.prior(x, goal_tokens)
    expanded = DiagonalGaussian(prior.mean.expand(n, *prior.mean.shape[1:]), prior.logvar.expand(n, *prior.logvar.shape[1:]))
    z = expanded.sample(generator=th.Generator(device=device).manual_seed(seed))
    actions = []
    if not deterministic:
        th.manual_seed(seed)  # SB3's distributions sample from the global generator
    for start in range(0, n, 256):
        chunk = z[start : start + 256]
        observation = {"context_tokens": x.expand(len(chunk), *x.shape[1:]), "z_star": chunk}
        distribution = model.policy.get_distribution(observation)
        actions.append(distribution.mode() if deterministic else distribution.sample())
    low, high = model.action_space.low, model.action_space.high
    return z.cpu().numpy(), np.clip(th.cat(actions).cpu().numpy(), low, high)


def embed_tsne(z: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE of flattened latents ``(n, ...)`` -> ``(n, 2)`` (scikit-learn; perplexity capped below n / 3)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as exc:
        raise DependencyError("the t-SNE figure needs scikit-learn: pip install scikit-learn") from exc
    flat = z.reshape(len(z), -1)
    return TSNE(n_components=2, perplexity=min(perplexity, (len(z) - 1) / 3), init="pca", random_state=seed).fit_transform(flat)


def tsne_figure(points: np.ndarray, colors: np.ndarray, frame: Optional[np.ndarray], out: Path, size: int = 800, title: str = "") -> None:
    """Scatter ``points`` in ``colors`` into a ``size`` x ``size`` PNG, the context ``frame`` in the corner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(size / 100, size / 100), dpi=100)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86))
    ax.scatter(points[:, 0], points[:, 1], c=colors, s=max(2.0, 12000 / len(points)), linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.suptitle(title, fontsize=max(6.0, size / 90))
    if frame is not None:
        inset = fig.add_axes((0.03, 0.71, 0.16, 0.16))
        inset.imshow(frame)
        inset.set_axis_off()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def tsne(args: argparse.Namespace) -> dict[str, Any]:
    """The ``tsne`` command: see the module docstring."""
    from sb3_pvdr.planning import PlanningWrapper
    from sb3_pvdr.pvdr import PVDR

    import_env_packages()
    check_env_id(args.env)
    model_path = Path(args.model).expanduser()
    if not model_path.is_file():
        raise CheckpointError(f"--model {model_path}: no such file (a PVDR zip, e.g. logs/pvdr/reach-v2_1/best_model.zip)")
    model = PVDR.load(model_path, device=args.device, custom_objects=CUSTOM_OBJECTS)
    env_kwargs = {"image_size": model.tokenizer.image_size, **run_env_kwargs_of(model_path, args.env), **(args.env_kwargs or {})}
    env = PlanningWrapper(gym.make(args.env, **env_kwargs), model.tokenizer, model.dynamics, n_candidates=1, seed=args.seed)
    try:
        obs, info = env.reset(seed=args.seed)
    finally:
        env.close()
    z, actions = prior_actions(model, th.as_tensor(obs["context_tokens"]), args.samples, args.seed,
                               deterministic=not args.stochastic, goal=info["goal"])
    points = embed_tsne(z, args.seed, args.perplexity)
    colors = action_colors(actions)
    kind = "sampled" if args.stochastic else "mean"
    title = f"{args.env}: t-SNE of {args.samples} prior samples of z\ncoloured by the aligner's {kind} action (CMYK)"
    out = Path(args.out).expanduser()
    tsne_figure(points, colors, info["frame"], out, args.size, title)
    print(f"Wrote {out}")
    return {"path": str(out), "points": points, "colors": colors, "actions": actions}


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """``python -m sb3_pvdr.visualize COMMAND ...``; returns the command's results."""
    args = parse_args(argv)
    return {"tsne": tsne}[args.command](args)


if __name__ == "__main__":
    main()
