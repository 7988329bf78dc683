"""Record a trained agent to a video file (gif or mp4): what it sees, its goal and, for PVDR, the plan it follows.

    python -m sb3_pvdr.record_agent --algo pvdr --env reach-v2 -f logs/ --load-best --out agent.gif
    python -m sb3_pvdr.record_agent --algo ppo --env reach-v2 --episodes 3 --out ppo.mp4 --scale 4

The run is loaded as ``enjoy.py`` loads it (:func:`sb3_pvdr.enjoy.load_run`: the run's ``config.yml`` env
kwargs and ``env_wrapper``, the zip's planning models bound to the env). Each video frame is one agent step t,
left to right:

- ``frame``: the current observation o_t the agent acts on;
- ``goal``: the goal image g;
- PVDR only, ``plan +1`` ... ``plan +l``: the chosen plan (``info["plan_tokens"]`` of the planning wrapper,
  eq. (2)) decoded by the model's tokenizer, i.e. the l future frames the agent is trying to follow.

The last frame of each episode (o_T, with the plan made for it) is included. The format follows ``--out``'s
extension (``.gif``, or ``.mp4`` through imageio-ffmpeg).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional, Sequence

import imageio.v3 as imageio
import numpy as np
import torch as th
from PIL import Image, ImageDraw
from rl_zoo3.utils import StoreDict
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from sb3_pvdr.common.errors import ConfigError, cli_entry
from sb3_pvdr.enjoy import DEFAULT_LOG_FOLDER, load_run
from sb3_pvdr.zoo import DEFAULT_ENV

VIDEO_SUFFIXES = (".gif", ".mp4")
LABEL_HEIGHT = 12


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sb3_pvdr.record_agent", description=__doc__.split("\n")[0])
    parser.add_argument("--algo", default="ppo", help="ppo, ppo_tokens or pvdr")
    parser.add_argument("--env", default=DEFAULT_ENV, help="environment id, e.g. reach-v2")
    parser.add_argument("-f", "--folder", default=DEFAULT_LOG_FOLDER, help="train.py's log folder")
    parser.add_argument("--exp-id", type=int, default=0, help="run number (<env>_<id>); 0: the latest")
    parser.add_argument("--load-best", action="store_true", help="best_model.zip instead of the final model")
    parser.add_argument("--load-checkpoint", type=int, default=None, help="rl_model_<N>_steps.zip")
    parser.add_argument("--load-last-checkpoint", action="store_true", help="the latest rl_model_*_steps.zip")
    parser.add_argument("--out", required=True, help="video file to write (.gif or .mp4)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to record")
    parser.add_argument("-n", "--n-timesteps", type=int, default=1000, help="at most this many agent steps")
    parser.add_argument("--fps", type=int, default=10, help="frames per second of the video")
    parser.add_argument("--scale", type=int, default=2, help="integer upscaling of the (small) frames")
    parser.add_argument("--stochastic", action="store_true", help="sample actions (default: deterministic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--env-kwargs", type=str, nargs="+", action=StoreDict, help="override env kwargs of the run, key:value")
    args = parser.parse_args(argv)
    if Path(args.out).suffix.lower() not in VIDEO_SUFFIXES:
        raise ConfigError(f"--out {args.out}: use a .gif or .mp4 file name")
    for name in ("episodes", "n_timesteps", "fps", "scale"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


# ----------------------------------------------------------------------------------------------
# frames
# ----------------------------------------------------------------------------------------------


def panel(frame: np.ndarray, goal: np.ndarray, plan: Optional[np.ndarray] = None, scale: int = 1) -> np.ndarray:
    """
    One video frame: labelled tiles ``frame | goal | plan +1 ... plan +l``.

    :param frame: current observation ``uint8 (H, W, 3)``
    :param goal: goal image ``uint8 (H, W, 3)``
    :param plan: decoded plan frames ``uint8 (l, H, W, 3)`` or ``None``
    :param scale: integer upscaling of every tile
    :return: ``uint8 (LABEL_HEIGHT + H * scale, n_tiles * W * scale, 3)``
    """
    tiles = [("frame", frame), ("goal", goal)] + [(f"plan +{k + 1}", image) for k, image in enumerate(plan if plan is not None else [])]
    height, width = frame.shape[0] * scale, frame.shape[1] * scale
    canvas = Image.new("RGB", (width * len(tiles), LABEL_HEIGHT + height))
    draw = ImageDraw.Draw(canvas)
    for i, (label, image) in enumerate(tiles):
        canvas.paste(Image.fromarray(np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)), (i * width, LABEL_HEIGHT))
        draw.text((i * width + 2, 0), label, fill=(255, 255, 255))
    return np.asarray(canvas)


def decode_plan(model: BaseAlgorithm, plan_tokens: np.ndarray) -> np.ndarray:
    """``(l, h, w)`` plan tokens -> ``uint8 (l, H, W, 3)`` frames with the model's tokenizer."""
    tokenizer = model.tokenizer  # type: ignore[attr-defined]
    with th.no_grad():
        frames = tokenizer.decode(th.as_tensor(plan_tokens, device=model.device))
    return (frames.cpu().numpy() * 255).round().astype(np.uint8)


