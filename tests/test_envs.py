"""Image-goal Meta-World env: spaces, variants, reward, goal cache, names, orientation, vec envs."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.envs import (
    METAWORLD_TASKS,
    PAPER_TASKS,
    TASK_SETS,
    ImageGoalMetaWorldEnv,
    get_scripted_policy,
    make_metaworld_env,
    resolve_task,
)

SIZE = 40  # >= 36: SB3's check_env accepts it for CnnPolicy without a warning


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("goal_cache")


@pytest.fixture(scope="module")
def env(cache_dir):
    env = make_metaworld_env("reach-v2", image_size=SIZE, seed=0, goal_cache_dir=cache_dir)
    yield env
    env.close()


def run_scripted(env: ImageGoalMetaWorldEnv, max_steps: int = 250):
    """Follow metaworld's scripted policy from a reset; returns the list of step results."""
    policy = get_scripted_policy(env.task_name)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # metaworld's policies warn on clipped actions
        for _ in range(max_steps):
            result = env.step(policy.get_action(env.state_observation()))
            results.append(result)
            if result[2] or result[3]:
                break
    return results


# ---------------------------------------------------------------------- names and config errors
def test_task_table():
    import metaworld.env_dict

    assert len(PAPER_TASKS) == 12 and set(TASK_SETS) == set(PAPER_TASKS)
    assert sorted(TASK_SETS.values()) == [1] * 5 + [2] * 4 + [3] * 3
    assert TASK_SETS["reach"] == 1 and TASK_SETS["plate-slide"] == 2 and TASK_SETS["drawer-open"] == 3
    assert {f"{t}-v3" for t in METAWORLD_TASKS} == set(metaworld.env_dict.ALL_V3_ENVIRONMENTS)
    assert set(PAPER_TASKS) <= set(METAWORLD_TASKS)


@pytest.mark.parametrize("name", ["reach", "reach-v2", "reach-v3", " reach-v2 "])
def test_aliases_resolve_to_v3(name):
    spec = resolve_task(name)
    assert spec.metaworld_name == "reach-v3" and spec.paper_name == "reach-v2" and spec.task_set == 1


@pytest.mark.parametrize("name", ["rech-v2", "reach-v4", "door-opn-v2", "", "REACH"])
def test_unknown_task_is_one_line_error_listing_names(name):
    with pytest.raises(ConfigError) as exc:
        make_metaworld_env(name)
    message = str(exc.value)
    assert "\n" not in message
    assert repr(name) in message and "reach-v2" in message and "drawer-open-v2" in message
    assert "door-open-v2" in message  # tasks outside the paper are listed under their v2 names too


def test_every_task_has_a_v2_alias():
    from sb3_pvdr.envs import registered_ids, valid_task_names

    names = set(valid_task_names())
    for task in METAWORLD_TASKS:
        assert {task, f"{task}-v2", f"{task}-v3"} <= names
        assert resolve_task(f"{task}-v2") == resolve_task(f"{task}-v3") == resolve_task(task)
        assert f"{task}-v2" in registered_ids() and f"{task}-v3" in registered_ids()
    spec = resolve_task("door-open-v2")
    assert (spec.metaworld_name, spec.paper_name, spec.task_set) == ("door-open-v3", "door-open-v2", None)
    assert resolve_task("pick-place-v2").metaworld_name == "pick-place-v3"


@pytest.mark.parametrize("size", [0, -64, 8, 30, 63, 1024, 64.0, "64", True])
def test_bad_image_size_is_refused(size):
    with pytest.raises(ConfigError, match="image_size"):
        make_metaworld_env("reach-v2", image_size=size)


def test_bad_camera_and_variant_are_refused(cache_dir):
    with pytest.raises(ConfigError, match="corner3"):
        make_metaworld_env("reach-v2", camera="front", goal_cache_dir=cache_dir)
    with pytest.raises(ConfigError, match="variant"):
        make_metaworld_env("reach-v2", variant=50, image_size=SIZE, goal_cache_dir=cache_dir)


