"""Image-goal Meta-World environment (PVDR paper, section 3.1, section 5.1 and Appendix A.3).

The agent sees the current camera frame and a goal image, Gymnasium-Robotics ``GoalEnv`` style::

    Dict(observation=uint8 (H, W, 3), desired_goal=uint8 (H, W, 3))

and gets the paper's reward ``r_t = -||o_{t+1} - g||_1`` (frames scaled to [0, 1], mean over pixels)
plus ``success_reward`` (60 for Meta-World) when the task reports success.

Variants: metaworld's MT1 holds 50 pre-sampled object/goal layouts per task. By default each reset
draws one of them with the env's seeded RNG (as APV/ContextWM randomise resets); ``variant=k`` fixes
one (debugging and demos only: an open-loop motion solves a fixed variant). The goal image of each
variant comes from metaworld's scripted policy (:mod:`sb3_pvdr.envs.goals`) and is cached on disk.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import pickle
import weakref
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_pvdr.common.errors import ConfigError, PVDRError
from sb3_pvdr.envs.goals import (
    GOAL_ROLLOUT_STEPS,
    GoalImageCache,
    atomic_write_bytes,
    get_scripted_policy,
    rollout_to_goal,
    versioned_cache_root,
)
from sb3_pvdr.envs.rendering import SceneRenderer
from sb3_pvdr.envs.tasks import TaskSpec, check_camera, check_image_size, resolve_task

logger = logging.getLogger(__name__)

# Seed of metaworld.MT1's variant generation: fixed, so `variant=k` names the same layout in every
# process and run (and its cached goal image stays valid).
VARIANT_SEED = 0
# What metaworld.MT1 sets in every task (the goal position is part of the 39-d state, which the
# scripted policies read; the agent never sees that state).
MT_OVERRIDE = {"partially_observable": False}
# Simulator frames per second of metaworld (frame_skip 5 at dt 0.0025).
METAWORLD_FPS = 80


_VARIANTS: dict[str, tuple[Any, ...]] = {}


def metaworld_variants(metaworld_name: str, cache_dir: str | os.PathLike | None = None) -> tuple[Any, ...]:
    """The 50 MT1 variants (``metaworld.types.Task``) of a task, as ``metaworld.MT1(name, seed=0)``.

    Kept in memory per process; see :func:`load_or_make_variants` for the disk cache.

    :param metaworld_name: e.g. ``"reach-v3"``
    :param cache_dir: goal-cache root (``None``: the default one)
    """
    if metaworld_name not in _VARIANTS:
        _VARIANTS[metaworld_name] = load_or_make_variants(metaworld_name, cache_dir)
    return _VARIANTS[metaworld_name]


def load_or_make_variants(metaworld_name: str, cache_dir: str | os.PathLike | None = None) -> tuple[Any, ...]:
    """MT1's variants, from their random vectors cached on disk, else from ``metaworld.MT1``.

    MT1 draws the variants by resetting a fresh env 50 times (1-4 s); their random vectors are cached
    next to the goal images and the tasks rebuilt from them exactly as MT1 encodes them.
    """
    import metaworld
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML1_ARGS_KWARGS
    from metaworld.types import Task

    path = versioned_cache_root(cache_dir) / metaworld_name / f"variants_seed{VARIANT_SEED}.npy"
    rand_vecs = None
    if path.is_file():
        try:
            rand_vecs = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable variant cache %s (%s)", path, exc)
    if rand_vecs is None or rand_vecs.ndim != 2 or len(rand_vecs) == 0:
        tasks = tuple(metaworld.MT1(metaworld_name, seed=VARIANT_SEED).train_tasks)
        rand_vecs = np.stack([pickle.loads(task.data)["rand_vec"] for task in tasks])
        buffer = io.BytesIO()
        np.save(buffer, rand_vecs, allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())
        return tasks
    kwargs = {k: v for k, v in ML1_ARGS_KWARGS[metaworld_name]["kwargs"].items() if k != "task_id"}
    env_cls = ALL_V3_ENVIRONMENTS[metaworld_name]
    return tuple(
        Task(env_name=metaworld_name, data=pickle.dumps({**kwargs, "rand_vec": vec, "env_cls": env_cls, **MT_OVERRIDE}))
        for vec in rand_vecs
    )


# Envs alive in this process, closed at exit before mujoco's EGL display is terminated (EGL prints
# errors when a context outlives its display). The atexit hook is registered after the first render
# context exists, so it runs before mujoco's own `eglTerminate` hook (atexit is LIFO).
_LIVE_ENVS: weakref.WeakSet[ImageGoalMetaWorldEnv] = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _close_live_envs() -> None:
    for env in list(_LIVE_ENVS):
        env.close()


class ImageGoalMetaWorldEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Image-goal-conditioned Meta-World task with the PVDR paper's reward.

    Paper: Luo, Zhou, Lu, "Pre-trained Visual Dynamics Representations for Efficient Policy
    Learning", ECCV 2024.

    :param task: task name (``reach-v2``, ``reach-v3`` or ``reach``; see :data:`PAPER_TASKS`)
    :param image_size: frame height and width in pixels (a multiple of 8 in [16, 512])
    :param camera: camera name; ``None`` uses the task's default camera (shows arm and object)
    :param action_repeat: simulator steps per agent step (paper: 2)
    :param max_episode_steps: episode length in *simulator* steps (paper: 500, i.e. 250 agent steps
        at action repeat 2)
    :param seed: seed of the variant draws and the action space, used at the first reset unless
        ``reset(seed=...)`` gives one
    :param success_reward: bonus added to the reward at steps where the task reports success
    :param terminate_on_success: end the episode (``terminated=True``) at the first success
    :param variant: ``None`` draws one of the 50 MT1 variants at every reset; an int in [0, 50)
        fixes that variant
    :param hide_goal_markers: don't draw metaworld's marker sites (e.g. reach's red goal dot; the
        goal is given as an image); ``False`` draws all sites as metaworld does
    :param goal_cache_dir: folder of the goal-image cache (``None``: ``$SB3_PVDR_GOAL_CACHE`` or
        ``~/.cache/sb3_pvdr/goals``)
    :param render_mode: ``"rgb_array"`` makes :meth:`render` return the current frame
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": METAWORLD_FPS // 2}

    def __init__(
        self,
        task: str,
        image_size: int = 64,
        camera: str | None = None,
        action_repeat: int = 2,
        max_episode_steps: int = 500,
        seed: int | None = 0,
        success_reward: float = 60.0,
        terminate_on_success: bool = True,
        variant: int | None = None,
        hide_goal_markers: bool = True,
        goal_cache_dir: str | os.PathLike | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        self._closed = True  # until the renderer exists, close() has nothing to free
        self.task_spec: TaskSpec = resolve_task(task)
        self.image_size = check_image_size(image_size)
        self.camera = check_camera(self.task_spec.camera if camera is None else camera)
        if isinstance(action_repeat, bool) or not isinstance(action_repeat, int) or action_repeat < 1:
            raise ConfigError(f"action_repeat must be a positive int (paper: 2), got {action_repeat!r}")
        if (
            isinstance(max_episode_steps, bool)
            or not isinstance(max_episode_steps, int)
            or max_episode_steps < action_repeat
        ):
            raise ConfigError(
                f"max_episode_steps counts simulator steps and must be an int >= action_repeat "
                f"({action_repeat}), got {max_episode_steps!r} (paper: 500)"
            )
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.action_repeat = action_repeat
        self.max_episode_steps = max_episode_steps
        self.success_reward = float(success_reward)
        self.terminate_on_success = bool(terminate_on_success)
        self.hide_goal_markers = bool(hide_goal_markers)
        self.render_mode = render_mode
        self._seed = seed

        self._variants = metaworld_variants(self.task_spec.metaworld_name, goal_cache_dir)
        n_variants = len(self._variants)
        if variant is not None and (
            isinstance(variant, bool) or not isinstance(variant, (int, np.integer)) or not 0 <= variant < n_variants
        ):
            raise ConfigError(f"variant must be None or an int in [0, {n_variants}), got {variant!r}")
        self.fixed_variant = None if variant is None else int(variant)

        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        self._mw_env: Any = ALL_V3_ENVIRONMENTS[self.task_spec.metaworld_name]()
        # We truncate episodes ourselves; metaworld raises past its own max_path_length, which must
        # also leave room for the scripted goal rollouts.
        self._mw_env.max_path_length = max(max_episode_steps, GOAL_ROLLOUT_STEPS + 50)
        self._mw_env.set_task(self._variants[0])
        self._renderer = SceneRenderer(
            self._mw_env.model,
            self._mw_env.data,
            self.image_size,
            self.camera,
            hide_sites=self.hide_goal_markers,
        )
        self._closed = False
        _LIVE_ENVS.add(self)
        global _ATEXIT_REGISTERED
        if not _ATEXIT_REGISTERED:
            atexit.register(_close_live_envs)
            _ATEXIT_REGISTERED = True

        self._goal_cache = GoalImageCache(
            goal_cache_dir, self.task_spec.metaworld_name, self.camera, self.image_size, self.hide_goal_markers
        )
        self._goals: dict[int, np.ndarray] = {}
        self._failed: dict[int, str] = {}

        shape = (self.image_size, self.image_size, 3)
        self.observation_space = spaces.Dict(
            {
                "observation": spaces.Box(0, 255, shape, np.uint8),
                "desired_goal": spaces.Box(0, 255, shape, np.uint8),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        if seed is not None:
            self.action_space.seed(seed)

        self._seeded = False
        self._variant: int | None = None
        self._goal: np.ndarray | None = None
        self._frame: np.ndarray | None = None
        self._state: np.ndarray | None = None
        self._sim_steps = 0
        self._expert: Any = None  # scripted policy of expert_future(), made on first use

        if self.fixed_variant is not None:
            # Fail at construction, not at the first reset, if the fixed variant has no goal image.
            try:
                self.goal_image_of(self.fixed_variant)
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ properties
    @property
    def task_name(self) -> str:
        """Metaworld task id, e.g. ``"reach-v3"``."""
        return self.task_spec.metaworld_name

    @property
    def n_variants(self) -> int:
        return len(self._variants)

    @property
    def variant(self) -> int | None:
        """The current episode's variant (``None`` before the first reset)."""
        return self._variant

    @property
    def goal_image(self) -> np.ndarray | None:
        """The current episode's goal frame ``uint8 (H, W, 3)``."""
        return None if self._goal is None else self._goal.copy()

    @property
    def metaworld_env(self) -> Any:
        """The wrapped ``metaworld.SawyerXYZEnv`` (for advanced use)."""
        return self._mw_env

    def state_observation(self) -> np.ndarray:
        """Metaworld's current 39-d state vector, the input of its scripted policies.

        Example (what the recorder does)::

            policy = get_scripted_policy("reach-v2")
            action = policy.get_action(env.unwrapped.state_observation())
        """
        if self._state is None:
            raise RuntimeError("call reset() before state_observation()")
        return self._state.copy()

    def render_frame(self) -> np.ndarray:
        """Render the simulator's current state now (same camera, size and settings as observations).

        Unlike :meth:`render`, this draws ``metaworld_env.data`` as it is, e.g. after a caller moved
        something in it.
        """
        self._check_open()
        return self._renderer.render()

    def expert_future(self, n_steps: int) -> np.ndarray:
        """Frames of the next ``n_steps`` agent steps of metaworld's scripted policy (no noise) from the current
        state, simulated on the side: the simulator, metaworld's counters and this env are restored afterwards, so
        the episode goes on as if nothing happened. A debugging oracle (PVDR's ``oracle_z``), not an agent's input.

        :param n_steps: agent steps to look ahead (each ``action_repeat`` simulator steps)
        :return: ``uint8 (n_steps, H, W, 3)``; once the episode would end, the last frame is repeated
        """
        import warnings

        import mujoco

        if self._goal is None:
            raise RuntimeError("call reset() before expert_future()")
        mw = self._mw_env
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        sim_state = np.empty(mujoco.mj_stateSize(mw.model, spec))
        mujoco.mj_getState(mw.model, mw.data, sim_state, spec)
        saved = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(mw).items()}
        mine = (self._state.copy(), self._sim_steps, self._frame)
        if self._expert is None:
            self._expert = get_scripted_policy(self.task_spec.name)
        frames: list[np.ndarray] = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # metaworld's scripted `move` warns on clipped actions
                done = False
                while len(frames) < n_steps:
                    if done:
                        frames.append(frames[-1] if frames else self._frame)
                        continue
                    action = np.clip(self._expert.get_action(self._state), -1.0, 1.0).astype(np.float32)
                    for _ in range(self.action_repeat):
                        if self._sim_steps >= self.max_episode_steps:
                            break
                        self._state, _, _, _, info = mw.step(action)
                        self._sim_steps += 1
                        done = done or (bool(info["success"]) and self.terminate_on_success)
                    done = done or self._sim_steps >= self.max_episode_steps
                    frames.append(self._renderer.render())
        finally:
            mujoco.mj_setState(mw.model, mw.data, sim_state, spec)
            mujoco.mj_forward(mw.model, mw.data)
            vars(mw).update(saved)
            self._state, self._sim_steps, self._frame = mine
        return np.stack(frames)

    # ------------------------------------------------------------------ goal images
    def goal_image_of(self, variant: int) -> np.ndarray:
        """The goal frame of a variant: from memory, the disk cache, or a scripted-policy rollout.

        Leaves the simulator in an arbitrary state: call :meth:`reset` afterwards.

        :raises ConfigError: the scripted policy cannot reach success on this variant
        """
        if variant in self._goals:
            return self._goals[variant]
        reason = self._failed.get(variant) or self._goal_cache.failure(variant)
        image = None if reason else self._goal_cache.load(variant)
        if image is None and reason is None:
            image, reason = self._generate_goal(variant)
            if image is not None:
                self._goal_cache.save(variant, image)
            else:
                logger.warning("%s variant %d skipped: %s", self.task_name, variant, reason)
                self._goal_cache.save_failure(variant, reason)
        if image is None:
            self._failed[variant] = reason
            raise ConfigError(f"{self.task_name} variant {variant} has no goal image: {reason}; use another variant")
        self._goals[variant] = image
        return image

    def _generate_goal(self, variant: int) -> tuple[np.ndarray | None, str]:
        self._mw_env.set_task(self._variants[variant])
        return rollout_to_goal(self._mw_env, get_scripted_policy(self.task_name), self._renderer.render)

    def _draw_variant(self) -> int:
        if self.fixed_variant is not None:
            return self.fixed_variant
        # Rejection sampling keeps the sequence of draws independent of which failures are known yet.
        for _ in range(100 * self.n_variants):
            variant = int(self.np_random.integers(self.n_variants))
            if variant in self._failed:
                continue
            try:
                self.goal_image_of(variant)
            except ConfigError:
                continue
            return variant
        raise PVDRError(f"no variant of {self.task_name} has a goal image (scripted policy failed on all of them)")

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode on a new variant (or the fixed one).

        :param seed: reseeds the variant draws (the first reset uses the constructor's ``seed``)
        :param options: ``{"variant": k}`` forces variant ``k`` for this episode
        """
        self._check_open()
        if seed is None and not self._seeded:
            seed = self._seed
        super().reset(seed=seed)
        self._seeded = True
        forced = (options or {}).get("variant")
        if forced is not None:
            if not 0 <= int(forced) < self.n_variants:
                raise ConfigError(f"options['variant'] must be in [0, {self.n_variants}), got {forced!r}")
            variant = int(forced)
            self.goal_image_of(variant)
        else:
            variant = self._draw_variant()
        self._variant = variant
        self._goal = self._goals[variant]
        self._mw_env.set_task(self._variants[variant])
        self._state, _ = self._mw_env.reset()
        self._sim_steps = 0
        self._frame = self._renderer.render()
        return self._obs(), {"is_success": False, "variant": variant}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        self._check_open()
        if self._goal is None:
            raise RuntimeError("call reset() before step()")
        if self._sim_steps >= self.max_episode_steps:
            raise RuntimeError("the episode is over (truncated): call reset()")
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(4), -1.0, 1.0)
        success = False
        for _ in range(self.action_repeat):
            if self._sim_steps >= self.max_episode_steps:
                break
            self._state, _, _, _, mw_info = self._mw_env.step(action)
            self._sim_steps += 1
            success = success or bool(mw_info["success"])
            if success and self.terminate_on_success:
                break
        self._frame = self._renderer.render()
        # Paper reward: negative mean absolute pixel distance to the goal in [0, 1] scale (an L1
        # distance normalised by the number of pixels), plus the success bonus.
        distance = np.abs(self._frame.astype(np.float32) - self._goal.astype(np.float32)).mean() / 255.0
        reward = -float(distance) + (self.success_reward if success else 0.0)
        terminated = success and self.terminate_on_success
        truncated = not terminated and self._sim_steps >= self.max_episode_steps
        info = {"is_success": success, "variant": self._variant}
        return self._obs(), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The current frame ``uint8 (H, W, 3)`` when ``render_mode="rgb_array"``."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode='rgb_array'")
            return None
        return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        """Free the render context and the simulator (idempotent, safe at interpreter exit)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        _LIVE_ENVS.discard(self)
        self._renderer.close()
        try:
            self._mw_env.close()
        except Exception:  # noqa: BLE001 - nothing useful to do if metaworld fails to close
            pass

    def __del__(self) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the environment is closed")

    def _obs(self) -> dict[str, np.ndarray]:
        assert self._frame is not None and self._goal is not None
        return {"observation": self._frame.copy(), "desired_goal": self._goal.copy()}


def make_metaworld_env(
    task: str,
    image_size: int = 64,
    camera: str | None = None,
    action_repeat: int = 2,
    max_episode_steps: int = 500,
    seed: int | None = 0,
    success_reward: float = 60.0,
    terminate_on_success: bool = True,
    variant: int | None = None,
    hide_goal_markers: bool = True,
    goal_cache_dir: str | os.PathLike | None = None,
    render_mode: str | None = None,
) -> ImageGoalMetaWorldEnv:
    """Build the image-goal Meta-World env; see :class:`ImageGoalMetaWorldEnv` for the parameters.

    Example::

        env = make_metaworld_env("reach-v2", image_size=64)
        obs, info = env.reset()
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        info["is_success"], info["variant"]
        env.close()
    """
    return ImageGoalMetaWorldEnv(
        task,
        image_size=image_size,
        camera=camera,
        action_repeat=action_repeat,
        max_episode_steps=max_episode_steps,
        seed=seed,
        success_reward=success_reward,
        terminate_on_success=terminate_on_success,
        variant=variant,
        hide_goal_markers=hide_goal_markers,
        goal_cache_dir=goal_cache_dir,
        render_mode=render_mode,
    )