def _view(
    model: BaseAlgorithm, env: VecEnv, obs: Any, info: dict[str, Any], from_env: bool = True
) -> Optional[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
    """(frame, goal, decoded plan or None) of the first env, from the planning wrapper's info, the observation
    images, or (``from_env``, token observations) the env's current frame; ``None`` when none has images."""
    if "frame" in info and "goal" in info:
        plan = decode_plan(model, info["plan_tokens"]) if "plan_tokens" in info and hasattr(model, "tokenizer") else None
        return info["frame"], info["goal"], plan
    if isinstance(obs, dict) and "observation" in obs and "desired_goal" in obs:
        return np.asarray(obs["observation"]), np.asarray(obs["desired_goal"]), None
    if not from_env:
        return None
    try:
        return env.env_method("render_frame", indices=[0])[0], env.get_attr("goal_image", indices=[0])[0], None
    except AttributeError:
        return None


def record(model: BaseAlgorithm, env: VecEnv, episodes: int = 1, max_steps: int = 1000, deterministic: bool = True, scale: int = 2) -> tuple[list[np.ndarray], list[bool]]:
    """
    Run ``model`` on the first env of ``env`` and draw a :func:`panel` per step.

    :return: the video frames and each finished episode's success
    """
    obs = env.reset()
    info: dict[str, Any] = dict(env.reset_infos[0]) if getattr(env, "reset_infos", None) else {}
    frames: list[np.ndarray] = []
    successes: list[bool] = []
    first = lambda o: {k: v[0] for k, v in o.items()} if isinstance(o, dict) else o[0]  # noqa: E731
    for _ in range(max_steps):
        view = _view(model, env, first(obs), info)
        if view is None:
            raise ConfigError("the env gives no images to record (no frame/goal in its observations, infos or attributes)")
        frames.append(panel(*view, scale=scale))
        action, _ = model.predict(obs, deterministic=deterministic)
        obs, _, dones, infos = env.step(action)
        info = infos[0]
        if dones[0]:
            last = _view(model, env, info.get("terminal_observation"), info, from_env=False)  # o_T, before the reset
            if last is not None:
                frames.append(panel(*last, scale=scale))
            successes.append(bool(info.get("is_success", False)))
            info = dict(env.reset_infos[0]) if getattr(env, "reset_infos", None) else {}
            if len(successes) >= episodes:
                break
    return frames, successes


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Write ``frames`` as a gif (looping) or an mp4 (padded with black to multiples of 16 pixels, which
    imageio-ffmpeg would otherwise reach by resizing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    video = np.stack(frames)
    if path.suffix.lower() == ".gif":
        imageio.imwrite(path, video, extension=".gif", duration=1000 / fps, loop=0)
        return
    video = np.pad(video, ((0, 0), (0, -video.shape[1] % 16), (0, -video.shape[2] % 16), (0, 0)))
    imageio.imwrite(path, video, extension=".mp4", fps=fps)


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Record the agent; returns ``{"path", "frames", "episodes", "successes"}``."""
    args = parse_args(argv)
    model, env, model_path = load_run(
        args.algo, args.env, args.folder, args.exp_id, args.load_best, args.load_checkpoint, args.load_last_checkpoint,
        env_kwargs=args.env_kwargs, seed=args.seed, device=args.device,
    )  # fmt: skip
    print(f"Loaded {model_path}")
    try:
        frames, successes = record(model, env, args.episodes, args.n_timesteps, not args.stochastic, args.scale)
    finally:
        env.close()
    out = Path(args.out).expanduser()
    write_video(out, frames, args.fps)
    rate = f", success {sum(successes)}/{len(successes)}" if successes else ""
    print(f"Wrote {out} ({len(frames)} frames, {len(successes)} finished episodes{rate})")
    return {"path": str(out), "frames": len(frames), "episodes": len(successes), "successes": successes}


if __name__ == "__main__":
    main()
