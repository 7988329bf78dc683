"""PVDR reward relabelling (eq. (6)) and the real-future windows of a rollout, as pure numpy functions.

Paper: PVDR (Luo, Zhou, Lu, ECCV 2024), §4.3 eq. (5)-(6).

Eq. (6) as a reward (distances negated, plus the env's success bonus)::

    r~_t = -||o_{t+1} - g||_1 + r_suc * success_{t+1}  -  lambda_3 * (1/l) * sum_k ||o_{t+k} - y^_{t,k}||_1
           '------------- env reward r_t --------------'   '---------- planning-oriented term -----------'

The goal-oriented part is exactly the image-goal env's own reward (``sb3_pvdr.envs``: ``-L1(o_{t+1}, g)``
plus the success reward), so relabelling only subtracts the planning-oriented term. Both distances use
:func:`frame_distance` (mean absolute pixel difference in [0, 1]), the env's metric.

How the planning-oriented term is measured, step by step. The plan y^_t of step t (l frames) predicts
o_{t+1}, ..., o_{t+l}. The :class:`~sb3_pvdr.planning.PlanningWrapper` cannot know o_{t+k} at step t, so it
reports, at every step t', the distances of the *new* frame o_{t'+1} to the frame each of the last l plans
predicted for that time: ``info["plan_errors"][k] = d(o_{t'+1}, y^_{t'-k}[k])`` (NaN when the plan of step
t'-k does not exist in this episode or does not cover time t'+1, e.g. with ``replan_every > 1``). The
relabeller then reads the diagonal: the planning term of step t is the mean over k of
``plan_errors[t + k][k]``.

Episode ends and rollout ends (documented choice): the mean runs over the *real* future frames that exist,
``n_t = min(l, frames left in the episode, frames left in the rollout)`` of them, never over invented ones.

- Episode end: after a ``done`` at step T, o_{T+1} is the terminal frame and nothing follows it, so a step t
  near the end is compared with its n_t = T - t + 1 < l real frames ("truncate the mean"; padding with the
  terminal frame would charge a success-terminated episode for plan frames the robot never had to reach).
- Rollout end: the last l - 1 steps of a rollout have futures that are not observed yet (their frames come
  during the next rollout, after PPO has consumed this one). They use the frames observed so far (at least
  o_{t+1}, the observation after the last step, which the env has already returned). This slightly changes
  those (l - 1) / n_steps of the rewards; the alternative, holding them back to the next rollout, would make
  every PPO update mix two policies' data.
- The L_act pairs (x_t, y_t) of eq. (5) need *all* l future frames (E was trained on complete windows), so
  :func:`future_window` returns a mask ``counts == l`` and the incomplete windows are left out of L_act.

Arrays are time-major like SB3's rollout buffer: ``(T, n_envs, ...)``. ``dones[t]`` is True when the
action of step t ended the episode (SB3's ``dones`` returned by ``VecEnv.step``).
"""

from __future__ import annotations

import numpy as np

from sb3_pvdr.common.errors import DataError


def context_indices(t: int, m: int, step: int = 1) -> list[int]:
    """Indices of the m context frames o_{t-(m-1)k}, ..., o_t (k = ``step``), oldest first; frames before the
    episode's first are o_0 (index 0), as at the start of an episode.

    >>> context_indices(4, m=3, step=3)
    [0, 1, 4]
    """
    return [max(0, t - j * step) for j in reversed(range(m))]


