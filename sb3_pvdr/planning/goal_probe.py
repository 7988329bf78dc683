"""What does the policy's z* tell it about the goal? Linear probes of PVDR's latents on random task variants.

PVDR's aligner sees only (context tokens x_t, z*_t): the goal image reaches the policy through z* alone, the z
that eq. (2) picked among N prior samples because its plan is nearest the goal. On random variants a policy can only
head for the goal if z* encodes where it is. Ridge regressions (held out by episode: ``GroupKFold``; every episode
is a new variant) from several latents to

- ``goal``: the goal position (3-d; in reach the hand starts in the same place in every variant),
- ``to_goal``: goal - hand position at the planning step (the hand is visible in the context, so this is high for
  every latent: read ``goal``),
- ``motion``: the hand's displacement over the l future steps (only for ``posterior``, the latent of that window),

and the cosine between the hand motion a latent implies (a ridge decoder z -> motion fitted on ``posterior`` of
the other episodes) and the direction to the goal, raw and centred (both minus their means: the raw cosine is
high for any latent when the goals all lie on one side of the start).

Latents: ``oracle`` (posterior E(x, y) of metaworld's scripted expert's real next l frames, PVDR's ``oracle_z``),
``plan@N`` (z* of eq. (2) with N prior samples; ``plan@1`` is one prior sample), ``prior_mean`` (the prior's mean:
no goal used, so its ``goal`` score is what the context alone tells), ``posterior`` (E(x, y) of the behaviour's own
next l frames: what L_act's targets see). Planning carries goal information when ``plan@N`` beats ``prior_mean``.

Behaviour: even episodes sigma-1 random actions (an untrained policy), odd ones the scripted expert plus noise.

    python -m sb3_pvdr.evaluate_dynamics --model metaworld-64 --tokenizer metaworld-64 --task reach-v2 --goal-probe 48
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from sb3_pvdr.common.errors import ConfigError

# n - windows, m - context frames, l - plan frames, h w - token grid, d - z channels

GOAL_TARGETS = ("goal", "to_goal")


def collect_goal_windows(
    task: str,
    tokenizer: Any,
    dynamics: Any,
    episodes: int = 48,
    steps: int = 60,
    stride: int = 6,
    candidates: Sequence[int] = (1, 4, 16),
    metric: str = "codes",
    temperature: float = 1.0,
    noise: float = 0.5,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Windows every ``stride`` steps of ``episodes`` episodes (a random variant each) of ``task``.

    :return: arrays over windows: ``episode``, ``goal``, ``to_goal``, ``motion`` (n, 3); ``oracle``, ``plan@N``,
        ``prior_mean``, ``posterior`` (n, h, w, d)
    """
    from sb3_pvdr.envs import make_metaworld_env
    from sb3_pvdr.envs.goals import get_scripted_policy
    from sb3_pvdr.planning.planner import Planner

    m, l = dynamics.config.m, dynamics.config.l  # noqa: E741
    if steps < l + 1 or stride < 1 or episodes < 1:
        raise ConfigError(f"goal probe: need episodes >= 1, stride >= 1 and steps > l = {l}; got {episodes}, {stride}, {steps}")
    planner = Planner(tokenizer, dynamics, metric=metric)
    env = make_metaworld_env(task, image_size=tokenizer.image_size, seed=seed, terminate_on_success=False)
    expert = get_scripted_policy(task)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list] = {"episode": [], "goal": [], "to_goal": [], "motion": [], "context": [], "future": [],
                            "oracle_future": []}
    out.update({f"plan@{n}": [] for n in candidates})
    last_start = steps - l  # every window's l future frames exist
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant", category=UserWarning)  # metaworld's scripted policies
        for ep in range(episodes):
            obs, _ = env.reset()
            goal = np.asarray(env.unwrapped.metaworld_env._target_pos, dtype=np.float32).copy()
            goal_target = planner.frame_target(torch.from_numpy(obs["desired_goal"])[None])[0]
            state = env.unwrapped.state_observation()
            frames, hands, starts = [obs["observation"]], [state[:3].copy()], []
            random_actions = ep % 2 == 0
            for t in range(steps):
                if t % stride == 0 and t <= last_start:
                    with torch.inference_mode():
                        ctx = tokenizer.encode(np.stack(frames[max(0, t - m + 1) : t + 1]))  # (<= m, h, w)
                        ctx = torch.cat([ctx[:1].repeat(m - len(ctx), 1, 1), ctx])  # o_0 repeated before the start
                        oracle = tokenizer.encode(env.unwrapped.expert_future(l))
                    for n in candidates:
                        out[f"plan@{n}"].append(planner.plan(ctx, goal_target, n, generator=gen, temperature=temperature).z_star.numpy())
                    out["context"].append(ctx.numpy())
                    out["oracle_future"].append(oracle.numpy())
                    out["goal"].append(goal)
                    out["to_goal"].append(goal - hands[-1])
                    out["episode"].append(ep)
                    starts.append(t)
                if random_actions:
                    action = np.clip(rng.standard_normal(4), -1, 1)
                else:
                    action = np.clip(expert.get_action(state) + noise * rng.standard_normal(4), -1, 1)
                obs, *_ = env.step(action.astype(np.float32))
                state = env.unwrapped.state_observation()
                frames.append(obs["observation"])
                hands.append(state[:3].copy())
            with torch.inference_mode():
                tokens = tokenizer.encode(np.stack(frames)).numpy()  # (steps + 1, h, w)
            for t in starts:
                out["future"].append(tokens[t + 1 : t + 1 + l])
                out["motion"].append(hands[t + l] - hands[t])
    env.close()
    data = {k: np.stack(v) for k, v in out.items()}
    with torch.inference_mode():
        x = torch.as_tensor(data["context"]).long()
        data["oracle"] = dynamics.posterior(x, torch.as_tensor(data["oracle_future"]).long()).mode().float().numpy()
        data["posterior"] = dynamics.posterior(x, torch.as_tensor(data["future"]).long()).mode().float().numpy()
        data["prior_mean"] = dynamics.prior(x).mean.float().numpy()
    return data


