"""All 12 paper tasks (slow: ``pytest -m slow tests/test_all_tasks.py -s``).

For each task: the env builds, every one of the 50 MT1 variants gets a goal image from metaworld's
scripted policy (or is skipped with a recorded reason), and the scripted policy acting through our
env (action repeat 2, 250 agent steps) reaches success and the success bonus on a working variant.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.envs import PAPER_TASKS, get_scripted_policy, make_metaworld_env

pytestmark = pytest.mark.slow

N_VARIANTS = 50
MIN_WORKING = 45  # variants with a goal image, out of 50


@pytest.mark.parametrize("task", [f"{t}-v2" for t in PAPER_TASKS])
def test_task_goal_images_and_scripted_success(task, tmp_path):
    env = make_metaworld_env(task, image_size=64, goal_cache_dir=tmp_path, seed=0)
    try:
        working, failed = [], {}
        for variant in range(N_VARIANTS):
            try:
                env.goal_image_of(variant)
                working.append(variant)
            except ConfigError as exc:
                failed[variant] = str(exc)
        print(f"\n{task}: {len(working)}/{N_VARIANTS} variants with a goal image; failed: {sorted(failed)}")
        for reason in sorted(set(failed.values()))[:3]:
            print(f"  {reason}")
        assert len(working) >= MIN_WORKING, failed

        # every goal image is a real frame that differs from the variant's start frame
        variant = working[0]
        obs, info = env.reset(options={"variant": variant})
        assert info["variant"] == variant and obs["desired_goal"].std() > 10
        assert np.abs(obs["observation"].astype(int) - obs["desired_goal"]).mean() > 0.5

        # the scripted policy solves it through the wrapped env (action repeat 2, 250 agent steps)
        policy = get_scripted_policy(task)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step in range(250):
                obs, reward, terminated, truncated, info = env.step(policy.get_action(env.state_observation()))
                if terminated or truncated:
                    break
        print(f"  scripted policy through the env: success={info['is_success']} after {step + 1} agent steps")
        assert terminated and info["is_success"] and reward > 59.0
    finally:
        env.close()
