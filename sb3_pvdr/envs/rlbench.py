"""RLBench adapter: RLBench's gymnasium envs (``rlbench/<task>-vision-v0``) with the same image-goal
interface as the Meta-World env.

Observation ``Dict(observation=uint8 (H, W, 3), desired_goal=uint8 (H, W, 3))`` from one RLBench camera
(``front`` by default, as in the paper), reward ``-mean|o_{t+1} - g|`` (frames in [0, 1]) plus
``success_reward`` (100 for RLBench in the paper, Appendix A.3) on success, ``info["is_success"]``.

The goal image is the last frame of an RLBench demonstration (motion-planned by RLBench itself), and
the episode starts from that demonstration's initial state (``reset(options={"reset_to_demo": demo})``
of ``rlbench.gym.RLBenchEnv``), so the goal shows the layout the agent actually faces. As in the paper
("we fix the initial pose of objects in RLBench tasks for definite visual goals"), one demonstration
is drawn at the first reset and reused by default; ``new_layout_every_reset=True`` draws a new one at
every reset.

RLBench needs CoppeliaSim and PyRep, which no package registry ships: install them by hand
(https://github.com/stepjam/RLBench#install). Without them :func:`make_rlbench_env` raises a one-line
:class:`~sb3_pvdr.common.errors.DependencyError`.
"""

from __future__ import annotations

import re
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_pvdr.common.errors import ConfigError, DependencyError, one_line
from sb3_pvdr.envs.tasks import check_image_size

RLBENCH_CAMERAS = ("front", "left_shoulder", "right_shoulder", "wrist", "overhead")
INSTALL_HINT = (
    "RLBench is not installed: it needs CoppeliaSim and PyRep, which are not on PyPI; install them "
    "by hand (https://github.com/stepjam/RLBench#install), then `pip install rlbench`"
)


def rlbench_env_id(task: str) -> str:
    """``"reach_target"`` or ``"rlbench/reach_target-vision-v0"`` -> ``"rlbench/reach_target-vision-v0"``."""
    if re.fullmatch(r"rlbench/[a-z0-9_]+-vision-v0", task):
        return task
    if re.fullmatch(r"[a-z0-9_]+", task):
        return f"rlbench/{task}-vision-v0"
    raise ConfigError(
        f"RLBench task {task!r} is invalid: give a task name like 'reach_target' or an id like "
        f"'rlbench/reach_target-vision-v0'"
    )


class ImageGoalRLBenchEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Image-goal wrapper of an ``rlbench.gym.RLBenchEnv`` (vision observation mode).

    Paper: Luo, Zhou, Lu, "Pre-trained Visual Dynamics Representations for Efficient Policy
    Learning", ECCV 2024 (RLBench setting: front camera, 200-step episodes, action repeat 2,
    success reward 100).

    :param env: an RLBench gymnasium env (``gym.make("rlbench/<task>-vision-v0")``); it must expose
        ``rlbench_task_env.get_demos`` and accept ``reset(options={"reset_to_demo": demo})``
    :param image_size: frame size in pixels (frames are cropped, then resized with area averaging)
    :param camera: RLBench camera whose ``<camera>_rgb`` frames are used
    :param crop: ``(top, left, height, width)`` in the camera's pixels, applied before resizing
        (the paper crops the front camera); ``None``: the full frame
    :param action_repeat: simulator steps per agent step
    :param max_episode_steps: episode length in simulator steps
    :param success_reward: bonus at steps where the task reports success
    :param terminate_on_success: end the episode at the first success
    :param new_layout_every_reset: draw a new demonstration (layout and goal) at every reset instead
        of reusing the first one
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        env: gym.Env,
        image_size: int = 64,
        camera: str = "front",
        crop: tuple[int, int, int, int] | None = None,
        action_repeat: int = 2,
        max_episode_steps: int = 200,
        success_reward: float = 100.0,
        terminate_on_success: bool = True,
        new_layout_every_reset: bool = False,
    ) -> None:
        super().__init__()
        if camera not in RLBENCH_CAMERAS:
            raise ConfigError(f"unknown RLBench camera {camera!r}; valid cameras: {', '.join(RLBENCH_CAMERAS)}")
        if crop is not None and (len(crop) != 4 or min(crop) < 0 or crop[2] <= 0 or crop[3] <= 0):
            raise ConfigError(f"crop must be (top, left, height, width) with positive height/width, got {crop!r}")
        if not isinstance(action_repeat, int) or action_repeat < 1:
            raise ConfigError(f"action_repeat must be a positive int, got {action_repeat!r}")
        if not isinstance(max_episode_steps, int) or max_episode_steps < action_repeat:
            raise ConfigError(f"max_episode_steps must be an int >= action_repeat, got {max_episode_steps!r}")
        self.env = env
        self.image_size = check_image_size(image_size)
        self.camera_key = f"{camera}_rgb"
        self.crop = None if crop is None else tuple(int(c) for c in crop)
        self.action_repeat = action_repeat
        self.max_episode_steps = max_episode_steps
        self.success_reward = float(success_reward)
        self.terminate_on_success = terminate_on_success
        self.new_layout_every_reset = new_layout_every_reset

        shape = (self.image_size, self.image_size, 3)
        self.observation_space = spaces.Dict(
            {
                "observation": spaces.Box(0, 255, shape, np.uint8),
                "desired_goal": spaces.Box(0, 255, shape, np.uint8),
            }
        )
        inner = env.action_space
        assert isinstance(inner, spaces.Box), "RLBench action spaces are boxes"
        self.action_space = spaces.Box(inner.low, inner.high, inner.shape, np.float32)
        self._demo: Any = None
        self._goal: np.ndarray | None = None
        self._frame: np.ndarray | None = None
        self._sim_steps = 0

    # ------------------------------------------------------------------ frames
    def to_frame(self, rgb: np.ndarray) -> np.ndarray:
        """One RLBench camera image (uint8, or float in [0, 1]) -> cropped, resized ``uint8 (H, W, 3)``."""
        import cv2

        image = np.asarray(rgb)
        if image.dtype != np.uint8:
            image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        if self.crop is not None:
            top, left, height, width = self.crop
            image = image[top : top + height, left : left + width]
            if image.shape[0] != height or image.shape[1] != width:
                raise ConfigError(f"crop {self.crop} does not fit the {rgb.shape[:2]} camera frame")
        if image.shape[:2] != (self.image_size, self.image_size):
            image = cv2.resize(image, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image)

    def _frame_of(self, rlbench_obs: Any) -> np.ndarray:
        """The camera frame of an observation: a gym obs dict or an ``rlbench`` ``Observation``."""
        rgb = rlbench_obs[self.camera_key] if isinstance(rlbench_obs, dict) else getattr(rlbench_obs, self.camera_key)
        if rgb is None:
            raise ConfigError(f"RLBench observations have no {self.camera_key!r}: enable that camera")
        return self.to_frame(rgb)

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        if self._demo is None or self.new_layout_every_reset:
            task_env = self.env.unwrapped.rlbench_task_env  # type: ignore[attr-defined]
            self._demo = task_env.get_demos(1, live_demos=True)[0]
            self._goal = self._frame_of(self._demo[-1])
        inner_obs, info = self.env.reset(seed=seed, options={"reset_to_demo": self._demo})
        self._sim_steps = 0
        self._frame = self._frame_of(inner_obs)
        return self._obs(), {**info, "is_success": False}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        if self._goal is None:
            raise RuntimeError("call reset() before step()")
        if self._sim_steps >= self.max_episode_steps:
            raise RuntimeError("the episode is over (truncated): call reset()")
        success = False
        inner_obs = None
        for _ in range(self.action_repeat):
            if self._sim_steps >= self.max_episode_steps:
                break
            inner_obs, reward, terminated, _, _ = self.env.step(action)
            self._sim_steps += 1
            # RLBench's reward is 1 on success (and its `terminated` flags success)
            success = success or bool(terminated) or float(reward) > 0
            if success and self.terminate_on_success:
                break
        assert inner_obs is not None
        self._frame = self._frame_of(inner_obs)
        distance = np.abs(self._frame.astype(np.float32) - self._goal.astype(np.float32)).mean() / 255.0
        reward_out = -float(distance) + (self.success_reward if success else 0.0)
        terminated_out = success and self.terminate_on_success
        truncated = not terminated_out and self._sim_steps >= self.max_episode_steps
        return self._obs(), reward_out, terminated_out, truncated, {"is_success": success}

    def render(self) -> np.ndarray | None:
        return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        env, self.env = getattr(self, "env", None), None
        if env is not None:
            env.close()

    def _obs(self) -> dict[str, np.ndarray]:
        assert self._frame is not None and self._goal is not None
        return {"observation": self._frame.copy(), "desired_goal": self._goal.copy()}


def make_rlbench_env(task: str, image_size: int = 64, **kwargs: Any) -> ImageGoalRLBenchEnv:
    """Build an image-goal RLBench env.

    :param task: ``"reach_target"`` or RLBench's gymnasium id ``"rlbench/reach_target-vision-v0"``
    :param image_size: frame size in pixels
    :param kwargs: the other parameters of :class:`ImageGoalRLBenchEnv`
    :raises DependencyError: RLBench (CoppeliaSim, PyRep) is not installed
    """
    env_id = rlbench_env_id(task)
    check_image_size(image_size)
    try:
        import rlbench  # noqa: F401 - registers the rlbench/* gymnasium ids
    except ImportError as exc:  # also the PyRep/CoppeliaSim import errors raised inside rlbench
        raise DependencyError(one_line(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})")) from exc
    if env_id not in gym.registry:
        names = sorted(i for i in gym.registry if i.startswith("rlbench/") and i.endswith("-vision-v0"))
        raise ConfigError(f"unknown RLBench task {env_id!r}; valid ids: {', '.join(names)}")
    return ImageGoalRLBenchEnv(gym.make(env_id), image_size=image_size, **kwargs)
