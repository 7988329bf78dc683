"""How much of the expert's next l steps of hand motion can a context-only prior know? (issue 10, hand-insert gates)

A context-only prior P(z | x) can only put into its mean what the context x predicts about the future. This probe
measures that in hand space, on random variants of each task (metaworld's scripted expert, no noise, the clip the
gates of ``evaluate_dynamics`` use): the hand's displacement d over the l plan steps after an m-frame context
starting ``--context-start`` steps after reset, and the share of its energy E||d||^2 that a predictor removes,
``1 - E||d - d_hat||^2 / E||d||^2`` (held out by variant, 5-fold cross-validation):

- ``constant``: the mean displacement over training variants (what a prior that ignores the context can predict);
- ``pixels_64`` / ``pixels_128``: ridge regression from the context frames rendered at 64 px (our models' input) or
  128 px (the paper's), each minus the training variants' mean context (what changes between variants);
- ``state``: ridge from metaworld's 39-d state at the context's last frame (hand, object and goal positions: an upper
  bound of what any observation of this step could tell; the goal part is hidden from the frames).

A share near the ``constant`` one for the pixel predictors means the frames do not show what decides the motion,
whatever the prior's size or training; a large ``state`` share says the decisive information exists in the world.

    MUJOCO_GL=egl python scripts/motion_probe.py --tasks reach-v2,hand-insert-v2 --variants 160 --json motion.json
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from typing import Any, Optional

import numpy as np


def expert_motion(task: str, seed: int, m: int, l: int, start: int, sizes: tuple[int, ...]) -> dict[str, Any]:  # noqa: E741
    """Context frames at each size, the state at the context's last frame and the hand's displacement over the next
    ``l`` expert steps (one env per size, same seed: the same variant and the same expert trajectory)."""
    from sb3_pvdr.envs import get_scripted_policy, make_metaworld_env

    out: dict[str, Any] = {}
    for size in sizes:
        env = make_metaworld_env(task, image_size=size, seed=seed)
        try:
            policy = get_scripted_policy(task)
            obs, _ = env.reset(seed=seed)
            frames, hands, states = [obs["observation"]], [], []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for t in range(start + m + l):
                    state = env.unwrapped.state_observation()
                    states.append(state)
                    hands.append(state[:3].copy())
                    if t == start + m + l - 1:
                        break
                    action = np.clip(policy.get_action(state), -1, 1).astype(np.float32)
                    obs, _, terminated, truncated, _ = env.step(action)
                    frames.append(obs["observation"])
                    if terminated or truncated:
                        raise RuntimeError(f"{task} seed {seed}: the episode ended inside the probe's clip")
        finally:
            env.close()
        last = start + m - 1  # the context's last frame o_{s+m-1}
        out[f"pixels_{size}"] = np.stack(frames[start : start + m]).astype(np.float32) / 255.0
        out["state"] = states[last]
        out["motion"] = hands[last + l] - hands[last]
    return out


def explained_energy(features: Optional[np.ndarray], target: np.ndarray, folds: int = 5, alpha: float = 1.0) -> float:
    """``1 - E||d - d_hat||^2 / E||d||^2`` held out by variant (``features`` None: the training mean as d_hat)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    residual = 0.0
    for train, test in KFold(folds, shuffle=True, random_state=0).split(target):
        if features is None:
            pred = np.broadcast_to(target[train].mean(0), target[test].shape)
        else:
            x = features.reshape(len(features), -1)
            mean, std = x[train].mean(0), x[train].std(0) + 1e-6
            model = Ridge(alpha=alpha * x.shape[1]).fit((x[train] - mean) / std, target[train])
            pred = model.predict((x[test] - mean) / std)
        residual += float(((target[test] - pred) ** 2).sum())
    return 1.0 - residual / float((target**2).sum())


def probe_task(task: str, variants: int, m: int, l: int, start: int, sizes: tuple[int, ...], seed_base: int,  # noqa: E741
               alphas: tuple[float, ...]) -> dict[str, Any]:
    clips = [expert_motion(task, seed_base + i, m, l, start, sizes) for i in range(variants)]
    motion = np.stack([c["motion"] for c in clips])
    report: dict[str, Any] = {
        "variants": variants,
        "context_start": start,
        "motion_norm_mean": float(np.linalg.norm(motion, axis=1).mean()),
        "mean_motion_norm": float(np.linalg.norm(motion.mean(0))),
        "constant": explained_energy(None, motion),
    }
    for key in [f"pixels_{s}" for s in sizes] + ["state"]:
        x = np.stack([c[key] for c in clips])
        # the best ridge strength (scaled by the feature count) of a small grid, reported with it
        scores = {a: explained_energy(x, motion, alpha=a) for a in alphas}
        best = max(scores, key=scores.get)
        report[key] = scores[best]
        report[f"{key}_alpha"] = best
    return report


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="reach-v2,plate-slide-v2,hand-insert-v2")
    parser.add_argument("--variants", type=int, default=160, help="random variants per task (env seeds seed-base + i)")
    parser.add_argument("--seed-base", type=int, default=100_000, help="as evaluate_dynamics: not used in pre-training")
    parser.add_argument("--context-start", type=int, default=0, help="expert steps between reset and the context")
    parser.add_argument("--m", type=int, default=2, help="context frames")
    parser.add_argument("--l", type=int, default=6, help="future steps")
    parser.add_argument("--sizes", default="64,128", help="render sizes of the pixel predictors")
    parser.add_argument("--json", default=None, help="write the report here")
    args = parser.parse_args(argv)
    if args.variants < 10:
        raise SystemExit(f"error: --variants must be >= 10 (5 folds), got {args.variants}")
    os.environ.setdefault("MUJOCO_GL", "egl")
    sizes = tuple(int(s) for s in args.sizes.split(","))
    report: dict[str, Any] = {"settings": vars(args)}
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        r = probe_task(task, args.variants, args.m, args.l, args.context_start, sizes, args.seed_base,
                       alphas=(0.01, 0.1, 1.0, 10.0))
        report[task] = r
        print(f"{task}: |d| {r['motion_norm_mean']:.4f} (|mean d| {r['mean_motion_norm']:.4f}); share of E||d||^2 "
              "explained, held out: " + ", ".join(f"{k} {r[k]:.2f}" for k in ["constant", *[f"pixels_{s}" for s in sizes], "state"]),
              flush=True)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
