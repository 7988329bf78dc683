"""Gymnasium wrapper that turns the image-goal env into PVDR's planning MDP (paper §4.2-4.3).

Observation: ``Dict(context_tokens=(m, h, w) int64, z_star=(h, w, d_z) float32)``, i.e. the state
(x_t, z_t*) of the MDP in which the action alignment module Pi is a policy. With ``observe_plan`` it also holds
``plan_tokens=(l, h, w) int64``: the chosen plan D(x, z*) from the current step on (a plan held for ``offset`` steps is
shifted by them, its last frame repeated), so an aligner can read z* through the frozen decoder (a function of
(x_t, z_t*) still; L_act then regresses a_t from the real future y_t in its place). With ``observe_goal`` it holds
``goal_tokens=(1, h, w) int64``, the goal image's tokens (a deviation from the paper's Pi(a | x, z*), whose only
goal information is what planning put into z*: an aligner that sees the goal as pixel PPO does). The reward is the env's
(-||o_{t+1} - g||_1 + success reward); the planning-oriented part of eq. (6) is added by the PVDR algorithm
when it relabels its rollout buffer (it needs frames that arrive up to l steps later), see
:mod:`sb3_pvdr.planning.relabel`.

What the wrapper keeps and reports:

- the last m frames' tokens (the context x_t); at reset the first frame is repeated m times. With a model
  pre-trained on every k-th frame (``DynamicsConfig.frame_step``) the context is o_{t-(m-1)k}, ..., o_t and the
  l plan frames predict o_{t+k}, ..., o_{t+lk}: a plan covers ``l * k`` env steps;
- every ``replan_every`` steps a new plan (eq. (2)); in between z* and the plan are held, the plan shifted
  by the steps since it was made (``replan_every`` must not exceed the l * k steps a plan covers);
- ``info`` (reset and step), read by the PVDR algorithm's rollout buffer and by the video callback:

  ``plan_tokens`` (l, h, w) int64   the plan chosen for the observation being returned;
  ``plan_offset`` int               steps since that plan was made (0 when ``replan_every == 1``);
  ``plan_stats`` dict               on steps with a new plan: ``choice_gain`` (average candidate's goal distance
                                    minus the chosen one's), ``spread`` (std of the candidates' distances),
                                    ``z_change`` (relative change of z* from the previous plan);
  ``next_tokens`` (h, w) int64      tokens of the frame o_{t+1} just observed (step only);
  ``plan_errors`` (l*k,) float32    ``d(o_{t+1}, y^_{t-d})`` for d < l * k: the new frame against what the plan
                                    of step t-d predicted for it, NaN where no plan of this episode covers it
                                    or no frame of that plan falls on t+1 (frame_step k > 1; step only);
  ``frame`` (H, W, 3) uint8         o_{t+1} itself (reset: o_0), for videos;
  ``goal`` (H, W, 3) uint8          g, for the goal-oriented prior loss of the fine-tuning stage.

Why no VecEnv wrapper: each env plans its own N candidates in one batch (``n_candidates`` x l frames through
the decoder and the tokenizer). Batching across envs as well would only pay off on a GPU with many envs;
on the CPU defaults (one env, 2 cores) it would add a synchronisation point for no speed-up, and a
Gymnasium wrapper keeps ``check_env``, ``make_vec_env`` and rl-zoo's ``env_wrapper`` working unchanged.
The models are *shared* objects: the PVDR algorithm binds its own (fine-tuned) tokenizer and dynamics model
to every env it drives with :meth:`PlanningWrapper.bind_planner` (by reference in a ``DummyVecEnv``).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Optional, SupportsFloat, Union

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.common.precision import resolve_bf16
from sb3_pvdr.planning.planner import PathOrModule, Planner, check_plan_settings, load_planning_models
from sb3_pvdr.planning.relabel import context_indices, frame_distance


class PlanningWrapper(gym.Wrapper):
    """PVDR planning wrapper: observation (context tokens x_t, planned latent z_t*), plan in ``info``.

    Paper: "Pre-trained Visual Dynamics Representations for Efficient Policy Learning" (ECCV 2024), §4.2, eq. (2).

    :param env: image-goal env with ``Dict(observation, desired_goal)`` uint8 ``(H, W, 3)`` observations
        (``sb3_pvdr.envs.make_metaworld_env``)
    :param tokenizer: ``VQTokenizer`` or its checkpoint path
    :param dynamics: ``VisualDynamicsModel`` or its checkpoint path (pre-trained by ``python -m sb3_pvdr.pretrain``)
    :param n_candidates: N, latents sampled from the prior per planning call
    :param replan_every: plan every this many steps (1 = every step, as in the paper); at most l
    :param random_z: ablation "PVDR random": z* ~ N(0, I) instead of planning
    :param plan_metric: space of the plan distances (eq. (2) and the plan term of eq. (6)): ``"pixels"``
        (decoded frames) or ``"codes"`` (codebook-embedding grids, no decoder: much cheaper on a CPU);
        see :mod:`sb3_pvdr.planning.planner`
    :param oracle_z: debugging upper bound (issue "Make PVDR learn"): z* is the posterior of the real next l frames
        of metaworld's scripted expert, simulated on the side from the current state (``env.unwrapped.expert_future``)
        instead of a plan from the prior; tells whether the aligner can use a perfect z at all
    :param prior_temperature: candidates are sampled from the prior with its std scaled by this (1: the prior itself;
        larger: more diverse plans for eq. (2) to choose from; 0: z* is the prior's mean, with ``n_candidates=1``)
    :param bf16: plan under bf16 autocast (``True``/``False``, or ``"auto"``: where the hardware has native bf16,
        :mod:`sb3_pvdr.common.precision`); chosen plans match fp32's on nearly every token, about 1.5x faster
        on a CPU with ``avx512_bf16`` (``benchmarks/planning_overhead.py``)
    :param plan_distance: eq. (2)'s plan-to-goal distance over the ``"mean"`` of the l plan frames, the ``"last"``
        one, or the last one blurred (``"last_blurred"``, pixels only; :class:`~sb3_pvdr.planning.Planner`)
    :param observe_plan: add ``plan_tokens (l, h, w)``, the chosen plan from this step on, to the observation
        (module docstring); fixed at construction (it changes the observation space)
    :param observe_goal: add ``goal_tokens (1, h, w)``, the goal image's tokens, to the observation (a deviation
        from the paper's Pi(a | x, z*)); fixed at construction
    :param device: device for models loaded from paths (modules passed in keep their device)
    :param seed: seed of the prior-sampling generator (``reset(seed=...)`` re-seeds it)
    """

    def __init__(
        self,
        env: gym.Env,
        tokenizer: PathOrModule,
        dynamics: PathOrModule,
        n_candidates: int = 16,
        replan_every: int = 1,
        random_z: bool = False,
        plan_metric: str = "pixels",
        oracle_z: bool = False,
        prior_temperature: float = 1.0,
        bf16: Union[bool, str] = False,
        plan_distance: str = "mean",
        observe_plan: bool = False,
        observe_goal: bool = False,
        device: str = "cpu",
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or not {"observation", "desired_goal"} <= set(space.spaces):
            raise ConfigError(
                f"PlanningWrapper needs an image-goal env with Dict(observation, desired_goal) observations, got {space}"
            )
        self._image_shape = tuple(space["observation"].shape)
        tokenizer, dynamics = load_planning_models(tokenizer, dynamics, device)
        self._check_image_size(tokenizer)
        self.planner = Planner(tokenizer, dynamics, plan_metric, plan_distance)
        cfg = dynamics.config
        self.m, self.l = cfg.m, cfg.l
        self._set_frame_step(cfg.frame_step)
        self.oracle_z, self.prior_temperature, self.bf16 = False, 1.0, False
        self.configure(n_candidates=n_candidates, replan_every=replan_every, random_z=random_z, plan_metric=plan_metric,
                       oracle_z=oracle_z, prior_temperature=prior_temperature, bf16=bf16, plan_distance=plan_distance)
        h, w = dynamics.grid_size
        self.observe_plan = bool(observe_plan)
        obs_spaces = {
            "context_tokens": spaces.Box(0, dynamics.codebook_size - 1, (self.m, h, w), dtype=np.int64),
            "z_star": spaces.Box(-np.inf, np.inf, dynamics.z_shape, dtype=np.float32),
        }
        if self.observe_plan:
            obs_spaces["plan_tokens"] = spaces.Box(0, dynamics.codebook_size - 1, (self.l, h, w), dtype=np.int64)
        self.observe_goal = bool(observe_goal)
        if self.observe_goal:
            obs_spaces["goal_tokens"] = spaces.Box(0, dynamics.codebook_size - 1, (1, h, w), dtype=np.int64)
        self.observation_space = spaces.Dict(obs_spaces)
        self._generator = torch.Generator(device=self.planner.device)
        if seed is not None:
            self._generator.manual_seed(seed)
        self._context: Optional[np.ndarray] = None
        self._goal: Optional[np.ndarray] = None
        self._goal_target: Optional[torch.Tensor] = None
        self._goal_tokens: Optional[torch.Tensor] = None  # for a goal-conditioned prior (prior_goal) or observe_goal
        self._plan = None
        self._plan_z: Optional[torch.Tensor] = None
        self._plan_stats: dict[str, float] = {}
        self._plan_offset = 0

    # ------------------------------------------------------------------ configuration
    def _set_frame_step(self, frame_step: int) -> None:
        """The time grid of the model's frames: k env steps between them, a plan covering l * k steps."""
        self.frame_step, self.horizon = frame_step, self.l * frame_step
        # plans in force at the last l * k steps of this episode: (plan frames (l, H, W, 3), offset), oldest first
        self._history: deque[tuple[np.ndarray, int]] = deque(maxlen=self.horizon)
        # tokens of the last (m - 1) * k + 1 frames, the context's source
        self._frames: deque[np.ndarray] = deque(maxlen=(self.m - 1) * frame_step + 1)

    def _check_image_size(self, tokenizer: Any) -> None:
        expected = (tokenizer.image_size, tokenizer.image_size, 3)
        if self._image_shape != expected:
            raise ConfigError(
                f"env frames are {self._image_shape} but the tokenizer expects {expected}; "
                f"make the env with image_size={tokenizer.image_size}"
            )

    def configure(
        self,
        n_candidates: Optional[int] = None,
        replan_every: Optional[int] = None,
        random_z: Optional[bool] = None,
        plan_metric: Optional[str] = None,
        oracle_z: Optional[bool] = None,
        prior_temperature: Optional[float] = None,
        bf16: Union[None, bool, str] = None,
        plan_distance: Optional[str] = None,
    ) -> None:
        """Change the planning settings (``None`` keeps a setting); the PVDR algorithm calls this on bound envs.

        Takes effect at the next plan; plans made in another metric are forgotten (their plan errors are NaN).
        """
        if n_candidates is not None:
            if int(n_candidates) < 1:
                raise ConfigError(f"n_candidates must be >= 1, got {n_candidates}")
            self.n_candidates = int(n_candidates)
        if replan_every is not None:
            if not 1 <= int(replan_every) <= self.horizon:
                raise ConfigError(f"replan_every must be in [1, l * frame_step = {self.horizon}] (the env steps a plan "
                                  f"covers), got {replan_every}")
            self.replan_every = int(replan_every)
        if random_z is not None:
            self.random_z = bool(random_z)
        if oracle_z is not None:
            if oracle_z and not hasattr(self.env.unwrapped, "expert_future"):
                raise ConfigError("oracle_z needs an env with expert_future(n_steps) (sb3_pvdr.envs' Meta-World env)")
            self.oracle_z = bool(oracle_z)
        if prior_temperature is not None:
            if not float(prior_temperature) >= 0:
                raise ConfigError(f"prior_temperature must be >= 0 (0: the prior's mean), got {prior_temperature}")
            self.prior_temperature = float(prior_temperature)
        if bf16 is not None:
            self.bf16 = resolve_bf16(bf16, self.planner.device)
        if plan_distance is not None or plan_metric is not None:
            metric, distance = plan_metric or self.planner.metric, plan_distance or self.planner.distance
            check_plan_settings(metric, distance)  # the pair, before either changes
            self.planner.distance = distance
            if metric != self.planner.metric:
                self.planner = Planner(self.planner.tokenizer, self.planner.dynamics, metric, distance)
                self._goal = None  # recompute the goal target in the new space
                self._history.clear()  # plans in the old space cannot be compared with frames in the new one

    def bind_planner(self, tokenizer: Any, dynamics: Any, **settings: Any) -> None:
        """Plan with these (shared) models from now on; ``settings`` go to :meth:`configure`.

        :raises ConfigError: the models would change the observation space
        """
        tokenizer, dynamics = load_planning_models(tokenizer, dynamics)
        self._check_image_size(tokenizer)
        h, w = dynamics.grid_size
        cfg = dynamics.config
        if (cfg.m, cfg.l) != (self.m, self.l) or self.observation_space["z_star"].shape != dynamics.z_shape:
            raise ConfigError(
                f"cannot bind a dynamics model with m={cfg.m}, l={cfg.l}, z {dynamics.z_shape} "
                f"to an env built for m={self.m}, l={self.l}, z {self.observation_space['z_star'].shape}"
            )
        if cfg.frame_step != self.frame_step:  # same spaces, another time grid: adopt it (takes effect at the next reset)
            self._set_frame_step(cfg.frame_step)
            if self.replan_every > self.horizon:
                self.replan_every = self.horizon
        if self.observation_space["context_tokens"].shape[1:] != (h, w):
            raise ConfigError(f"token grid {(h, w)} differs from the env's {self.observation_space['context_tokens'].shape[1:]}")
        self.planner = Planner(tokenizer, dynamics, self.planner.metric, self.planner.distance)
        self._goal = None  # recompute the goal target with the new models
        if self._generator.device != self.planner.device:
            self._generator = torch.Generator(device=self.planner.device).manual_seed(int(self._generator.initial_seed()))
        self.configure(**settings)

    @property
    def torch_threads(self) -> int:
        """Torch CPU threads of the process this wrapper runs in."""
        return torch.get_num_threads()

    def set_torch_threads(self, threads: int) -> None:
        """Set the torch CPU threads of this wrapper's process (a ``SubprocVecEnv`` worker starts with one per core:
        several workers and the learner on the same cores then oversubscribe them, 5x slower in
        ``benchmarks/planning_overhead.py --train-vec-env subproc``)."""
        torch.set_num_threads(int(threads))

    # ------------------------------------------------------------------ helpers
    @torch.inference_mode()  # numpy leaves the wrapper; no autograd bookkeeping per env step
    def _encode(self, frame: np.ndarray) -> np.ndarray:
        return self.planner.tokenizer.encode(frame[None])[0].cpu().numpy()

    @torch.inference_mode()
    def _set_goal(self, goal: np.ndarray) -> None:
        if self._goal is None or not np.array_equal(goal, self._goal):
            self._goal = np.array(goal)
            goal = torch.from_numpy(self._goal)[None].to(self.planner.device)
            # one encoder pass serves the code-space target, a goal-conditioned prior (prior_goal) and observe_goal
            needs_tokens = self.planner.dynamics.config.prior_goal or self.observe_goal
            tokens = self.planner.tokenizer.encode(goal) if needs_tokens else None
            self._goal_target = self.planner.frame_target(goal, tokens)[0]
            self._goal_tokens = None if tokens is None else tokens[0]

    @torch.inference_mode()
    def _frame_target(self, frame: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """The new frame in the plan metric's space (uint8 pixels or code grid), for the plan errors."""
        if self.planner.metric == "pixels":
            return frame
        return self.planner.frame_target(torch.from_numpy(frame)[None], torch.from_numpy(tokens)[None])[0].cpu().numpy()

    @torch.inference_mode()
    def _replan(self) -> None:
        oracle = None
        if self.oracle_z:
            k = self.frame_step  # the expert's frames o_{t+k}, ..., o_{t+lk}
            oracle = self.planner.tokenizer.encode(self.env.unwrapped.expert_future(self.horizon)[k - 1 :: k])
        self._plan = self.planner.plan(
            torch.from_numpy(self._context),
            self._goal_target,
            self.n_candidates,
            generator=self._generator,
            random_z=self.random_z,
            oracle_future=oracle,
            temperature=self.prior_temperature,
            bf16=self.bf16,
            goal_tokens=self._goal_tokens,  # the prior ignores them unless it is goal-conditioned
        )
        self._plan_frames = self._plan.frames.cpu().numpy()
        self._plan_offset = 0
        d = self._plan.distances.float()
        previous = self._plan_z
        self._plan_z = self._plan.z_star
        self._plan_stats = {
            # how much closer to the goal the chosen plan is than the average candidate (eq. 2's effect)
            "choice_gain": float(d.mean() - d.min()),
            "spread": float(d.std()) if d.numel() > 1 else 0.0,
            # relative change of z* at this re-plan (0: the same latent again)
            "z_change": float((self._plan_z - previous).norm() / previous.norm().clamp_min(1e-8)) if previous is not None else float("nan"),
        }

    def _update_context(self, tokens: np.ndarray) -> None:
        """Append o_t's tokens; the context is o_{t-(m-1)k}, ..., o_t (o_0 stands in for frames before it)."""
        self._frames.append(tokens)
        last = len(self._frames) - 1
        self._context = np.stack([self._frames[i] for i in context_indices(last, self.m, self.frame_step)])

    def _observation(self) -> dict[str, np.ndarray]:
        obs = {"context_tokens": self._context.copy(), "z_star": self._plan.z_star.cpu().numpy().astype(np.float32)}
        if self.observe_plan:
            obs["plan_tokens"] = self._plan_from_now()
        if self.observe_goal:
            obs["goal_tokens"] = self._goal_tokens.cpu().numpy()[None].astype(np.int64)
        return obs

    def _plan_from_now(self) -> np.ndarray:
        """The chosen plan's tokens ``(l, h, w)`` from the current step on: a plan made ``offset`` steps ago drops its
        first ``offset // k`` frames (they are the past now) and repeats its last frame in their place."""
        tokens = self._plan.tokens.cpu().numpy()
        shift = min(self._plan_offset // self.frame_step, self.l - 1)
        if shift == 0:
            return tokens.copy()
        return np.concatenate((tokens[shift:], np.repeat(tokens[-1:], shift, axis=0)))

    def _plan_info(self, info: dict[str, Any], frame: np.ndarray) -> dict[str, Any]:
        info = dict(info)
        info["plan_tokens"] = self._plan.tokens.cpu().numpy()
        info["plan_offset"] = self._plan_offset
        if self._plan_offset == 0:
            info["plan_stats"] = self._plan_stats
        info["frame"] = frame
        info["goal"] = self._goal
        return info

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._generator.manual_seed(seed)
        frame = obs["observation"]
        self._set_goal(obs["desired_goal"])
        self._frames.clear()
        self._update_context(self._encode(frame))  # only o_0 exists yet: repeated m times
        self._history.clear()
        self._plan_z = None  # a new episode: no previous z* to compare with
        self._replan()
        self._history.append((self._plan_frames, 0))
        return self._observation(), self._plan_info(info, frame)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        if self._context is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        frame = obs["observation"]
        tokens = self._encode(frame)
        # the new frame o_{t+1} against what the plans of steps t, t-1, ..., t-lk+1 predicted for it: the plan in
        # force at step t-d, made `offset` steps earlier, predicts o_{t+1} with its frame i where (i + 1) k = d + 1 + offset
        target = self._frame_target(frame, tokens)
        plan_errors = np.full(self.horizon, np.nan, dtype=np.float32)
        for d, (plan_frames, offset) in enumerate(reversed(self._history)):
            i, off_grid = divmod(d + 1 + offset, self.frame_step)
            if off_grid == 0 and 1 <= i <= self.l:
                plan_errors[d] = frame_distance(target, plan_frames[i - 1])
        self._update_context(tokens)
        self._set_goal(obs["desired_goal"])
        if self._plan_offset + 1 >= self.replan_every:
            self._replan()
        else:
            self._plan_offset += 1
        self._history.append((self._plan_frames, self._plan_offset))
        info = self._plan_info(info, frame)
        info["next_tokens"] = tokens
        info["plan_errors"] = plan_errors
        return self._observation(), reward, terminated, truncated, info


__all__ = ["PlanningWrapper"]
