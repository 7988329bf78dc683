"""Gymnasium wrapper for the paper's PPO baseline: tokens of the current frames and of the goal, no z*."""

from __future__ import annotations

from typing import Any, Optional, SupportsFloat, Union

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from sb3_pvdr.common.errors import CheckpointError, ConfigError
from sb3_pvdr.pretrained import resolve
from sb3_pvdr.tokenizer import VQTokenizer


class TokenGoalWrapper(gym.Wrapper):
    """Observation ``Dict(context_tokens=(m, h, w) int64, goal_tokens=(1, h, w) int64)``: the VQ tokens of the
    last m frames (at reset the first frame repeated) and of the goal image. Reward, termination and ``info``
    are the image-goal env's.

    Paper Appendix A.2, "Baselines": PPO whose actor is PVDR's action alignment transformer and whose critic is
    PVDR's critic, over tokens of the current frames and the goal (no visual dynamics representation).

    :param env: image-goal env with ``Dict(observation, desired_goal)`` uint8 ``(H, W, 3)`` observations
    :param tokenizer: ``VQTokenizer``, a checkpoint path or a shipped model's name (``"metaworld-64"``)
    :param m: context frames (the paper's m = 2)
    :param device: device of a tokenizer loaded from a path
    """

    def __init__(self, env: gym.Env, tokenizer: Union[str, VQTokenizer] = "metaworld-64", m: int = 2, device: str = "cpu") -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or not {"observation", "desired_goal"} <= set(space.spaces):
            raise ConfigError(f"TokenGoalWrapper needs Dict(observation, desired_goal) image observations, got {space}")
        if int(m) < 1:
            raise ConfigError(f"m must be >= 1, got {m}")
        if not isinstance(tokenizer, VQTokenizer):
            path = resolve(tokenizer, "tokenizer")
            try:
                tokenizer = VQTokenizer.load(path, map_location=device)
            except FileNotFoundError as exc:
                raise CheckpointError(f"tokenizer checkpoint not found: {path}") from exc
        expected = (tokenizer.image_size, tokenizer.image_size, 3)
        if tuple(space["observation"].shape) != expected:
            raise ConfigError(f"env frames are {tuple(space['observation'].shape)} but the tokenizer expects {expected}")
        self.tokenizer = tokenizer.eval()
        self.m = int(m)
        h, w = tokenizer.grid_size
        high = tokenizer.codebook_size - 1
        self.observation_space = spaces.Dict(
            {
                "context_tokens": spaces.Box(0, high, (self.m, h, w), dtype=np.int64),
                "goal_tokens": spaces.Box(0, high, (1, h, w), dtype=np.int64),
            }
        )
        self._context: Optional[np.ndarray] = None
        self._goal_image: Optional[np.ndarray] = None
        self._goal_tokens: Optional[np.ndarray] = None

    @torch.inference_mode()
    def _encode(self, frame: np.ndarray) -> np.ndarray:
        return self.tokenizer.encode(frame[None])[0].cpu().numpy().astype(np.int64)

    def _observation(self, goal: np.ndarray) -> dict[str, np.ndarray]:
        if self._goal_image is None or not np.array_equal(goal, self._goal_image):
            self._goal_image = np.array(goal)
            self._goal_tokens = self._encode(self._goal_image)[None]
        return {"context_tokens": self._context.copy(), "goal_tokens": self._goal_tokens.copy()}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._context = np.repeat(self._encode(obs["observation"])[None], self.m, axis=0)
        return self._observation(obs["desired_goal"]), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        if self._context is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._context = np.concatenate((self._context[1:], self._encode(obs["observation"])[None]), axis=0)
        return self._observation(obs["desired_goal"]), reward, terminated, truncated, info


__all__ = ["TokenGoalWrapper"]
