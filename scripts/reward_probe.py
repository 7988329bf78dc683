"""Is the image-goal reward (-mean |pixel| distance of the frame to the goal image, the env's reward without the
success bonus) monotone in the hand's distance to the goal? Random-action (sigma = 1), fixed-push and scripted-expert
reach episodes (one each in turn, 120 agent steps, random variants); Spearman correlations overall and within
episodes, the mean pixel distance per band of hand-to-goal distance, and the within-episode slope vs its residual.

    MUJOCO_GL=egl python scripts/reward_probe.py 30
"""

from __future__ import annotations

import os
import sys

import numpy as np
from scipy.stats import spearmanr

MODES = ("random sigma=1", "fixed push", "expert")
BANDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 2.0)


def collect(episodes: int, steps: int = 120, seed: int = 7) -> np.ndarray:
    """Rows ``(episode, hand-goal distance, pixel distance)``; episode ``e`` uses mode ``MODES[e % 3]``."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from sb3_pvdr.envs import make_metaworld_env
    from sb3_pvdr.envs.goals import get_scripted_policy

    env = make_metaworld_env("reach-v2", image_size=64, seed=seed, terminate_on_success=False)
    policy = get_scripted_policy("reach-v2")
    rng = np.random.default_rng(0)
    rows = []
    for episode in range(episodes):
        env.reset()
        simulator = env.unwrapped._mw_env
        goal = np.asarray(simulator._target_pos).copy()
        push = np.append(rng.uniform(-1, 1, 3), 0.0)
        for _ in range(steps):
            mode = episode % 3
            if mode == 0:
                action = rng.normal(0, 1, 4)
            elif mode == 1:
                action = push + rng.normal(0, 0.3, 4)
            else:
                action = policy.get_action(env.unwrapped.state_observation())
            _, reward, _, truncated, info = env.step(np.clip(action, -1, 1))
            pixel = -(reward - (env.unwrapped.success_reward if info["is_success"] else 0.0))
            rows.append((episode, np.linalg.norm(simulator.tcp_center - goal), pixel))
            if truncated:
                break
    env.close()
    return np.asarray(rows)


def summarise(rows: np.ndarray) -> dict:
    episodes = np.unique(rows[:, 0])
    per_episode = np.array([spearmanr(rows[rows[:, 0] == e, 1], rows[rows[:, 0] == e, 2])[0] for e in episodes])
    slopes, residuals = [], []
    for e in episodes:
        x, y = rows[rows[:, 0] == e, 1], rows[rows[:, 0] == e, 2]
        if x.std() > 0.02:
            fit = np.polyfit(x, y, 1)
            slopes.append(fit[0] * 0.1)
            residuals.append(np.std(y - np.polyval(fit, x)))
    bands = {}
    for lo, hi in zip(BANDS[:-1], BANDS[1:]):
        sel = (rows[:, 1] >= lo) & (rows[:, 1] < hi)
        if sel.any():
            bands[f"{lo:.2f}-{hi:.2f}"] = (int(sel.sum()), float(rows[sel, 2].mean()))
    return {
        "spearman_all": float(spearmanr(rows[:, 1], rows[:, 2])[0]),
        "spearman_episode_median": float(np.nanmedian(per_episode)),
        "spearman_episode_negative_share": float(np.mean(per_episode < 0)),
        "per_mode": {name: float(np.nanmedian(per_episode[i::3])) for i, name in enumerate(MODES)},
        "bands": bands,
        "slope_per_0.1": float(np.median(slopes)) if slopes else float("nan"),
        "residual_std": float(np.median(residuals)) if residuals else float("nan"),
    }


def main(episodes: int = 30) -> dict:
    result = summarise(collect(episodes))
    print(f"spearman(hand-goal, pixel distance) overall: {result['spearman_all']:.3f}")
    print(f"per-episode spearman: median {result['spearman_episode_median']:.3f} share < 0: {result['spearman_episode_negative_share']:.2f}")
    for band, (n, mean) in result["bands"].items():
        print(f"hand-goal [{band}): n={n:5d} pixel distance mean {mean:.4f}")
    for name, value in result["per_mode"].items():
        print(f"{name}: per-episode spearman median {value:.3f}")
    print(f"within-episode slope per 0.1 hand-goal: {result['slope_per_0.1']:.4f}  residual std: {result['residual_std']:.4f}")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
