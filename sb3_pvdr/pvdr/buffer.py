"""Rollout buffer of PVDR: SB3's ``DictRolloutBuffer`` plus the experience quintuple of §4.3 and the
eq. (6) relabelling hook.

Besides what PPO stores, each step keeps what the :class:`~sb3_pvdr.planning.PlanningWrapper` put in its
``info`` (recorded by the algorithm's internal callback, before SB3 adds the step): the tokens of the next
frame (so every step's real future y_t can be stacked), the distances of each new frame to the active
plans (eq. (6)'s planning term), the goal image (the prior's goal loss) and the ``done`` flag. Together with
the observation (x_t, z_t*) and the action this is the experience e_t = (x_t, y_t, z_t*, y^_t, a_t).

``compute_returns_and_advantage`` relabels the rewards with eq. (6) first (SB3 calls it at the end of
``collect_rollouts``, so advantages and returns use the PVDR reward); the env rewards stay in
``env_rewards``. Minibatches also carry ``latents`` (z_t = E(x_t, y_t), filled by the algorithm before its
update), ``align_mask`` (complete real futures), ``act_targets`` (the action L_act regresses, also filled by
the algorithm: a_t, or the mean action of the window) and, when the observation holds ``plan_tokens``, ``futures``
(the real future tokens y_t that stand in for the plan; else ``None``), the inputs of L_act (eq. (5)); the last minibatch
handed out is kept in ``current_batch`` for the algorithm's L_act hook.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, NamedTuple, Optional, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.type_aliases import TensorDict
from stable_baselines3.common.vec_env import VecNormalize

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.planning.relabel import episode_last, future_window, planning_term, pvdr_rewards


class PVDRRolloutBufferSamples(NamedTuple):
    """``DictRolloutBufferSamples`` (same first six fields, so ``PPO.train`` reads it unchanged) plus L_act inputs."""

    observations: TensorDict
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    latents: th.Tensor
    align_mask: th.Tensor
    act_targets: th.Tensor
    futures: Optional[th.Tensor]


class PVDRRolloutBuffer(DictRolloutBuffer):
    """Rollout buffer that records the planning wrapper's infos and relabels rewards with eq. (6).

    :param buffer_size: steps per env (``n_steps``)
    :param observation_space: the planning wrapper's ``Dict(context_tokens, z_star)``
    :param action_space: action space
    :param device: torch device of the samples
    :param gae_lambda: GAE lambda
    :param gamma: discount factor
    :param n_envs: number of envs
    :param plan_length: l, frames per plan
    :param frame_step: env steps between plan frames (``DynamicsConfig.frame_step``); a plan covers
        ``plan_length * frame_step`` steps
    :param image_size: frame size H = W (goal images are stored for the fine-tuning stage)
    :param lambda_3: weight of the planning-oriented reward term (eq. (6)); 0 keeps the env reward
    """

    observations: dict[str, np.ndarray]

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        device: Union[th.device, str] = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        plan_length: int = 6,
        frame_step: int = 1,
        image_size: int = 64,
        lambda_3: float = 1.0,
    ) -> None:
        if not isinstance(observation_space, spaces.Dict) or not {"context_tokens", "z_star"} <= set(observation_space.spaces):
            raise ConfigError(f"PVDRRolloutBuffer needs the PlanningWrapper's Dict(context_tokens, z_star) space, got {observation_space}")
        self.plan_length = int(plan_length)
        self.frame_step = int(frame_step)
        self.horizon = self.plan_length * self.frame_step  # env steps one plan covers
        self.image_size = int(image_size)
        self.lambda_3 = float(lambda_3)
        self.grid = tuple(observation_space["context_tokens"].shape[1:])
        self.z_shape = tuple(observation_space["z_star"].shape)
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)

    def reset(self) -> None:
        super().reset()
        shape = (self.buffer_size, self.n_envs)
        self.plan_errors = np.full((*shape, self.horizon), np.nan, dtype=np.float32)
        self.next_tokens = np.zeros((*shape, *self.grid), dtype=np.int64)
        self.goals = np.zeros((*shape, self.image_size, self.image_size, 3), dtype=np.uint8)
        self.dones = np.zeros(shape, dtype=bool)
        self.env_rewards = np.zeros(shape, dtype=np.float32)
        self.latents = np.zeros((*shape, *self.z_shape), dtype=np.float32)
        self.align_mask = np.zeros(shape, dtype=bool)
        self.act_targets = np.zeros((*shape, self.action_dim), dtype=np.float32)
        # real futures y_t, the stand-in for the plan in L_act's input when the policy observes plan_tokens
        self.futures = np.zeros((*shape, self.plan_length, *self.grid), dtype=np.int64) if "plan_tokens" in self.obs_shape else None
        self.current_batch: Optional[PVDRRolloutBufferSamples] = None

    def record(self, infos: Sequence[dict[str, Any]], dones: np.ndarray) -> None:
        """Store the planning wrapper's infos of the step about to be added (at ``self.pos``).

        :raises ConfigError: the env is not wrapped in a ``PlanningWrapper``
        """
        if self.pos >= self.buffer_size:
            return
        for env_idx, info in enumerate(infos):
            if "plan_errors" not in info:
                raise ConfigError("PVDR needs envs wrapped in sb3_pvdr.planning.PlanningWrapper (no 'plan_errors' in info)")
            self.plan_errors[self.pos, env_idx] = info["plan_errors"]
            self.next_tokens[self.pos, env_idx] = info["next_tokens"]
            self.goals[self.pos, env_idx] = info["goal"]
        self.dones[self.pos] = np.asarray(dones, dtype=bool)

    def future_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """Real futures y_t ``(T, n_envs, l, h, w)`` (o_{t+k}, ..., o_{t+lk}) and the mask of complete ones ``(T, n_envs)``."""
        return future_window(self.next_tokens, self.dones, self.plan_length, self.frame_step)

    def hindsight_goal_tokens(self) -> np.ndarray:
        """Tokens of the last frame each step's episode reaches in the rollout ``(T, n_envs, h, w)``: the hindsight
        goals on which a goal-conditioned prior is fine-tuned (as in pre-training, where g is the episode's last frame)."""
        return episode_last(self.next_tokens, self.dones)

    def future_actions(self) -> tuple[np.ndarray, np.ndarray]:
        """The actions a_t, ..., a_{t+lk-1} that produced each step's real future ``(T, n_envs, l * k, action_dim)``,
        and the mask of complete windows ``(T, n_envs)`` (the same windows as :meth:`future_tokens`)."""
        return future_window(self.actions, self.dones, self.horizon)

    def planning_term(self) -> np.ndarray:
        """Planning-oriented distance of eq. (6) per step ``(T, n_envs)`` (before the weight lambda_3)."""
        return planning_term(self.plan_errors, self.dones)

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        """Relabel the rewards with eq. (6), then compute GAE returns and advantages as SB3 does."""
        self.env_rewards = self.rewards.copy()
        self.rewards = pvdr_rewards(self.env_rewards, self.plan_errors, self.dones, self.lambda_3)
        super().compute_returns_and_advantage(last_values, dones)

    def get(self, batch_size: Optional[int] = None) -> Generator[PVDRRolloutBufferSamples, None, None]:  # type: ignore[override]
        if not self.generator_ready:
            self._flat_latents = self.swap_and_flatten(self.latents)
            self._flat_align_mask = self.swap_and_flatten(self.align_mask).reshape(-1)
            self._flat_act_targets = self.swap_and_flatten(self.act_targets)
            self._flat_futures = self.swap_and_flatten(self.futures) if self.futures is not None else None
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: Optional[VecNormalize] = None
    ) -> PVDRRolloutBufferSamples:
        base = super()._get_samples(batch_inds, env)
        self.current_batch = PVDRRolloutBufferSamples(
            *base,
            latents=self.to_torch(self._flat_latents[batch_inds]),
            align_mask=th.as_tensor(self._flat_align_mask[batch_inds], device=self.device),
            act_targets=self.to_torch(self._flat_act_targets[batch_inds]),
            futures=th.as_tensor(self._flat_futures[batch_inds], device=self.device) if self._flat_futures is not None else None,
        )
        return self.current_batch


__all__ = ["PVDRRolloutBuffer", "PVDRRolloutBufferSamples"]