# ---------------------------------------------------------------------- gym API
def test_spaces_reset_step(env):
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict) and set(space.spaces) == {"observation", "desired_goal"}
    for key in ("observation", "desired_goal"):
        assert space[key].shape == (SIZE, SIZE, 3) and space[key].dtype == np.uint8
    assert env.action_space.shape == (4,)

    obs, info = env.reset(seed=3)
    assert space.contains(obs)
    assert info["is_success"] is False and 0 <= info["variant"] < 50
    assert obs["observation"].std() > 10  # a real rendered scene, not a blank frame
    assert not np.array_equal(obs["observation"], obs["desired_goal"])  # arm not yet at the goal
    state = env.state_observation()
    assert state.shape == (39,)

    obs2, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
    assert space.contains(obs2)
    assert -1.0 <= reward < 0.0 and not terminated and not truncated and info["is_success"] is False
    assert info["variant"] == env.variant
    expected = -np.abs(obs2["observation"] / 255.0 - obs2["desired_goal"] / 255.0).mean()
    assert reward == pytest.approx(expected, abs=1e-6)


def test_truncation_counts_simulator_steps(cache_dir):
    env = make_metaworld_env("reach-v2", image_size=SIZE, max_episode_steps=10, action_repeat=2,
                             variant=0, goal_cache_dir=cache_dir)
    try:
        env.reset()
        flags = [env.step(np.zeros(4, np.float32))[3] for _ in range(5)]
        assert flags == [False] * 4 + [True]  # 10 simulator steps = 5 agent steps
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(4, np.float32))
    finally:
        env.close()


def test_new_variant_and_goal_on_each_reset(env):
    env.reset(seed=0)
    seen = {}
    for _ in range(3):
        obs, info = env.reset()
        seen[info["variant"]] = obs["desired_goal"]
    assert len(seen) >= 2
    goals = list(seen.values())
    assert not np.array_equal(goals[0], goals[1])
    # same seed -> same sequence of variants
    first = [env.reset(seed=0)[1]["variant"]] + [env.reset()[1]["variant"] for _ in range(3)]
    again = [env.reset(seed=0)[1]["variant"]] + [env.reset()[1]["variant"] for _ in range(3)]
    assert first == again


def test_fixed_variant(cache_dir):
    env = make_metaworld_env("reach-v2", image_size=SIZE, variant=5, seed=1, goal_cache_dir=cache_dir)
    try:
        out = [env.reset(seed=s) for s in (1, 2, 3)]
        assert [info["variant"] for _, info in out] == [5, 5, 5]
        assert all(np.array_equal(out[0][0]["desired_goal"], obs["desired_goal"]) for obs, _ in out)
        assert np.array_equal(out[0][0]["observation"], out[2][0]["observation"])
        # options can force one variant for one episode
        assert env.reset(options={"variant": 7})[1]["variant"] == 7
    finally:
        env.close()


def test_reward_sign_and_success_bonus(env):
    env.reset(seed=0)
    results = run_scripted(env)
    rewards = [r for _, r, _, _, _ in results]
    obs, last_reward, terminated, truncated, info = results[-1]
    assert terminated and not truncated and info["is_success"] is True
    assert all(-1.0 <= r < 0.0 for r in rewards[:-1])
    assert 60.0 - 0.2 < last_reward < 60.0  # bonus 60 plus a small negative image distance
    # the scripted policy moves the frame towards the goal image
    assert -rewards[-2] < -rewards[0]
    # the goal frame is the state the policy reaches: the last frame is close to it
    assert np.abs(obs["observation"] / 255.0 - obs["desired_goal"] / 255.0).mean() < 0.02


def test_goal_image_cached_and_reused(cache_dir, monkeypatch):
    from sb3_pvdr.envs import metaworld_env

    first = make_metaworld_env("reach-v2", image_size=SIZE, variant=9, goal_cache_dir=cache_dir)
    goal = first.reset()[0]["desired_goal"]
    first.close()
    assert any(cache_dir.rglob("variant_09.png"))

    def no_rollout(*args, **kwargs):
        raise AssertionError("the scripted policy ran although the goal image was cached")

    monkeypatch.setattr(metaworld_env, "rollout_to_goal", no_rollout)
    second = make_metaworld_env("reach-v2", image_size=SIZE, variant=9, goal_cache_dir=cache_dir)
    try:
        assert np.array_equal(second.reset()[0]["desired_goal"], goal)
    finally:
        second.close()


