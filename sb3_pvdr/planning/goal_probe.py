"""What does the policy's z* tell it about the goal? Linear probes of PVDR's latents on random task variants.

PVDR's aligner sees only (context tokens x_t, z*_t): the goal image reaches the policy through z* alone, the z
that eq. (2) picked among N prior samples because its plan is nearest the goal. On random variants a policy can only
head for the goal if z* encodes where it is. Ridge regressions (held out by task variant: ``GroupKFold``; the
context shows which variant it is, e.g. by the object's place, so a variant in both training and test folds would
leak its goal; results before 2026-11-30 19:20 held out episodes, which repeat MT1's 50 variants) from several
latents to

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
from typing import Any, Optional, Sequence

import numpy as np
import torch

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.planning.planner import blur_frames
from sb3_pvdr.planning.relabel import context_indices

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
    hand_candidates: int = 0,
    distance: str = "mean",
) -> dict[str, np.ndarray]:
    """Windows every ``stride`` steps of ``episodes`` episodes (a random variant each) of ``task``.

    :param distance: eq. (2)'s plan-to-goal distance over the ``"mean"`` of the plan frames or the ``"last"`` one
    :param hand_candidates: also keep, per window, the last plan frame of this many prior candidates with their
        eq. (2) distances and the expert z's last plan frame, and every real frame with its hand position, for
        :func:`hand_space_report` (its own random stream: the other latents are the same with or without it)
    :return: arrays over windows: ``episode``, ``goal``, ``to_goal``, ``motion`` (n, 3); ``oracle``, ``plan@N``,
        ``prior_mean``, ``posterior`` (n, h, w, d); with ``hand_candidates``: ``cand_last`` (n, N, h, w) tokens,
        ``cand_distance`` (n, N), ``oracle_last`` (n, h, w), ``goal_image`` (n, H, W, 3), and per real frame ``frame_tokens`` (f, h, w),
        ``frame_hand`` (f, 3), ``frame_episode``, ``frame_variant`` (f,); ``variant`` (n,) is the task variant of
        each window (Meta-World's MT1 has 50; a reset draws one, so episodes repeat variants)
    """
    from sb3_pvdr.envs import make_metaworld_env
    from sb3_pvdr.envs.goals import get_scripted_policy
    from sb3_pvdr.planning.planner import Planner

    m, l, k = dynamics.config.m, dynamics.config.l, dynamics.config.frame_step  # noqa: E741
    if steps < l * k + 1 or stride < 1 or episodes < 1:
        raise ConfigError(f"goal probe: need episodes >= 1, stride >= 1 and steps > l * frame_step = {l * k}; "
                          f"got {episodes}, {stride}, {steps}")
    planner = Planner(tokenizer, dynamics, metric=metric, distance=distance)
    env = make_metaworld_env(task, image_size=tokenizer.image_size, seed=seed, terminate_on_success=False)
    expert = get_scripted_policy(task)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list] = {"episode": [], "variant": [], "goal": [], "to_goal": [], "motion": [], "context": [], "future": [],
                            "oracle_future": [], "goal_tokens": []}
    out.update({f"plan@{n}": [] for n in candidates})
    if hand_candidates:
        out.update(cand_last=[], cand_distance=[], oracle_last=[], goal_image=[], frame_tokens=[], frame_hand=[],
                   frame_episode=[], frame_variant=[])
        hand_gen = torch.Generator().manual_seed(seed + 1)
    last_start = steps - l * k  # every window's l future frames (every k-th step) exist
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant", category=UserWarning)  # metaworld's scripted policies
        for ep in range(episodes):
            obs, _ = env.reset()
            goal = np.asarray(env.unwrapped.metaworld_env._target_pos, dtype=np.float32).copy()
            obs_goal = np.array(obs["desired_goal"])  # (H, W, 3) uint8
            goal_target = planner.frame_target(torch.from_numpy(obs_goal)[None])[0]
            with torch.inference_mode():
                goal_tokens = tokenizer.encode(obs_goal[None])[0]  # for a goal-conditioned prior (prior_goal)
            state = env.unwrapped.state_observation()
            frames, hands, starts = [obs["observation"]], [state[:3].copy()], []
            random_actions = ep % 2 == 0
            for t in range(steps):
                if t % stride == 0 and t <= last_start:
                    with torch.inference_mode():
                        # o_{t-(m-1)k}, ..., o_t; o_0 repeated before the start
                        ctx = tokenizer.encode(np.stack([frames[i] for i in context_indices(t, m, k)]))
                        oracle = tokenizer.encode(env.unwrapped.expert_future(l * k)[k - 1 :: k])
                    for n in candidates:
                        out[f"plan@{n}"].append(planner.plan(ctx, goal_target, n, generator=gen, temperature=temperature,
                                                         goal_tokens=goal_tokens).z_star.numpy())
                    if hand_candidates:
                        last, distance, oracle_last = _candidate_last_frames(planner, ctx, oracle, goal_target,
                                                                             hand_candidates, temperature, hand_gen,
                                                                             goal_tokens)
                        out["cand_last"].append(last)
                        out["cand_distance"].append(distance)
                        out["oracle_last"].append(oracle_last)
                        out["goal_image"].append(obs_goal)
                    out["context"].append(ctx.numpy())
                    out["goal_tokens"].append(goal_tokens.numpy())
                    out["oracle_future"].append(oracle.numpy())
                    out["goal"].append(goal)
                    out["to_goal"].append(goal - hands[-1])
                    out["episode"].append(ep)
                    out["variant"].append(env.unwrapped.variant)
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
                out["future"].append(tokens[t + k : t + l * k + 1 : k])
                out["motion"].append(hands[t + l * k] - hands[t])
            if hand_candidates:
                out["frame_tokens"].append(tokens)
                out["frame_hand"].append(np.stack(hands))
                out["frame_episode"].append(np.full(len(tokens), ep))
                out["frame_variant"].append(np.full(len(tokens), env.unwrapped.variant))
    env.close()
    frame_keys = ("frame_tokens", "frame_hand", "frame_episode", "frame_variant")
    data = {k: np.concatenate(v) if k in frame_keys else np.stack(v) for k, v in out.items()}
    with torch.inference_mode():
        x = torch.as_tensor(data["context"]).long()
        data["oracle"] = dynamics.posterior(x, torch.as_tensor(data["oracle_future"]).long()).mode().float().numpy()
        data["posterior"] = dynamics.posterior(x, torch.as_tensor(data["future"]).long()).mode().float().numpy()
        data["prior_mean"] = dynamics.prior(x, torch.as_tensor(data["goal_tokens"]).long()).mean.float().numpy()
    return data


@torch.no_grad()
def _candidate_last_frames(planner: Any, ctx: torch.Tensor, oracle_future: torch.Tensor, goal_target: torch.Tensor,
                           n: int, temperature: float, generator: torch.Generator,
                           goal_tokens: Optional[torch.Tensor] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Last plan frames (tokens) of ``n`` prior candidates, their eq. (2) distances, and the expert z's last plan frame."""
    from sb3_pvdr.planning.planner import eval_mode, plan_goal_distance

    dynamics = planner.dynamics
    x = ctx.long()[None]
    with eval_mode(dynamics, planner.tokenizer):
        prior = dynamics.prior(x, None if goal_tokens is None else goal_tokens.long()[None])
        eps = torch.randn((n, *dynamics.z_shape), generator=generator)
        z = prior.mean + temperature * prior.std * eps  # (n, h, w, d), as Planner.plan samples them
        z_expert = dynamics.posterior(x, oracle_future.long()[None]).mode()
        tokens = dynamics.generate(x, torch.cat((z, z_expert)))  # (n + 1, l, h, w)
        distance = plan_goal_distance(planner.represent(tokens[:n]).float(), goal_target, planner.distance)
    return tokens[:n, -1].numpy(), distance.numpy(), tokens[n, -1].numpy()


def _decoded(tokenizer: Any, tokens: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Token grids ``(f, h, w)`` -> decoded frames ``(f, H, W, 3)`` float32 in [0, 1]."""
    return np.concatenate([tokenizer.decode(torch.as_tensor(tokens[i : i + chunk]).long()).numpy()
                           for i in range(0, len(tokens), chunk)])


def _pooled(frames: np.ndarray, pool: int = 2) -> np.ndarray:
    """Decoded frames ``(f, H, W, 3)`` -> average-pooled by ``pool``, flattened ``(f, H/pool * W/pool * 3)``."""
    x = torch.nn.functional.avg_pool2d(torch.from_numpy(frames).permute(0, 3, 1, 2), pool)
    return x.flatten(1).numpy()


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two 1-d arrays (continuous values: no ties); nan when one is constant."""
    ra, rb = np.argsort(np.argsort(a)).astype(float), np.argsort(np.argsort(b)).astype(float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def hand_space_report(data: dict[str, np.ndarray], tokenizer: Any, candidates: Sequence[int] = (4, 16),
                      folds: int = 6) -> dict[str, Any]:
    """Where do the candidates' plans put the hand, and does eq. (2) pick the one nearest the goal?

    A hand locator (ridge on the decoded, 2x pooled pixels of real frames -> hand position; frames go through the
    tokenizer like plans do) reads the hand position off each candidate's last plan frame. Reported:
    ``locator_r2`` (held out by variant), ``candidate_spread`` (mean distance of a candidate's hand from the
    candidates' mean hand) next to ``real_motion`` (mean |hand motion| over the l real future steps),
    ``rank_corr`` (Spearman, across one window's candidates, of the eq. (2) distance and the hand's distance to the
    goal; 1 = eq. (2) ranks plans by how near the hand gets), and per N ``hand_to_goal`` of the chosen, the average
    and the expert's plan with ``hand_gain@N`` = (average - chosen) / (average - expert). The same rank correlation
    and hand gain for other plan-to-goal distances on the last plan frame alone (``last_frame``: whole frame;
    ``last_frame_changed_pixels``: only the pixels where the goal image differs from the current frame by > 0.1;
    ``last_frame_blurred``: both frames average-pooled to 8 x 8 cells first, PVDR's ``plan_distance="last_blurred"``,
    so that a hand far from the goal's hand still ranks by how far), and ``hand_gain@N/best``: the gain of choosing by the true hand-to-goal distance,
    the most any plan-to-goal distance can get out of these candidates (below 1 when the candidates' hands do not
    spread as far as the expert's).
    """
    n_cand = data["cand_last"].shape[1]
    if max(candidates) > n_cand:
        raise ConfigError(f"hand report: N = {max(candidates)} needs at least that many candidates, got {n_cand}")
    x = _pooled(_decoded(tokenizer, data["frame_tokens"]))
    locator_r2, _ = ridge_probe(x, data["frame_hand"], data.get("frame_variant", data["frame_episode"]), folds)
    locator = _ridge().fit(x, data["frame_hand"])
    n_win = len(data["cand_last"])
    last = _decoded(tokenizer, data["cand_last"].reshape(-1, *data["cand_last"].shape[2:]))  # (n N, H, W, 3), once
    hands = locator.predict(_pooled(last))
    hands = hands.reshape(n_win, n_cand, 3)
    expert = locator.predict(_pooled(_decoded(tokenizer, data["oracle_last"])))  # (n, 3)
    to_goal = np.linalg.norm(hands - data["goal"][:, None], axis=-1)  # (n, N)
    expert_to_goal = np.linalg.norm(expert - data["goal"], axis=-1)
    corr = [rank_correlation(d, g) for d, g in zip(data["cand_distance"], to_goal)]
    # other plan-to-goal distances, on the candidates' last frames only: whole frame, and only the pixels where the
    # goal image differs from the current frame (where the arm must go and where it is now)
    blurred_last = blur_frames(torch.from_numpy(last)).reshape(n_win, n_cand, -1).numpy()
    blurred_goal = blur_frames(torch.from_numpy(data["goal_image"]).float() / 255.0).reshape(n_win, 1, -1).numpy()
    last = last.reshape(n_win, n_cand, -1)
    goal_px = data["goal_image"].reshape(n_win, 1, -1).astype(np.float32) / 255.0
    now_px = _decoded(tokenizer, data["context"][:, -1]).reshape(n_win, 1, -1)
    changed = np.abs(goal_px - now_px) > 0.1  # (n, 1, P)
    diff = np.abs(last - goal_px)
    alternatives = {
        "last_frame": diff.mean(-1),
        "last_frame_changed_pixels": (diff * changed).sum(-1) / np.maximum(changed.sum(-1), 1),
        "last_frame_blurred": np.abs(blurred_last - blurred_goal).mean(-1),
    }
    report: dict[str, Any] = {
        "locator_r2": round(locator_r2, 4),
        "candidate_spread": round(float(np.linalg.norm(hands - hands.mean(1, keepdims=True), axis=-1).mean()), 4),
        "real_motion": round(float(np.linalg.norm(data["motion"], axis=-1).mean()), 4),
        "rank_corr": round(float(np.nanmean(corr)), 4),
        "expert_hand_to_goal": round(float(expert_to_goal.mean()), 4),
    }

    def hand_gain(distance: np.ndarray, n: int) -> tuple[float, float, float]:
        """Hand-to-goal of the plan ``distance`` picks among the first n candidates, of their average, and the gain."""
        chosen = to_goal[np.arange(n_win), distance[:, :n].argmin(1)].mean()
        average = to_goal[:, :n].mean()
        gap = average - expert_to_goal.mean()
        return float(chosen), float(average), round(float((average - chosen) / gap), 4) if abs(gap) > 1e-6 else float("nan")

    for name, dist in alternatives.items():
        report[f"rank_corr/{name}"] = round(float(np.nanmean([rank_correlation(d, g) for d, g in zip(dist, to_goal)])), 4)
        for n in candidates:
            report[f"hand_gain@{n}/{name}"] = hand_gain(dist, n)[2]
    for n in candidates:
        report[f"hand_gain@{n}/best"] = hand_gain(to_goal, n)[2]
        chosen, average, report[f"hand_gain@{n}"] = hand_gain(data["cand_distance"], n)
        report[f"hand_to_goal/chosen@{n}"] = round(chosen, 4)
        report[f"hand_to_goal/average@{n}"] = round(average, 4)
    return report


def _ridge() -> Any:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13)))


