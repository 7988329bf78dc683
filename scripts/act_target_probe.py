"""Is L_act's target predictable? A supervised probe of eq. (5)'s inverse-dynamics regression.

L_act (eq. (5)) regresses the executed action a_t onto Pi(x_t, z_t), z_t = E(x_t, y_t) the posterior of the real
next l frames. Early in training the actions are the initial policy's noise (sigma = 1, independent per step),
while z_t summarises l = 6 of them: a_t is then one sixth of what z_t shows, and the rest is noise no network can
fit (in the online runs ``train/act_loss`` stays at the norm of the actions themselves, 1.39). The mean action of
the window, a_t..a_{t+l-1}, is what z_t does show. This probe fits both targets with PVDR's policy network on
random-action reach windows (``policy.get_distribution(obs).distribution.mean``, MSE, ~1000 Adam steps as in 10k env
steps of PPO), and then asks the question PVDR's planning relies on: fed the posterior of the *scripted expert's*
real future (the oracle z), does the fitted network output the expert's action?

    MUJOCO_GL=egl python scripts/act_target_probe.py --out results/act_target_probe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

# T - steps of an episode, l - plan frames, m - context frames, h w - token grid


def episodes(task: str, n: int, steps: int, seed: int, expert: bool, tokenizer: Any, m: int, l: int, k: int = 1) -> dict[str, np.ndarray]:  # noqa: E741
    """Windows (context tokens, future tokens, a_t, mean action of the window) of random-action or expert episodes.

    With a model pre-trained on every k-th frame (``frame_step``), the context is o_{t-(m-1)k}, ..., o_t, the
    future o_{t+k}, ..., o_{t+lk}, and the window's mean action is over the l*k actions a_t, ..., a_{t+lk-1}.
    """
    from sb3_pvdr.envs import make_metaworld_env
    from sb3_pvdr.envs.goals import get_scripted_policy
    from sb3_pvdr.planning import context_indices

    env = make_metaworld_env(task, image_size=tokenizer.image_size, seed=seed, terminate_on_success=False)
    policy = get_scripted_policy(task)
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"context": [], "future": [], "action": [], "window_mean": []}
    for _ in range(n):
        obs, _ = env.reset()
        frames, actions = [obs["observation"]], []
        for _ in range(steps):
            if expert:
                action = np.clip(policy.get_action(env.unwrapped.state_observation()), -1, 1)
            else:
                action = np.clip(rng.standard_normal(4), -1, 1)
            obs, *_ = env.step(action)
            frames.append(obs["observation"])
            actions.append(action)
        with th.inference_mode():
            tokens = tokenizer.encode(np.stack(frames)).numpy()  # (T + 1, h, w): o_0, ..., o_T
        acts = np.asarray(actions, dtype=np.float32)
        for t in range(steps - l * k + 1):
            out["context"].append(tokens[context_indices(t, m, k)])
            out["future"].append(tokens[t + k : t + l * k + 1 : k])
            out["action"].append(acts[t])
            out["window_mean"].append(acts[t : t + l * k].mean(0))
    env.close()
    return {key: np.stack(v) for key, v in out.items()}


def ridge_fit(target: str, train: dict[str, np.ndarray], tests: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """The same question for a linear read-out of z alone (standardised ridge, alpha chosen on the training windows):
    a network fitting below it overfits; a ridge at 0 says z does not carry the target."""
    from sb3_pvdr.planning.goal_probe import _ridge

    model = _ridge().fit(train["z"].reshape(len(train["z"]), -1), train[target][:, :3])
    result: dict[str, Any] = {}
    for name, data in tests.items():
        pred = th.as_tensor(model.predict(data["z"].reshape(len(data["z"]), -1)), dtype=th.float32)
        for key in ("action", "window_mean"):
            result[f"{name}/r2_xyz_{key}"] = round(r2(pred, th.as_tensor(data[key])[:, :3]), 4)
    print(f"  ridge  {'z only':11s} target {target:11s} {result}", flush=True)
    return result


@th.no_grad()
def posterior(dynamics: Any, data: dict[str, np.ndarray]) -> np.ndarray:
    z = []
    for i in range(0, len(data["context"]), 256):
        x = th.as_tensor(data["context"][i : i + 256]).long()
        y = th.as_tensor(data["future"][i : i + 256]).long()
        z.append(dynamics.posterior(x, y).mode().numpy())
    return np.concatenate(z)


def r2(pred: th.Tensor, target: th.Tensor) -> float:
    return float(1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())


def fit(arch: str, target: str, train: dict[str, np.ndarray], tests: dict[str, dict[str, np.ndarray]], steps: int, seed: int,
        inputs: str = "z", codebook: str | None = None, num_tokens: int = 256) -> dict[str, Any]:
    """Fit PVDR's policy network (``inputs="z"``: context + posterior z, what L_act sees) or the token-PPO network
    on the context and the real future frames themselves (``inputs="frames"``: what z could at best tell).
    ``codebook``: embed the tokens with that tokenizer's frozen codebook instead of a fresh table; ``num_tokens``: the
    tokenizer's codebook size."""
    from sb3_pvdr.ppo_tokens import TokenGoalPolicy
    from sb3_pvdr.pvdr import PVDRPolicy

    th.manual_seed(seed)
    m, h, w = train["context"].shape[1:]
    l = train["future"].shape[1]  # noqa: E741
    kwargs: dict[str, Any] = dict(dim=64, depth=3, heads=4, ff_dim=128) if arch == "transformer" else dict(arch="cnn")
    if codebook is not None:
        kwargs["codebook"] = codebook
    action_space = spaces.Box(-1, 1, (4,), np.float32)
    if inputs == "z":
        space = spaces.Dict({
            "context_tokens": spaces.Box(0, num_tokens - 1, (m, h, w), np.int64),
            "z_star": spaces.Box(-np.inf, np.inf, train["z"].shape[1:], np.float32),
        })
        policy = PVDRPolicy(space, action_space, lambda _: 3e-4, features_extractor_kwargs=kwargs)
    else:  # the whole clip as "context", its last frame in the goal's place
        space = spaces.Dict({
            "context_tokens": spaces.Box(0, num_tokens - 1, (m + l, h, w), np.int64),
            "goal_tokens": spaces.Box(0, num_tokens - 1, (1, h, w), np.int64),
        })
        policy = TokenGoalPolicy(space, action_space, lambda _: 3e-4, features_extractor_kwargs=kwargs)
    optimizer = th.optim.Adam(policy.parameters(), lr=3e-4)

    def predict(data: dict[str, np.ndarray], idx: Any) -> th.Tensor:
        if inputs == "z":
            obs = {"context_tokens": th.as_tensor(data["context"][idx]).float(), "z_star": th.as_tensor(data["z"][idx])}
        else:
            clip = np.concatenate([data["context"][idx], data["future"][idx]], axis=1)
            obs = {"context_tokens": th.as_tensor(clip).float(), "goal_tokens": th.as_tensor(clip[:, -1:]).float()}
        return policy.get_distribution(obs).distribution.mean

    gen = np.random.default_rng(seed)
    y = th.as_tensor(train[target])
    start = time.perf_counter()
    for _ in range(steps):
        idx = gen.integers(0, len(y), 100)
        loss = ((predict(train, idx) - y[idx]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result: dict[str, Any] = {"seconds": round(time.perf_counter() - start, 1)}
    with th.no_grad():
        for name, data in tests.items():
            pred = th.cat([predict(data, slice(i, i + 256)) for i in range(0, len(data["z"]), 256)])
            for key in ("action", "window_mean"):  # x, y, z of the hand (the gripper's effort is barely visible)
                result[f"{name}/r2_xyz_{key}"] = round(r2(pred[:, :3], th.as_tensor(data[key])[:, :3]), 4)
            cos = th.nn.functional.cosine_similarity(pred[:, :3], th.as_tensor(data["action"])[:, :3], dim=-1)
            result[f"{name}/cos_xyz_action"] = round(float(cos.mean()), 4)
    print(f"  {inputs:6s} {arch:11s}{' codebook' if codebook else ''} target {target:11s} {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="reach-v2")
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--steps-per-episode", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--archs", default="transformer,cnn")
    parser.add_argument("--inputs", default="z", help="z (context + posterior z, L_act's input), frames (context + real future tokens), or both")
    parser.add_argument("--targets", default="action,window_mean")
    parser.add_argument("--model", default="metaworld-64", help="shipped model (or tokenizer checkpoint with --dynamics)")
    parser.add_argument("--dynamics", default=None, help="dynamics checkpoint (default: --model's); its frame_step is used")
    parser.add_argument("--codebook", action="store_true", help="embed tokens with the tokenizer's frozen codebook (policy kwarg codebook)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    th.set_num_threads(1)

    from sb3_pvdr.dynamics import VisualDynamicsModel
    from sb3_pvdr.pretrained import resolve
    from sb3_pvdr.tokenizer import VQTokenizer

    tokenizer = VQTokenizer.load(resolve(args.model, "tokenizer")).eval()
    dynamics = VisualDynamicsModel.load(resolve(args.dynamics or args.model, "dynamics")).eval()
    dynamics.check_tokenizer(tokenizer)
    m, l, k = dynamics.config.m, dynamics.config.l, dynamics.config.frame_step  # noqa: E741
    t0 = time.perf_counter()
    n, steps = args.episodes, args.steps_per_episode
    train = episodes(args.task, n, steps, args.seed, False, tokenizer, m, l, k)
    tests = {
        "random": episodes(args.task, max(n // 4, 1), steps, args.seed + 1000, False, tokenizer, m, l, k),
        "expert": episodes(args.task, max(n // 4, 1), max(40, l * k + 10), args.seed + 2000, True, tokenizer, m, l, k),
    }
    for data in (train, *tests.values()):
        data["z"] = posterior(dynamics, data)
    print(f"{len(train['z'])} train windows, {len(tests['random']['z'])} / {len(tests['expert']['z'])} random / expert "
          f"test windows in {time.perf_counter() - t0:.0f} s", flush=True)
    results: dict[str, Any] = {"task": args.task, "model": args.model, "codebook": args.codebook, "dynamics": args.dynamics or args.model, "m": m, "l": l,
                               "frame_step": k, "train_windows": len(train["z"]), "train_steps": args.train_steps, "fits": {}}
    for target in args.targets.split(","):
        results["fits"][f"ridge/{target}"] = ridge_fit(target, train, tests)
    codebook = args.model if args.codebook else None  # the extractor resolves the name or path to the tokenizer's codebook
    for inputs in args.inputs.split(","):
        for arch in args.archs.split(","):
            for target in args.targets.split(","):
                key = f"{arch}/{target}" if inputs == "z" else f"{inputs}/{arch}/{target}"
                key = f"{key}/codebook" if args.codebook else key
                results["fits"][key] = fit(arch, target, train, tests, args.train_steps, args.seed, inputs, codebook,
                                           tokenizer.codebook_size)
    print(json.dumps(results, indent=1))
    if args.out is not None:
        from sb3_pvdr.experiments.results import write_json_atomic

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, results)


if __name__ == "__main__":
    main()