def frame_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference, pixels scaled to [0, 1] (``||a - b||_1`` normalised by its size).

    :param a: frames ``(..., H, W, 3)``, uint8 in [0, 255] or float in [0, 1]
    :param b: frames broadcastable to ``a``, same convention (uint8 or float)
    :return: distances ``(...)`` in [0, 1], float32
    """
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    b = b.astype(np.float32) / 255.0 if b.dtype == np.uint8 else b.astype(np.float32)
    return np.abs(a - b).mean(axis=(-3, -2, -1))


def future_counts(dones: np.ndarray, l: int) -> np.ndarray:  # noqa: E741 (the paper's name)
    """Number of real future frames o_{t+1}, ..., o_{t+n} of each step inside its episode and the rollout.

    ``n_t = min(l, T - t, 1 + (first done at or after t) - t)``: o_{t+1} always exists (the next or
    terminal observation); a ``done`` at step t cuts the window after o_{t+1}.

    :param dones: ``(T, n_envs)`` bool
    :param l: plan length (future frames per window)
    :return: ``(T, n_envs)`` int64 in [1, l]
    """
    if l < 1:
        raise DataError(f"plan length l must be >= 1, got {l}")
    dones = np.asarray(dones, dtype=bool)
    if dones.ndim != 2:
        raise DataError(f"dones must be (T, n_envs), got shape {dones.shape}")
    counts = np.zeros(dones.shape, dtype=np.int64)
    remain = np.zeros(dones.shape[1], dtype=np.int64)
    for t in reversed(range(dones.shape[0])):
        remain = np.where(dones[t], 1, np.minimum(remain + 1, l))
        counts[t] = remain
    return counts


def future_window(next_items: np.ndarray, dones: np.ndarray, l: int, step: int = 1) -> tuple[np.ndarray, np.ndarray]:  # noqa: E741
    """Stack, for every step t, the items of its next l real frames, every ``step``-th:
    ``window[t, e, k] = next_items[t + (k + 1) * step - 1, e]`` (o_{t+step}, ..., o_{t+l*step}).

    ``next_items[t]`` describes o_{t+1} (e.g. its token grid, the wrapper's ``info["next_tokens"]``).
    Slots past the episode or rollout end repeat the last real frame (only so the array is rectangular);
    ``mask`` tells which windows are complete.

    :param next_items: ``(T, n_envs, ...)``
    :param dones: ``(T, n_envs)`` bool
    :param l: window length
    :param step: env steps between the window's frames (``DynamicsConfig.frame_step``)
    :return: ``(window (T, n_envs, l, ...), mask (T, n_envs) bool = all l * step frames are real)``
    """
    if step < 1:
        raise DataError(f"window step must be >= 1, got {step}")
    next_items = np.asarray(next_items)
    counts = future_counts(dones, l * step)
    if next_items.shape[:2] != counts.shape:
        raise DataError(f"next_items {next_items.shape[:2]} and dones {counts.shape} must share (T, n_envs)")
    t_idx = np.arange(counts.shape[0])[:, None, None]  # (T, 1, 1)
    offsets = (np.arange(l) + 1)[None, None, :] * step - 1  # (1, 1, l)
    source_t = t_idx + np.minimum(offsets, counts[:, :, None] - 1)  # (T, n_envs, l), always inside the rollout
    env_idx = np.arange(counts.shape[1])[None, :, None]
    return next_items[source_t, env_idx], counts == l * step


def episode_last(next_items: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """For every step t, the item of the last frame its episode reaches in the rollout: ``next_items[t']`` with t' the
    first step >= t whose ``dones`` is set, else the rollout's last step (hindsight goals).

    :param next_items: ``(T, n_envs, ...)``, ``next_items[t]`` describing o_{t+1}
    :param dones: ``(T, n_envs)`` bool
    :return: ``(T, n_envs, ...)``
    """
    dones = np.asarray(dones, dtype=bool)
    if next_items.shape[:2] != dones.shape:
        raise DataError(f"next_items {next_items.shape[:2]} and dones {dones.shape} must share (T, n_envs)")
    steps, n_envs = dones.shape
    source = np.empty((steps, n_envs), dtype=np.int64)
    last = np.full(n_envs, steps - 1)
    for t in range(steps - 1, -1, -1):  # T steps of a vector op: backward scan for the episode ends
        last = np.where(dones[t], t, last)
        source[t] = last
    return next_items[source, np.arange(n_envs)[None, :]]


def planning_term(plan_errors: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """Planning-oriented term of eq. (6): ``(1/n_t) * sum_{k<n_t} plan_errors[t + k, e, k]``.

    NaN entries (a plan that does not cover that time) are left out of the mean; a step whose entries are
    all NaN gets 0.

    :param plan_errors: ``(T, n_envs, L)``, the wrapper's ``info["plan_errors"]`` of each step (L = l * frame_step:
        entry d of step t' compares o_{t'+1} with the plan of step t' - d)
    :param dones: ``(T, n_envs)`` bool
    :return: ``(T, n_envs)`` float32, mean distance of the real future frames to the plan
    """
    plan_errors = np.asarray(plan_errors, dtype=np.float32)
    if plan_errors.ndim != 3:
        raise DataError(f"plan_errors must be (T, n_envs, l), got shape {plan_errors.shape}")
    l = plan_errors.shape[2]  # noqa: E741
    diagonal, _ = future_window(plan_errors, dones, l)  # diagonal[t, e, k] = plan_errors[t + k', e] (k' clipped)
    counts = future_counts(dones, l)
    k_idx = np.arange(l)
    values = diagonal[:, :, k_idx, k_idx]  # (T, n_envs, l): plan_errors[t + k, e, k]
    valid = (k_idx[None, None, :] < counts[:, :, None]) & ~np.isnan(values)
    total = np.where(valid, values, 0.0).sum(axis=-1)
    n = valid.sum(axis=-1)
    return np.where(n > 0, total / np.maximum(n, 1), 0.0).astype(np.float32)


def pvdr_rewards(rewards: np.ndarray, plan_errors: np.ndarray, dones: np.ndarray, lambda_3: float) -> np.ndarray:
    """Relabel env rewards with eq. (6): ``r~_t = r_t - lambda_3 * planning_term_t``.

    :param rewards: ``(T, n_envs)`` env rewards (goal-oriented term + success reward; may already hold
        SB3's timeout bootstrap ``gamma * V(terminal obs)``, which the subtraction leaves untouched)
    :param plan_errors: ``(T, n_envs, l)``
    :param dones: ``(T, n_envs)`` bool
    :param lambda_3: weight of the planning-oriented term (Table 2: 1.0 Meta-World, 4.5 RLBench)
    :return: ``(T, n_envs)`` float32
    """
    rewards = np.asarray(rewards, dtype=np.float32)
    if rewards.shape != np.asarray(dones).shape:
        raise DataError(f"rewards {rewards.shape} and dones {np.asarray(dones).shape} must have the same shape")
    if lambda_3 == 0:
        return rewards.copy()
    return (rewards - lambda_3 * planning_term(plan_errors, dones)).astype(np.float32)


__all__ = ["context_indices", "frame_distance", "future_counts", "future_window", "planning_term", "pvdr_rewards"]