def _ridge() -> Any:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13)))


def ridge_probe(features: np.ndarray, target: np.ndarray, groups: np.ndarray, folds: int = 6) -> tuple[float, np.ndarray]:
    """Held-out R^2 (pooled over folds) of a ridge regression, its alpha chosen inside each training fold.

    :param features: ``(n, ...)`` (flattened)
    :param target: ``(n, k)``
    :param groups: ``(n,)`` episode of each window: a fold holds whole episodes out
    :return: R^2 and the held-out predictions ``(n, k)``
    """
    from sklearn.model_selection import GroupKFold

    x = features.reshape(len(features), -1)
    pred = np.zeros_like(target, dtype=np.float64)
    for train, test in GroupKFold(n_splits=folds).split(x, target, groups):
        pred[test] = _ridge().fit(x[train], target[train]).predict(x[test])
    r2 = 1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum()
    return float(r2), pred


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row-wise cosine of ``(n, k)`` arrays."""
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-8)).mean())


def implied_motion_cosine(data: dict[str, np.ndarray], latent: str, folds: int = 6) -> tuple[float, float]:
    """Mean cosine between the hand motion ``latent`` implies and the direction to the goal: raw, centred.

    The decoder z -> motion is fitted on ``posterior`` (whose motion is known) of the other episodes, then applied
    to ``latent`` of the held-out ones.
    """
    from sklearn.model_selection import GroupKFold

    n = len(data["motion"])
    src, dst = data["posterior"].reshape(n, -1), data[latent].reshape(n, -1)
    implied = np.zeros_like(data["motion"], dtype=np.float64)
    for train, test in GroupKFold(n_splits=folds).split(src, data["motion"], data["episode"]):
        implied[test] = _ridge().fit(src[train], data["motion"][train]).predict(dst[test])
    a, b = implied, data["to_goal"]
    return mean_cosine(a, b), mean_cosine(a - a.mean(0), b - b.mean(0))


def goal_information(data: dict[str, np.ndarray], candidates: Sequence[int], folds: int = 6) -> dict[str, Any]:
    """The probes of the module docstring on :func:`collect_goal_windows`' windows.

    :return: ``{"windows", "episodes", "probes": {latent: {goal, to_goal, [motion], cos_implied_motion_to_goal,
        cos_centred}}, "cos_real_motion_to_goal", "cos_mean_direction_to_goal"}``
    """
    n_episodes = len(np.unique(data["episode"]))
    if n_episodes < folds:
        raise ConfigError(f"goal probe: {n_episodes} episodes cannot make {folds} folds; record at least {folds}")
    probes: dict[str, dict[str, float]] = {}
    for latent in ["oracle", *[f"plan@{n}" for n in candidates], "prior_mean", "posterior"]:
        targets = (*GOAL_TARGETS, "motion") if latent == "posterior" else GOAL_TARGETS  # motion: own windows only
        row = {t: round(ridge_probe(data[latent], data[t], data["episode"], folds)[0], 4) for t in targets}
        raw, centred = implied_motion_cosine(data, latent, folds)
        row["cos_implied_motion_to_goal"], row["cos_centred"] = round(raw, 4), round(centred, 4)
        probes[latent] = row
    b = data["to_goal"]
    return {
        "windows": int(len(b)),
        "episodes": n_episodes,
        "probes": probes,
        "cos_real_motion_to_goal": round(mean_cosine(data["motion"], b), 4),  # what the behaviour did
        "cos_mean_direction_to_goal": round(mean_cosine(np.broadcast_to(b.mean(0), b.shape), b), 4),  # a constant guess
    }


def print_goal_report(task: str, report: dict[str, Any]) -> None:
    """One line per latent: held-out R^2 of the goal and of goal - hand, and the implied-motion cosines."""
    print(f"{task}: what z tells about the goal ({report['windows']} windows of {report['episodes']} held-out "
          f"variants; ridge R^2 held out by episode)")
    print(f"  {'latent':<12}{'goal':>8}{'to_goal':>9}{'motion':>8}{'cos':>7}{'cos_c':>7}")
    for latent, row in report["probes"].items():
        motion = f"{row['motion']:>8.3f}" if "motion" in row else f"{'':>8}"
        print(f"  {latent:<12}{row['goal']:>8.3f}{row['to_goal']:>9.3f}{motion}"
              f"{row['cos_implied_motion_to_goal']:>7.3f}{row['cos_centred']:>7.3f}")
    plans = [v["goal"] for k, v in report["probes"].items() if k.startswith("plan@") and k != "plan@1"]
    if plans:
        gain = max(plans) - report["probes"]["prior_mean"]["goal"]
        print(f"  planning adds {gain:+.3f} goal R^2 over the prior's mean (the expert's z: "
              f"{report['probes']['oracle']['goal'] - report['probes']['prior_mean']['goal']:+.3f})")


__all__ = ["collect_goal_windows", "goal_information", "implied_motion_cosine", "mean_cosine", "print_goal_report", "ridge_probe"]
