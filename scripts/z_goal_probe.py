"""What does the policy's z* tell it about the goal? Linear probes of PVDR's latent on random reach variants.

PVDR's aligner sees only (context tokens x_t, z*_t): the goal image reaches the policy through z* alone, the z that
eq. (2) picked among N prior samples because its plan ends nearest the goal. On random variants (target B of issue
"Make PVDR learn") a policy can only head for the goal if z* encodes where it is. This probe measures that with ridge
regressions (held-out by episode, GroupKFold) from several latents to

- ``goal``: the goal position (3-d; the hand starts in the same place in every variant, so the goal is what differs),
- ``to_goal``: goal - hand position at the planning step,
- ``motion``: the hand's displacement over the l future steps the latent encodes (only for posteriors of real windows),

and with the cosine between the hand motion a latent implies (a ridge decoder z -> motion, fitted on posteriors of
the behaviour's own windows, cross-fitted) and the direction to the goal. Latents:

- ``oracle``: posterior E(x, y) of metaworld's scripted expert's real next l frames (PVDR's ``oracle_z``),
- ``plan@N``: z* of eq. (2) with N prior samples (``plan@1`` is a plain prior sample: "PVDR random"-like),
- ``prior_mean``: the prior's mean (no goal used),
- ``posterior``: E(x, y) of the behaviour's own next l frames (what L_act's targets see).

    MUJOCO_GL=egl python scripts/z_goal_probe.py --episodes 48 --out results/z_goal_probe/reach.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

# n - windows, m - context frames, l - plan frames, h w - token grid, d - z channels


def collect(args: argparse.Namespace, tokenizer: Any, dynamics: Any) -> dict[str, np.ndarray]:
    """Windows every ``args.stride`` steps of random-action and noisy-expert episodes on random variants."""
    from sb3_pvdr.envs import make_metaworld_env
    from sb3_pvdr.envs.goals import get_scripted_policy
    from sb3_pvdr.planning.planner import Planner

    import warnings

    warnings.filterwarnings("ignore", message="Constant", category=UserWarning)  # metaworld's scripted policies
    m, l = dynamics.config.m, dynamics.config.l  # noqa: E741
    planner = Planner(tokenizer, dynamics, metric=args.metric)
    env = make_metaworld_env(args.task, image_size=tokenizer.image_size, seed=args.seed, terminate_on_success=False)
    expert = get_scripted_policy(args.task)
    rng = np.random.default_rng(args.seed)
    gen = th.Generator().manual_seed(args.seed)
    out: dict[str, list] = {"episode": [], "goal": [], "to_goal": [], "motion": [], "context": [], "future": [],
                            "oracle_future": []}
    out.update({f"plan@{n}": [] for n in args.candidates})
    for ep in range(args.episodes):
        obs, _ = env.reset()
        mw = env.unwrapped.metaworld_env
        goal = np.asarray(mw._target_pos, dtype=np.float32).copy()
        goal_target = planner.frame_target(th.from_numpy(obs["desired_goal"])[None])[0]
        state = env.unwrapped.state_observation()
        frames, hands, starts = [obs["observation"]], [state[:3].copy()], []
        random_actions = ep % 2 == 0  # even episodes: sigma-1 random actions (an untrained policy), odd: noisy expert
        for t in range(args.steps):
            if t % args.stride == 0:
                with th.inference_mode():
                    ctx = tokenizer.encode(np.stack(frames[max(0, t - m + 1) : t + 1]))
                ctx = th.cat([ctx[:1].repeat(m - len(ctx), 1, 1), ctx]) if len(ctx) < m else ctx  # (m, h, w)
                with th.inference_mode():
                    oracle = tokenizer.encode(env.unwrapped.expert_future(l))
                for n in args.candidates:
                    out[f"plan@{n}"].append(planner.plan(ctx, goal_target, n, generator=gen, temperature=args.temperature).z_star.numpy())
                out["context"].append(ctx.numpy())
                out["oracle_future"].append(oracle.numpy())
                out["goal"].append(goal)
                out["to_goal"].append(goal - hands[-1])
                out["episode"].append(ep)
                starts.append(t)
            if random_actions:
                action = np.clip(rng.standard_normal(4), -1, 1)
            else:
                action = np.clip(expert.get_action(state) + args.noise * rng.standard_normal(4), -1, 1)
            obs, *_ = env.step(action.astype(np.float32))
            state = env.unwrapped.state_observation()
            frames.append(obs["observation"])
            hands.append(state[:3].copy())
        with th.inference_mode():
            tokens = tokenizer.encode(np.stack(frames)).numpy()  # (steps + 1, h, w)
        for t in starts:
            out["future"].append(tokens[t + 1 : t + 1 + l])
            out["motion"].append(hands[t + l] - hands[t])
        print(f"  episode {ep + 1}/{args.episodes}: {len(starts)} windows, goal {np.round(goal, 3)}", flush=True)
    env.close()
    data = {k: np.stack(v) for k, v in out.items()}
    with th.inference_mode():
        x = th.as_tensor(data["context"]).long()
        data["oracle"] = dynamics.posterior(x, th.as_tensor(data["oracle_future"]).long()).mode().numpy()
        data["posterior"] = dynamics.posterior(x, th.as_tensor(data["future"]).long()).mode().numpy()
        data["prior_mean"] = dynamics.prior(x).mean.numpy()
    return data


def probe(features: np.ndarray, target: np.ndarray, groups: np.ndarray, folds: int) -> tuple[float, np.ndarray]:
    """Held-out R^2 (pooled over folds) of a ridge regression with its alpha chosen inside each training fold."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = features.reshape(len(features), -1)
    pred = np.zeros_like(target)
    for train, test in GroupKFold(n_splits=folds).split(x, target, groups):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13)))
        pred[test] = model.fit(x[train], target[train]).predict(x[test])
    r2 = 1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum()
    return float(r2), pred


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row-wise cosine of ``(n, 3)`` arrays."""
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-8)).mean())


def implied_motion_cosine(data: dict[str, np.ndarray], latent: str, folds: int) -> tuple[float, float]:
    """Mean cosine between the hand motion ``latent`` implies and the direction to the goal, raw and centred.

    The decoder z -> motion is fitted on the behaviour's own windows (``posterior``, whose motion is known) of the
    other episodes, then applied to ``latent`` of the held-out episodes. The raw cosine is high for any latent when
    the goals all lie on one side of the start; the centred one (both minus their means over windows) counts only
    what tells one variant's goal from another's.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(data["motion"])
    src, dst = data["posterior"].reshape(n, -1), data[latent].reshape(n, -1)
    implied = np.zeros_like(data["motion"])
    for train, test in GroupKFold(n_splits=folds).split(src, data["motion"], data["episode"]):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13)))
        implied[test] = model.fit(src[train], data["motion"][train]).predict(dst[test])
    a, b = implied, data["to_goal"]
    return cosine(a, b), cosine(a - a.mean(0), b - b.mean(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="reach-v2")
    parser.add_argument("--episodes", type=int, default=48)
    parser.add_argument("--steps", type=int, default=60, help="agent steps per episode")
    parser.add_argument("--stride", type=int, default=6, help="steps between probed windows")
    parser.add_argument("--candidates", default="1,4,16", help="N of eq. (2), comma-separated")
    parser.add_argument("--metric", default="codes", choices=["codes", "pixels"], help="plan distance (training default: codes)")
    parser.add_argument("--temperature", type=float, default=1.0, help="prior std scale of the candidates (PVDR's prior_temperature)")
    parser.add_argument("--noise", type=float, default=0.5, help="action noise of the expert episodes")
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--model", default="metaworld-64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.candidates = [int(n) for n in args.candidates.split(",")]
    if args.episodes < args.folds:
        parser.error(f"--episodes ({args.episodes}) must be at least --folds ({args.folds})")
    th.set_num_threads(1)

    from sb3_pvdr.dynamics import VisualDynamicsModel
    from sb3_pvdr.pretrained import resolve
    from sb3_pvdr.tokenizer import VQTokenizer

    tokenizer = VQTokenizer.load(resolve(args.model, "tokenizer")).eval()
    dynamics = VisualDynamicsModel.load(resolve(args.model, "dynamics")).eval()
    t0 = time.perf_counter()
    data = collect(args, tokenizer, dynamics)
    print(f"{len(data['goal'])} windows from {args.episodes} episodes in {time.perf_counter() - t0:.0f} s", flush=True)
    latents = ["oracle", *[f"plan@{n}" for n in args.candidates], "prior_mean", "posterior"]
    results: dict[str, Any] = {"task": args.task, "model": args.model, "windows": len(data["goal"]),
                               "args": {k: v for k, v in vars(args).items() if k != "out"}, "probes": {}}
    for latent in latents:
        targets = ("goal", "to_goal", "motion") if latent == "posterior" else ("goal", "to_goal")  # motion: own windows only
        row = {target: round(probe(data[latent], data[target], data["episode"], args.folds)[0], 4) for target in targets}
        raw, centred = implied_motion_cosine(data, latent, args.folds)
        row["cos_implied_motion_to_goal"], row["cos_centred"] = round(raw, 4), round(centred, 4)
        results["probes"][latent] = row
        print(f"  {latent:11s} {row}", flush=True)
    # the real motion of the windows against the direction to the goal (what the behaviour did)
    a, b = data["motion"], data["to_goal"]
    results["cos_real_motion_to_goal"] = round(cosine(a, b), 4)
    results["cos_mean_direction_to_goal"] = round(cosine(np.broadcast_to(b.mean(0), b.shape), b), 4)  # a constant guess
    print(json.dumps(results, indent=1))
    if args.out is not None:
        from sb3_pvdr.experiments.results import write_json_atomic

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, results)


if __name__ == "__main__":
    main()
