"""RLBench adapter: the missing-dependency error, and the image-goal logic on a stand-in RLBench env."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

from sb3_pvdr.common.errors import ConfigError, DependencyError
from sb3_pvdr.envs.rlbench import ImageGoalRLBenchEnv, make_rlbench_env, rlbench_env_id


def test_missing_rlbench_is_one_line_dependency_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "rlbench", None)  # import rlbench -> ImportError, installed or not
    with pytest.raises(DependencyError) as exc:
        make_rlbench_env("reach_target")
    message = str(exc.value)
    assert "\n" not in message and "CoppeliaSim" in message and "RLBench" in message
    assert isinstance(exc.value, ImportError)  # callers may catch ImportError too


def test_env_ids_and_bad_names():
    assert rlbench_env_id("reach_target") == "rlbench/reach_target-vision-v0"
    assert rlbench_env_id("rlbench/open_drawer-vision-v0") == "rlbench/open_drawer-vision-v0"
    with pytest.raises(ConfigError):
        rlbench_env_id("rlbench/reach_target-state-v0")  # the adapter needs camera frames
    with pytest.raises(ConfigError, match="image_size"):
        make_rlbench_env("reach_target", image_size=50)


class FakeRLBenchEnv(gym.Env):
    """Stand-in for ``rlbench.gym.RLBenchEnv`` (vision mode): same reset/step/demo interface.

    The "scene" is a bright square whose column is the state; the task succeeds when it reaches
    column 10 (what the demo's last frame shows). Frames are 40x40 float images in [0, 1].
    """

    def __init__(self):
        self.action_space = gym.spaces.Box(-1.0, 1.0, (8,), np.float32)
        self.observation_space = gym.spaces.Dict({"front_rgb": gym.spaces.Box(0, 1, (40, 40, 3), np.float32)})
        self.rlbench_task_env = SimpleNamespace(get_demos=self._get_demos)
        self.demos_made = 0
        self.x = 0

    def _image(self, x):
        image = np.zeros((40, 40, 3), np.float32)
        image[10:20, x * 2 : x * 2 + 10] = 1.0
        return image

    def _get_demos(self, amount, live_demos):
        assert live_demos
        self.demos_made += 1
        start = self.demos_made
        return [[SimpleNamespace(front_rgb=self._image(x), start=start) for x in range(start, 11)]]

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x = options["reset_to_demo"][0].start
        return {"front_rgb": self._image(self.x)}, {"text_descriptions": ["move right"]}

    def step(self, action):
        self.x = min(self.x + int(action[0] > 0), 10)
        done = self.x == 10
        return {"front_rgb": self._image(self.x)}, float(done), done, False, {}


def test_adapter_goal_reward_and_success():
    inner = FakeRLBenchEnv()
    env = ImageGoalRLBenchEnv(inner, image_size=32, max_episode_steps=200)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["is_success"] is False
    goal = obs["desired_goal"]
    assert goal.dtype == np.uint8 and goal.max() == 255  # the demo's last frame, scaled to uint8
    # a fixed layout by default: the second reset reuses the first demo
    assert np.array_equal(env.reset()[0]["desired_goal"], goal) and inner.demos_made == 1

    rewards, terminated = [], False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(np.ones(8, np.float32))
        rewards.append(reward)
        assert not truncated
    assert info["is_success"] and 100 - 0.01 < rewards[-1] <= 100  # goal frame reached exactly
    assert all(-1 <= r < 0 for r in rewards[:-1]) and rewards[0] < rewards[-2]
    assert inner.x == 10 and len(rewards) == 5  # 9 moves at action repeat 2, stopped on success


def test_adapter_new_layout_truncation_and_crop():
    inner = FakeRLBenchEnv()
    env = ImageGoalRLBenchEnv(inner, image_size=16, crop=(0, 0, 32, 32), max_episode_steps=4,
                              new_layout_every_reset=True)
    env.reset()
    env.reset()
    assert inner.demos_made == 2
    flags = [env.step(np.zeros(8, np.float32))[3] for _ in range(2)]
    assert flags == [False, True]
    with pytest.raises(ConfigError, match="camera"):
        ImageGoalRLBenchEnv(FakeRLBenchEnv(), camera="side")
