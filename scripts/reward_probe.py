"""Is the image-goal reward (-mean |pixel| distance of the frame to the goal image, the env's reward without the
success bonus) monotone in the hand's distance to the goal? Random-action (sigma = 1), fixed-push and scripted-expert
reach episodes (one each in turn, 120 agent steps, random variants); Spearman correlations overall and within
episodes, the mean pixel distance per band of hand-to-goal distance, and the within-episode slope vs its residual.

    MUJOCO_GL=egl python scripts/reward_probe.py 30
"""
import sys

import numpy as np
import torch
from scipy.stats import spearmanr

torch.set_num_threads(1)
from sb3_pvdr.envs import make_metaworld_env
from sb3_pvdr.envs.goals import get_scripted_policy
env = make_metaworld_env("reach-v2", image_size=64, seed=7, terminate_on_success=False)
policy = get_scripted_policy("reach-v2")
rng = np.random.default_rng(0)
rows = []  # (episode, hand-goal distance, pixel distance)
for ep in range(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
    obs, _ = env.reset()
    mw = env.unwrapped._mw_env
    goal_pos = np.asarray(mw._target_pos).copy()
    mode = ep % 3  # 0 random, 1 fixed push, 2 expert
    push = rng.uniform(-1, 1, 4); push[3] = 0
    for t in range(120):
        if mode == 0: a = rng.normal(0, 1, 4)
        elif mode == 1: a = push + rng.normal(0, 0.3, 4)
        else: a = policy.get_action(env.unwrapped.state_observation())
        obs, r, term, trunc, info = env.step(np.clip(a, -1, 1))
        pix = -(r - (env.unwrapped.success_reward if info["is_success"] else 0.0))
        rows.append((ep, np.linalg.norm(mw.tcp_center - goal_pos), pix))
        if trunc: break
r = np.array(rows)
print("spearman(hand-goal, pixel distance) overall:", round(float(spearmanr(r[:,1], r[:,2])[0]), 3))
per = [spearmanr(r[r[:,0]==e,1], r[r[:,0]==e,2])[0] for e in np.unique(r[:,0])]
print("per-episode spearman: median", round(float(np.nanmedian(per)),3), "share < 0:", round(float(np.mean(np.array(per) < 0)),3))
bins = [0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 2]
# within-episode normalised: pixel distance minus the episode's pixel distance at its closest hand position
for lo, hi in zip(bins[:-1], bins[1:]):
    m = (r[:,1] >= lo) & (r[:,1] < hi)
    if m.any(): print(f"hand-goal [{lo:.2f},{hi:.2f}): n={m.sum():5d} pixel distance mean {r[m,2].mean():.4f}")
per = np.array(per)
for mode, name in ((0, "random sigma=1"), (1, "fixed push"), (2, "expert")):
    sel = per[mode::3]
    print(f"{name}: per-episode spearman median {np.nanmedian(sel):.3f}, share < 0 {np.mean(sel < 0):.2f}")
# slope: within an episode, how much does the pixel distance change per 0.1 of hand-goal distance, vs its step-to-step noise?
slopes, noise = [], []
for e in np.unique(r[:,0]):
    x, y = r[r[:,0]==e,1], r[r[:,0]==e,2]
    if x.std() > 0.02:
        slopes.append(np.polyfit(x, y, 1)[0] * 0.1); noise.append(np.std(y - np.polyval(np.polyfit(x, y, 1), x)))
print("within-episode slope per 0.1 hand-goal:", np.round(np.median(slopes), 4), " residual std:", np.round(np.median(noise), 4))