def test_variants_without_goal_are_skipped_or_refused(tmp_path, monkeypatch):
    """Where the scripted policy fails, the variant is skipped (reason cached); a fixed one is refused."""
    from sb3_pvdr.common.errors import PVDRError

    def odd_variants_fail(self, variant):  # stands in for the scripted-policy rollout
        return (None, "stand-in failure") if variant % 2 else (np.full((SIZE, SIZE, 3), 7, np.uint8), "")

    monkeypatch.setattr(ImageGoalMetaWorldEnv, "_generate_goal", odd_variants_fail)
    env = make_metaworld_env("reach-v2", image_size=SIZE, goal_cache_dir=tmp_path)
    try:
        drawn = {env.reset(seed=s)[1]["variant"] for s in range(8)}
        assert drawn and all(v % 2 == 0 for v in drawn) and all(v % 2 for v in env._failed)
        assert any(tmp_path.rglob("*.failed")) and any(tmp_path.rglob("*.png"))
        failed = sorted(env._failed)[0]
        with pytest.raises(ConfigError, match="stand-in failure") as exc:
            make_metaworld_env("reach-v2", image_size=SIZE, variant=failed, goal_cache_dir=tmp_path)
        assert "\n" not in str(exc.value)
    finally:
        env.close()
    monkeypatch.setattr(ImageGoalMetaWorldEnv, "_generate_goal", lambda self, variant: (None, "stand-in failure"))
    env = make_metaworld_env("reach-v2", image_size=SIZE, goal_cache_dir=tmp_path / "none")
    try:
        with pytest.raises(PVDRError, match="no variant"):
            env.reset()
    finally:
        env.close()


def test_variant_cache_matches_metaworld_mt1(tmp_path):
    from sb3_pvdr.envs.metaworld_env import load_or_make_variants

    reference = load_or_make_variants("reach-v3", tmp_path)  # metaworld.MT1(..., seed=0), then cached
    assert any(tmp_path.rglob("variants_seed0.npy"))
    cached = load_or_make_variants("reach-v3", tmp_path)  # rebuilt from the cached random vectors
    assert len(cached) == len(reference) == 50
    for ours, theirs in zip(cached, reference):
        a, b = pickle.loads(ours.data), pickle.loads(theirs.data)
        assert a.keys() == b.keys() and np.array_equal(a.pop("rand_vec"), b.pop("rand_vec")) and a == b


def test_gym_make_ids_and_kwargs(cache_dir):
    import sb3_pvdr.envs  # noqa: F401 - registers the ids

    for env_id in ("reach-v2", "reach-v3", "drawer-open-v2", "plate-slide-side-v3", "assembly-v3"):
        assert env_id in gym.registry
    assert all(f"{t}-v2" in gym.registry and f"{t}-v3" in gym.registry for t in METAWORLD_TASKS)
    env = gym.make("reach-v2", image_size=SIZE, variant=9, goal_cache_dir=cache_dir)
    try:
        assert isinstance(env.unwrapped, ImageGoalMetaWorldEnv)
        assert env.unwrapped.task_name == "reach-v3" and env.unwrapped.fixed_variant == 9
        obs, info = env.reset()
        assert obs["observation"].shape == (SIZE, SIZE, 3) and info["variant"] == 9
        assert env.unwrapped.state_observation().shape == (39,)
    finally:
        env.close()
    # "module:id" imports the module first, as fresh subprocesses (SubprocVecEnv workers) need
    env = gym.make("sb3_pvdr.envs:drawer-open-v2", image_size=SIZE, variant=9, goal_cache_dir=cache_dir)
    try:
        assert env.unwrapped.task_name == "drawer-open-v3" and env.unwrapped.camera == "corner"
    finally:
        env.close()
    # a v2 name outside the paper's 12 tasks: gym.make calls make_metaworld_env("door-open-v2", ...)
    # (built only, not reset: no goal rollout)
    env = gym.make("door-open-v2", image_size=16, goal_cache_dir=cache_dir)
    try:
        assert env.spec.id == "door-open-v2" and env.unwrapped.task_name == "door-open-v3"
    finally:
        env.close()