def ridge_probe(features: np.ndarray, target: np.ndarray, groups: np.ndarray, folds: int = 6) -> tuple[float, np.ndarray]:
    """Held-out R^2 (pooled over folds) of a ridge regression, its alpha chosen inside each training fold.

    :param features: ``(n, ...)`` (flattened)
    :param target: ``(n, k)``
    :param groups: ``(n,)`` group of each window (variant or episode): a fold holds whole groups out
    :return: R^2 and the held-out predictions ``(n, k)``
    """
    from sklearn.model_selection import GroupKFold

    x = features.reshape(len(features), -1)
    pred = np.zeros_like(target, dtype=np.float64)
    for train, test in GroupKFold(n_splits=folds).split(x, target, groups):
        pred[test] = _ridge().fit(x[train], target[train]).predict(x[test])
    r2 = 1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum()
    return float(r2), pred


def groups_of(data: dict[str, np.ndarray]) -> np.ndarray:
    """What a fold holds out: whole task variants when known (the context shows which variant it is, e.g. by the
    object's place, so a variant seen in training would leak its goal), else whole episodes."""
    return data["variant"] if "variant" in data else data["episode"]


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
    for train, test in GroupKFold(n_splits=folds).split(src, data["motion"], groups_of(data)):
        implied[test] = _ridge().fit(src[train], data["motion"][train]).predict(dst[test])
    a, b = implied, data["to_goal"]
    return mean_cosine(a, b), mean_cosine(a - a.mean(0), b - b.mean(0))


