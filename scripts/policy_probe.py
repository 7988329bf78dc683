"""How much of a trained run's success is its policy's mean, and how much its exploration noise?

SB3's evaluation (and the experiment runner's "success" column) runs the deterministic policy, the Gaussian's mean;
training episodes sample around it with the policy's std (~1.0 in every reach run, per axis, on actions in [-1, 1]).
A policy whose mean barely moves the arm succeeds in training by its noise and fails in evaluation. This probe loads
a ``train.py`` run (as ``enjoy.py`` does: the run's env, wrapper and, for PVDR, its fine-tuned planning models) and
plays the same variants with the mean action and with sampled actions, reporting per mode: success rate, episode
length, the mean |mean action| over x, y, z (clipped to [-1, 1]), and the hand's distance to the goal at the start and
at the end of the episode (metaworld's ``tcp_center`` and ``_target_pos``); for PVDR with ``--z-samples K`` also
``z_spread``: the std of the policy's mean action over K draws of z from the prior for the same context (how much the
action depends on which plan latent the policy gets, next to ``mean_action_abs``).

    MUJOCO_GL=egl python scripts/policy_probe.py --algo pvdr -f results/reach/runs/pvdr-oracle/reach-v2/seed1 \
        --episodes 8 --json probe.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch as th

from sb3_pvdr.common.errors import cli_entry


def planning_wrapper(env: Any) -> Optional[Any]:
    """The ``PlanningWrapper`` inside a one-env VecEnv's env (``None`` for PPO runs)."""
    from sb3_pvdr.planning import PlanningWrapper

    inner = env.envs[0]
    while inner is not None and not isinstance(inner, PlanningWrapper):
        inner = getattr(inner, "env", None)
    return inner


@th.no_grad()
def z_spread(model: Any, wrapper: Any, obs: dict[str, np.ndarray], samples: int, generator: th.Generator) -> float:
    """How much the policy's mean action depends on which plan latent it gets: its std over ``samples`` draws of z
    from the prior P(z | x[, g]) for this one context, averaged over x, y, z (clipped to [-1, 1]). Comparable with
    ``mean_action_abs``: a spread as large as the mean makes the action a coin toss of the plan sampled."""
    dynamics = wrapper.planner.dynamics
    context = th.as_tensor(obs["context_tokens"][0]).long()[None]
    goal = wrapper._goal_tokens
    prior = dynamics.prior(context, None if goal is None else goal.long()[None])
    eps = th.randn((samples, *prior.mean.shape[1:]), generator=generator)
    zs = (prior.mean + prior.std * eps).float()  # (samples, h, w, d)
    batch = {key: th.as_tensor(np.repeat(value, samples, axis=0)) for key, value in obs.items()}
    batch["z_star"] = zs.reshape(batch["z_star"].shape)
    means = model.policy.get_distribution(batch).distribution.mean.clamp(-1.0, 1.0)[:, :3]
    return float(means.std(dim=0).mean())


def play(model: Any, env: Any, episodes: int, deterministic: bool, z_samples: int = 0) -> dict[str, float]:
    """Play ``episodes`` episodes of a one-env VecEnv; mean figures over them (with ``z_samples`` > 0 and a PVDR
    run also ``z_spread``, see :func:`z_spread`)."""
    metaworld_env = env.envs[0].unwrapped
    wrapper = planning_wrapper(env) if z_samples > 0 else None
    generator = th.Generator().manual_seed(0)
    rows, spreads = [], []
    for _ in range(episodes):
        obs = env.reset()
        inner = metaworld_env._mw_env  # the simulator of this episode (after reset)
        start, goal = inner.tcp_center.copy(), np.asarray(inner._target_pos, dtype=np.float64).copy()
        end, done, steps, success, magnitudes = start, False, 0, False, []
        while not done:
            with th.no_grad():
                obs_tensor, _ = model.policy.obs_to_tensor(obs)
                mean = model.policy.get_distribution(obs_tensor).distribution.mean.cpu().numpy()[0]
            magnitudes.append(np.abs(np.clip(mean[:3], -1.0, 1.0)).mean())
            if wrapper is not None:
                spreads.append(z_spread(model, wrapper, obs, z_samples, generator))
            action, _ = model.predict(obs, deterministic=deterministic)
            obs, _, dones, infos = env.step(action)
            steps, done = steps + 1, bool(dones[0])
            success = success or bool(infos[0].get("is_success", False))
            if not done:  # a done VecEnv has already reset the simulator
                end = inner.tcp_center.copy()
        rows.append((success, steps, np.mean(magnitudes), np.linalg.norm(goal - start), np.linalg.norm(goal - end)))
    table = np.asarray(rows, dtype=np.float64)
    keys = ("success", "episode_length", "mean_action_abs", "hand_goal_start", "hand_goal_end")
    result = {key: round(float(value), 4) for key, value in zip(keys, table.mean(axis=0))}
    if spreads:
        result["z_spread"] = round(float(np.mean(spreads)), 4)
    return result


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", default="pvdr", help="ppo, ppo_tokens or pvdr")
    parser.add_argument("--env", default="reach-v2")
    parser.add_argument("-f", "--folder", required=True, help="the run's train.py -f folder")
    parser.add_argument("--episodes", type=int, default=8, help="episodes per mode (the same variants in both)")
    parser.add_argument("--seed", type=int, default=123, help="env seed (variants)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--load-checkpoint", type=int, default=None, help="rl_model_<N>_steps.zip instead of the final model")
    parser.add_argument("--z-samples", type=int, default=0,
                        help="PVDR: also measure z_spread, the policy mean's std over this many prior draws of z per step")
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        parser.error("--episodes must be positive")
    if args.z_samples < 0 or args.z_samples == 1:
        parser.error("--z-samples must be 0 (off) or at least 2 (a spread needs two draws)")
    os.environ.setdefault("MUJOCO_GL", "egl")
    th.set_num_threads(args.threads)
    from sb3_pvdr.enjoy import load_run

    result: dict[str, Any] = {"run": args.folder, "algo": args.algo, "env": args.env, "episodes": args.episodes}
    for deterministic in (True, False):
        model, env, path = load_run(args.algo, args.env, folder=args.folder, seed=args.seed,  # same variants per mode
                                    load_checkpoint=args.load_checkpoint)
        result["model"] = path
        result["deterministic" if deterministic else "stochastic"] = play(model, env, args.episodes, deterministic,
                                                                           args.z_samples if args.algo == "pvdr" else 0)
        env.close()
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