def test_check_env(cache_dir):
    from stable_baselines3.common.env_checker import check_env

    # a fixed variant: check_env resets with several seeds, each new variant would cost a rollout
    env = make_metaworld_env("reach-v2", image_size=SIZE, variant=9, goal_cache_dir=cache_dir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning from SB3's checker either
            check_env(env, warn=True, skip_render_check=True)
    finally:
        env.close()


def test_close_is_idempotent(cache_dir):
    env = make_metaworld_env("reach-v2", image_size=SIZE, variant=0, goal_cache_dir=cache_dir)
    env.reset()
    env.close()
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


# ---------------------------------------------------------------------- frames the right way up
def _green_centroid(frame: np.ndarray) -> np.ndarray:
    mask = (frame[..., 1] > 150) & (frame[..., 0] < 90) & (frame[..., 2] < 90)
    assert mask.sum() >= 2, "marker not visible"
    rows, cols = np.nonzero(mask)
    return np.array([rows.mean(), cols.mean()])


@pytest.mark.parametrize("camera", ["corner", "corner3"])
def test_frames_right_way_up(cache_dir, camera):
    """A marker raised in the world moves up in the frame; one moved to the camera's right moves
    right (a mirrored frame would move it left)."""
    import mujoco

    env = make_metaworld_env("reach-v2", image_size=64, camera=camera, variant=0,
                             hide_goal_markers=False, goal_cache_dir=cache_dir)
    try:
        env.reset()
        model, data = env.metaworld_env.model, env.metaworld_env.data
        site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "goal")
        model.site_rgba[site] = (0.0, 1.0, 0.0, 1.0)
        model.site_size[site][0] = 0.04
        cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        forward = -data.cam_xmat[cam].reshape(3, 3)[:, 2]  # MuJoCo cameras look along their -z axis
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)

        def marker_at(pos):
            data.site_xpos[site] = pos
            return _green_centroid(env.render_frame())

        base = np.array([0.0, 0.75, 0.15])
        at_base = marker_at(base)
        higher = marker_at(base + [0.0, 0.0, 0.15])
        to_right = marker_at(base + 0.15 * right)
        assert higher[0] < at_base[0] - 3, "world up is not image up"
        assert to_right[1] > at_base[1] + 3, "frame is mirrored"
    finally:
        env.close()


# ---------------------------------------------------------------------- several envs
def test_subproc_vec_env_frames_match_single_process(env, cache_dir):
    """Two envs in subprocesses render the same frames as two envs sharing this process."""
    from functools import partial

    from stable_baselines3.common.vec_env import SubprocVecEnv

    fns = [partial(make_metaworld_env, "reach-v2", image_size=SIZE, seed=seed, goal_cache_dir=str(cache_dir))
           for seed in (21, 22)]
    local = [env, fns[1]()]  # the module's env stands in for the first one: same settings, reseeded below
    vec = SubprocVecEnv(fns)
    try:
        actions = np.random.default_rng(0).uniform(-1, 1, (4, 2, 4)).astype(np.float32)
        vec_obs = vec.reset()
        local_obs = [local[0].reset(seed=21)[0], local[1].reset()[0]]
        for step in range(len(actions) + 1):
            for i, env in enumerate(local):
                for key in ("observation", "desired_goal"):
                    assert np.array_equal(vec_obs[key][i], local_obs[i][key]), (step, i, key)
            if step == len(actions):
                break
            vec_obs, _, _, _ = vec.step(actions[step])
            local_obs = [env.step(actions[step][i])[0] for i, env in enumerate(local)]
        assert not np.array_equal(local_obs[0]["observation"], local_obs[1]["observation"])
    finally:
        vec.close()
        local[1].close()