def goal_information(data: dict[str, np.ndarray], candidates: Sequence[int], folds: int = 6) -> dict[str, Any]:
    """The probes of the module docstring on :func:`collect_goal_windows`' windows.

    :return: ``{"windows", "episodes", "probes": {latent: {goal, to_goal, [motion], cos_implied_motion_to_goal,
        cos_centred}}, "cos_real_motion_to_goal", "cos_mean_direction_to_goal"}``
    """
    n_episodes = len(np.unique(data["episode"]))
    groups = groups_of(data)
    if len(np.unique(groups)) < folds:
        raise ConfigError(f"goal probe: {len(np.unique(groups))} held-out groups cannot make {folds} folds; record more episodes")
    probes: dict[str, dict[str, float]] = {}
    for latent in ["oracle", *[f"plan@{n}" for n in candidates], "prior_mean", "posterior"]:
        targets = (*GOAL_TARGETS, "motion") if latent == "posterior" else GOAL_TARGETS  # motion: own windows only
        row = {t: round(ridge_probe(data[latent], data[t], groups, folds)[0], 4) for t in targets}
        raw, centred = implied_motion_cosine(data, latent, folds)
        row["cos_implied_motion_to_goal"], row["cos_centred"] = round(raw, 4), round(centred, 4)
        probes[latent] = row
    b = data["to_goal"]
    return {
        "windows": int(len(b)),
        "episodes": n_episodes,
        "held_out": "variant" if "variant" in data else "episode",
        "groups": int(len(np.unique(groups))),
        "probes": probes,
        "cos_real_motion_to_goal": round(mean_cosine(data["motion"], b), 4),  # what the behaviour did
        "cos_mean_direction_to_goal": round(mean_cosine(np.broadcast_to(b.mean(0), b.shape), b), 4),  # a constant guess
    }


def print_hand_report(task: str, report: dict[str, Any], candidates: Sequence[int]) -> None:
    """Two lines: the locator and the candidates' hand spread; eq. (2)'s choice in hand space."""
    print(f"  hand space ({task}; locator R^2 {report['locator_r2']:.3f}): candidates' hands spread "
          f"{report['candidate_spread']:.4f} around their mean vs real motion {report['real_motion']:.4f} over l steps; "
          f"rank corr. of eq. (2)'s distance with the hand's distance to the goal {report['rank_corr']:.3f}")
    print("  hand to goal: expert z {:.4f}, ".format(report["expert_hand_to_goal"]) + ", ".join(
        f"N={n} chosen {report[f'hand_to_goal/chosen@{n}']:.4f} avg {report[f'hand_to_goal/average@{n}']:.4f} "
        f"(gain {report[f'hand_gain@{n}']:.2f})" for n in candidates))
    print("  best choice (by the true hand-to-goal): " + ", ".join(f"gain@{n} {report[f'hand_gain@{n}/best']:.2f}" for n in candidates))
    for name in ("last_frame", "last_frame_changed_pixels", "last_frame_blurred"):
        print(f"  distance on {name}: rank corr. {report[f'rank_corr/{name}']:.3f}, " + ", ".join(
            f"gain@{n} {report[f'hand_gain@{n}/{name}']:.2f}" for n in candidates))


def print_goal_report(task: str, report: dict[str, Any]) -> None:
    """One line per latent: held-out R^2 of the goal and of goal - hand, and the implied-motion cosines."""
    print(f"{task}: what z tells about the goal ({report['windows']} windows of {report['episodes']} episodes, "
          f"{report['groups']} {report['held_out']}s; ridge R^2 held out by {report['held_out']})")
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


__all__ = ["collect_goal_windows", "goal_information", "groups_of", "hand_space_report", "implied_motion_cosine", "mean_cosine",
           "print_goal_report", "print_hand_report", "rank_correlation", "ridge_probe"]
