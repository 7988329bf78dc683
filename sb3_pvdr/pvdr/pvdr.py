"""PVDR: PPO on the planning MDP, with reward relabelling (eq. (6)), the action alignment loss (eq. (5)) and
fine-tuning of the visual dynamics model between rollouts (Algorithm 1).

What PVDR changes in PPO, and where:

- Rollout storage: :class:`~sb3_pvdr.pvdr.buffer.PVDRRolloutBuffer` records the planning wrapper's infos and
  relabels rewards with eq. (6) inside ``compute_returns_and_advantage`` (before GAE).
- Phases (Algorithm 1): rollouts alternate ``finetune_rollouts`` fine-tuning rollouts (E1, lines 7-9: the
  :class:`~sb3_pvdr.pvdr.callbacks.DynamicsFineTuneCallback` updates E's last layer, D and P at the end of the
  rollout; ``train()`` leaves the policy alone) and ``align_rollouts`` alignment rollouts (E2, lines 10-12:
  PPO + L_act). ``finetune_rollouts=0`` never fine-tunes.
- L_act (eq. (5)) is added to PPO's loss by a small hook, not by a copy of ``PPO.train()``: during ``train()``
  the policy optimizer's ``zero_grad`` is wrapped so that, right after PPO zeroes the gradients of a minibatch
  and right before it back-propagates its loss, ``act_coef * L_act`` of the same minibatch is back-propagated
  too. PPO's ``clip_grad_norm_`` and ``optimizer.step()`` then act on the sum, exactly as for
  ``loss + act_coef * L_act``. With ``act_coef=0`` ``train()`` is ``PPO.train()``.
- Persistence: the tokenizer and the (fine-tuned) dynamics model, and the fine-tuning optimizers, are saved in
  the SB3 zip through ``_get_torch_save_params``; ``PVDR.load(path, env=env)`` binds them to ``env``'s planners.

The planning env: PVDR drives envs wrapped in :class:`~sb3_pvdr.planning.PlanningWrapper`. It owns the planning
models (``tokenizer``, ``dynamics``: modules, checkpoint paths, or ``None`` = those of the env's wrapper) and
binds them, with its planning settings, to every env it uses: the training env, the eval envs of
``EvalCallback``\\s passed to ``learn`` and envs given to ``set_env`` / ``load``. For an env created after
loading, call :meth:`PVDR.bind_planning_env` before ``evaluate_policy``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar, Optional, TypeVar, Union

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback, EvalCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecEnvWrapper

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.common.precision import bf16_autocast, resolve_bf16
from sb3_pvdr.dynamics import DynamicsConfig, VisualDynamicsModel
from sb3_pvdr.planning.planner import PathOrModule, check_plan_settings, eval_mode, load_planning_models
from sb3_pvdr.pvdr.buffer import PVDRRolloutBuffer, PVDRRolloutBufferSamples
from sb3_pvdr.pvdr.callbacks import DynamicsFineTuneCallback, PlanVideoCallback, RolloutRecorderCallback, run_folder
from sb3_pvdr.pvdr.interface import ALIGN, FINETUNE
from sb3_pvdr.pvdr.policies import PVDRPolicy
from sb3_pvdr.tokenizer.config import TokenizerConfig
from sb3_pvdr.tokenizer.model import VQTokenizer

ACT_TARGETS = ("action", "window_mean", "window_mean_rescaled")

SelfPVDR = TypeVar("SelfPVDR", bound="PVDR")


def _positive_or_none(name: str, value: Optional[int], none_means: str) -> Optional[int]:
    """``value`` as an int >= 1, or ``None``; a one-line :class:`ConfigError` otherwise."""
    if value is not None and int(value) < 1:
        raise ConfigError(f"{name} must be >= 1 or None ({none_means}), got {value}")
    return None if value is None else int(value)


class PVDR(PPO):
    """Pre-trained Visual Dynamics Representations (PVDR), online stage: PPO on (x_t, z_t*) with the PVDR reward,
    action alignment and fine-tuning of the pre-trained visual dynamics model.

    Paper: "Pre-trained Visual Dynamics Representations for Efficient Policy Learning", Luo, Zhou, Lu, ECCV 2024
    (§4.2-4.4, Algorithm 1). PPO: https://arxiv.org/abs/1707.06347

    PPO's arguments keep their names and meaning (see :class:`~stable_baselines3.ppo.PPO`); defaults follow the
    paper's Table 3 where it gives them (gamma 0.99, GAE lambda 0.92, vf_coef 0.5, max_grad_norm 1.0,
    learning rate 3e-4; Table 3's minibatch of 100 is set in ``zoo_configs/pvdr.yml``). PVDR's own arguments:

    :param tokenizer: ``VQTokenizer``, its checkpoint path, a shipped model's name (``metaworld-64``), or ``None``
        to use the env's ``PlanningWrapper``'s
    :param dynamics: ``VisualDynamicsModel``, its checkpoint path, a shipped model's name, or ``None`` to use the
        env's ``PlanningWrapper``'s
    :param lambda_1: weight of the bottleneck KL added to L_rec when fine-tuning (Table 2: 1e-3; 0 = eq. (3))
    :param lambda_2: weight of the goal-oriented term of L_prior (eq. (4); Table 2: 0.8 Meta-World, 2.5 RLBench;
        0 = ablation "w/o prior opt")
    :param lambda_3: weight of the planning-oriented reward term (eq. (6); Table 2: 1.0 Meta-World, 4.5 RLBench)
    :param act_coef: weight of L_act (eq. (5)) in the policy loss (0 = ablation "w/o act sl")
    :param act_target: what L_act regresses onto Pi(x_t, z_t): ``"action"`` (a_t, eq. (5)) or ``"window_mean"``
        (the mean of a_t, ..., a_{t+l-1}, the actions that produced the l frames z_t encodes;
        ``scripts/act_target_probe.py`` measures how much of each the network can predict) or
        ``"window_mean_rescaled"`` (that mean times sqrt(l * frame_step), clipped to the action bounds: the mean of
        k independent noisy actions has 1/sqrt(k) of their noise, so this keeps a_t's scale, which the window mean
        shrinks, while its noise is that of the window mean)
    :param ppo_loss: train the policy with PPO's loss (False = ablation "w/o act rl": L_act only)
    :param n_candidates: N, latents sampled from the prior per planning call (eq. (2))
    :param replan_every: plan every this many env steps (1 = every step, as in the paper)
    :param random_z: ablation "PVDR random": the policy gets z ~ N(0, I) instead of the planned z*
    :param oracle_z: debugging upper bound: z* is the posterior of the scripted expert's real next l frames
        (:class:`~sb3_pvdr.planning.PlanningWrapper`'s ``oracle_z``), not a plan
    :param prior_temperature: planning samples its N candidates from the prior with the std scaled by this (1: the
        prior itself, as in the paper; larger: more diverse plans; 0 with ``n_candidates=1``: z* is the prior's mean)
    :param plan_metric: space of the plan distances in eqs. (2), (4), (6): ``"pixels"`` (decoded frames, as in
        A.1) or ``"codes"`` (codebook-embedding grids: no decoding, several times cheaper on a CPU)
    :param plan_distance: plan-to-goal distance of eqs. (2) and (4) over the ``"mean"`` of the l plan frames (eq. (2)
        read literally), the ``"last"`` plan frame only, or the last one and the goal average-pooled to 8 x 8 cells
        (``"last_blurred"``, pixels only: ranks plans by how far the hand ends from the goal's)
    :param pretrained: False = ablation "PVDR w/o pre-training": the dynamics model is re-initialised at random
        (same architecture) when the algorithm is created, then fine-tuned online as usual
    :param finetune_rollouts: fine-tuning rollouts (E1) per cycle; 0 disables fine-tuning
    :param align_rollouts: alignment rollouts (E2) per cycle
    :param finetune_lr: Adam learning rate of the fine-tuning (Table 2: 1e-5)
    :param finetune_epochs: passes over each E1 rollout for L_rec, then as many for L_prior
    :param finetune_batch_size: minibatch size of the fine-tuning
    :param finetune_batches: at most this many minibatches per pass (a random subset of the rollout's clips,
        like SB3's ``gradient_steps``); ``None``: every clip of the rollout. A CPU knob: each minibatch costs
        about a pre-training step plus a greedy generation (L_prior's goal term)
    :param finetune_goal_clips: clips of each fine-tuning minibatch on which eq. (4)'s goal-oriented term is estimated
        (the first ones of the random minibatch: an unbiased estimate of the same mean, noisier); ``None``: all. A
        CPU knob: the term's greedy generation with its backward is ~60% of L_prior's cost (one minibatch of 32, two
        threads, bf16: L_prior 730 ms, 277 ms without the term)
    :param update_on_finetune: also train the policy (PPO + L_act) on fine-tuning rollouts (E1), after their
        fine-tuning pass, so that it is updated after every rollout; ``False`` (Algorithm 1) updates it on
        alignment rollouts (E2) only, i.e. on half of the env steps with the default 1:1 cycle
    :param acting_threads: torch threads of this process while it steps a ``SubprocVecEnv`` (whose workers tokenize
        and plan), restored for fine-tuning and the policy update; ``None``: unchanged. One thread leaves the cores
        to the workers: ``model.learn`` 14.6 vs 13.2 env steps/s with 2 threads throughout (4 alternating pairs, 2-core
        AVX2 EPYC, README Benchmarks). No effect with a ``DummyVecEnv`` (planning runs in this process)
    :param bf16: run the planning models (planning, L_act's posterior targets, fine-tuning's forward and
        backward) under bf16 autocast: ``True``/``False``, or ``"auto"``: where the device has native bf16
        (CPU ``avx512_bf16``/AMX, or a CUDA device that supports it; :mod:`sb3_pvdr.common.precision`). The
        policy and weights stay fp32
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"PVDRPolicy": PVDRPolicy}
    rollout_buffer: PVDRRolloutBuffer

    def __init__(
        self,
        policy: Union[str, type[PVDRPolicy]],
        env: Union[GymEnv, str, None],
        learning_rate: Union[float, Schedule] = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.92,
        clip_range: Union[float, Schedule] = 0.2,
        clip_range_vf: Union[None, float, Schedule] = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 1.0,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: Optional[type[RolloutBuffer]] = None,
        rollout_buffer_kwargs: Optional[dict[str, Any]] = None,
        target_kl: Optional[float] = None,
        stats_window_size: int = 100,
        tensorboard_log: Optional[str] = None,
        policy_kwargs: Optional[dict[str, Any]] = None,
        verbose: int = 0,
        seed: Optional[int] = None,
        device: Union[th.device, str] = "auto",
        tokenizer: Optional[PathOrModule] = None,
        dynamics: Optional[PathOrModule] = None,
        lambda_1: float = 1e-3,
        lambda_2: float = 0.8,
        lambda_3: float = 1.0,
        act_coef: float = 1.0,
        act_target: str = "action",
        ppo_loss: bool = True,
        n_candidates: int = 16,
        replan_every: int = 1,
        random_z: bool = False,
        oracle_z: bool = False,
        prior_temperature: float = 1.0,
        plan_metric: str = "pixels",
        plan_distance: str = "mean",
        pretrained: bool = True,
        finetune_rollouts: int = 1,
        align_rollouts: int = 1,
        finetune_lr: float = 1e-5,
        finetune_epochs: int = 1,
        finetune_batch_size: int = 32,
        finetune_batches: Optional[int] = None,
        finetune_goal_clips: Optional[int] = None,
        update_on_finetune: bool = False,
        acting_threads: Optional[int] = 1,
        bf16: Union[bool, str] = False,
        _init_setup_model: bool = True,
    ) -> None:
        if not ppo_loss and act_coef <= 0:
            raise ConfigError("ppo_loss=False trains the policy with L_act only: act_coef must be > 0")
        if finetune_rollouts < 0 or align_rollouts < 1:
            raise ConfigError(f"need finetune_rollouts >= 0 and align_rollouts >= 1, got {finetune_rollouts}, {align_rollouts}")
        self.tokenizer = tokenizer
        self.dynamics = dynamics
        self.lambda_1, self.lambda_2, self.lambda_3 = float(lambda_1), float(lambda_2), float(lambda_3)
        self.act_coef = float(act_coef)
        if act_target not in ACT_TARGETS:
            raise ConfigError(f"act_target must be one of {ACT_TARGETS}, got {act_target!r}")
        self.act_target = act_target
        self.ppo_loss = bool(ppo_loss)
        self.n_candidates, self.replan_every, self.random_z = int(n_candidates), int(replan_every), bool(random_z)
        self.oracle_z = bool(oracle_z)
        self.prior_temperature = float(prior_temperature)
        check_plan_settings(plan_metric, plan_distance)
        self.plan_metric = plan_metric
        self.plan_distance = plan_distance
        self.pretrained = bool(pretrained)
        self.finetune_rollouts, self.align_rollouts = int(finetune_rollouts), int(align_rollouts)
        self.finetune_lr, self.finetune_epochs, self.finetune_batch_size = float(finetune_lr), int(finetune_epochs), int(finetune_batch_size)
        self.finetune_batches = _positive_or_none("finetune_batches", finetune_batches, "all")
        self.finetune_goal_clips = _positive_or_none("finetune_goal_clips", finetune_goal_clips, "all")
        self.update_on_finetune = bool(update_on_finetune)
        self.acting_threads = _positive_or_none("acting_threads", acting_threads, "unchanged")
        self._update_threads: Optional[int] = None  # the process's thread count while acting_threads is in force
        resolve_bf16(bf16, "cpu")  # validate before anything is built
        self.bf16 = bf16
        self.use_bf16 = False  # resolved for the device in _setup_model
        self._tokenizer_config: Optional[dict[str, Any]] = None
        self._dynamics_config: Optional[dict[str, Any]] = None
        self._n_rollouts = 0
        self.rollout_phase = ALIGN
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            gae_lambda=gae_lambda,
            clip_range=clip_range,
            clip_range_vf=clip_range_vf,
            normalize_advantage=normalize_advantage,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            target_kl=target_kl,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    # ------------------------------------------------------------------ setup
    def _setup_model(self) -> None:
        self.use_bf16 = resolve_bf16(self.bf16, self.device)
        self._setup_planning_models()
        if self.rollout_buffer_class is None:
            self.rollout_buffer_class = PVDRRolloutBuffer
        if issubclass(self.rollout_buffer_class, PVDRRolloutBuffer):
            self.rollout_buffer_kwargs = {
                **self.rollout_buffer_kwargs,
                "plan_length": self.dynamics.config.l,
                "frame_step": self.dynamics.config.frame_step,
                "image_size": self.tokenizer.image_size,
                "lambda_3": self.lambda_3,
            }
        super()._setup_model()
        self._setup_finetuning()
        if self.env is not None:
            self.bind_planning_env(self.env)

    def _setup_planning_models(self) -> None:
        """Resolve the tokenizer and dynamics model: given, from the env's planner, or (after ``load``) from configs."""
        tokenizer, dynamics = self.tokenizer, self.dynamics
        if tokenizer is None and dynamics is None and self._dynamics_config is not None:
            # load(): rebuild the architecture, SB3 then loads the weights from the zip
            tokenizer = VQTokenizer(TokenizerConfig.from_dict(self._tokenizer_config))
            dynamics = VisualDynamicsModel(DynamicsConfig.from_dict(self._dynamics_config))
        elif tokenizer is None or dynamics is None:
            if self.env is None:
                raise ConfigError("PVDR needs tokenizer= and dynamics= (modules or checkpoint paths) when created without an env")
            try:
                planner = self.env.get_attr("planner", [0])[0]
            except AttributeError:
                raise ConfigError("PVDR's env must be wrapped in sb3_pvdr.planning.PlanningWrapper (or pass tokenizer= and dynamics=)") from None
            tokenizer = planner.tokenizer if tokenizer is None else tokenizer
            dynamics = planner.dynamics if dynamics is None else dynamics
        fresh = self._dynamics_config is None
        self.tokenizer, self.dynamics = load_planning_models(tokenizer, dynamics, self.device)
        self.tokenizer.to(self.device).eval()
        self.dynamics.to(self.device).eval()
        if fresh and not self.pretrained:
            # ablation "w/o pre-training": same architecture, random weights, re-initialised in place so that
            # every planner sharing this module sees it
            self.dynamics.load_state_dict(VisualDynamicsModel(self.dynamics.config).state_dict())
        self._tokenizer_config = self.tokenizer.config.to_dict()
        self._dynamics_config = self.dynamics.config.to_dict()
        # footnote 3: E is frozen except its last layer (mean and variance of z); the tokenizer is never trained
        self.dynamics.encoder.requires_grad_(False)
        self.tokenizer.requires_grad_(False)

    def finetuned_parameters(self, group: str) -> list[th.nn.Parameter]:
        """Parameters fine-tuned by L_rec (``"rec"``: D and E's ``posterior_head``) or L_prior (``"prior"``: P)."""
        if group == "rec":
            return [*self.dynamics.decoder.parameters(), *self.dynamics.posterior_head.parameters()]
        if group == "prior":
            return [*self.dynamics.prior_net.parameters(), *self.dynamics.prior_head.parameters()]
        raise ValueError(f"unknown parameter group {group!r}; use 'rec' or 'prior'")

    def _setup_finetuning(self) -> None:
        if self.finetune_rollouts > 0:
            self.dynamics_optimizer = th.optim.Adam(self.finetuned_parameters("rec"), lr=self.finetune_lr)
            self.prior_optimizer = th.optim.Adam(self.finetuned_parameters("prior"), lr=self.finetune_lr)

    def bind_planning_env(self, env: Union[GymEnv, VecEnv]) -> None:
        """Make every ``PlanningWrapper`` of ``env`` plan with this algorithm's models and settings.

        In a ``DummyVecEnv`` (or a plain env) the modules are shared by reference, so fine-tuning is seen
        immediately; a ``SubprocVecEnv`` receives copies (rebound after each fine-tuning).
        """
        settings = dict(
            n_candidates=self.n_candidates, replan_every=self.replan_every, random_z=self.random_z, plan_metric=self.plan_metric,
            oracle_z=self.oracle_z, prior_temperature=self.prior_temperature, bf16=self.use_bf16,
            plan_distance=self.plan_distance,
        )
        if isinstance(env, VecEnv):
            if _in_subprocesses(env):  # one torch thread per worker: n_envs workers + the learner share the cores
                env.env_method("set_torch_threads", 1)
            env.env_method("bind_planner", self.tokenizer, self.dynamics, **settings)
        elif isinstance(env, gym.Env):
            env.get_wrapper_attr("bind_planner")(self.tokenizer, self.dynamics, **settings)

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        super().set_env(env, force_reset)
        self.bind_planning_env(self.env)

    @classmethod
    def load(cls: type[SelfPVDR], path: Any, env: Optional[GymEnv] = None, *args: Any, **kwargs: Any) -> SelfPVDR:  # type: ignore[override]
        """``PPO.load``, then bind the loaded (fine-tuned) planning models to ``env``'s planners."""
        model = super().load(path, env, *args, **kwargs)
        if model.env is not None:
            model.bind_planning_env(model.env)
        return model

    # ------------------------------------------------------------------ callbacks and phases
    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        internal: list[BaseCallback] = [RolloutRecorderCallback()]
        if self.finetune_rollouts > 0:
            internal.append(DynamicsFineTuneCallback())
        user = callback if isinstance(callback, list) else ([] if callback is None else [callback])
        user = [cb if isinstance(cb, BaseCallback) else ConvertCallback(cb) for cb in user]
        folder = run_folder(_walk_callbacks(user))
        for cb in _walk_callbacks(user):
            if isinstance(cb, EvalCallback):
                self.bind_planning_env(cb.eval_env)
            if isinstance(cb, PlanVideoCallback):
                cb.run_folder = folder  # plan videos as files in the run folder
        return super()._init_callback(internal + user, progress_bar)

    def _phase_of(self, rollout_index: int) -> str:
        cycle = self.finetune_rollouts + self.align_rollouts
        return FINETUNE if rollout_index % cycle < self.finetune_rollouts else ALIGN

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int) -> bool:
        """``PPO.collect_rollouts`` in the phase (E1 fine-tuning or E2 alignment) of Algorithm 1 this rollout belongs to."""
        self.rollout_phase = self._phase_of(self._n_rollouts)
        threads = th.get_num_threads()
        fewer = self.acting_threads is not None and self.acting_threads < threads and _in_subprocesses(env)
        if fewer:
            self._update_threads = threads
            th.set_num_threads(self.acting_threads)
        try:
            continue_training = super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        finally:
            if fewer:
                th.set_num_threads(threads)
                self._update_threads = None
        self._n_rollouts += 1
        if continue_training and isinstance(rollout_buffer, PVDRRolloutBuffer):
            self.logger.record("rollout/pvdr_reward_mean", float(rollout_buffer.rewards.mean()))
            self.logger.record("rollout/plan_distance_mean", float(rollout_buffer.planning_term().mean()))
            # eq. (6)'s two terms: after advantage normalisation only their relative variation counts
            self.logger.record("rollout/goal_term_std", float(rollout_buffer.env_rewards.std()))
            self.logger.record("rollout/plan_term_std", float(self.lambda_3 * rollout_buffer.planning_term().std()))
        if self.rollout_phase == FINETUNE and _in_subprocesses(env):
            self.bind_planning_env(env)  # subprocess envs hold copies of the models: refresh them
        return continue_training

    @contextlib.contextmanager
    def update_threads(self) -> Iterator[None]:
        """The process's own torch thread count for the block (fine-tuning at a rollout's end), where
        ``collect_rollouts`` lowered it to ``acting_threads``; a no-op otherwise."""
        if self._update_threads is None:
            yield
            return
        acting = th.get_num_threads()
        th.set_num_threads(self._update_threads)
        try:
            yield
        finally:
            th.set_num_threads(acting)

    # ------------------------------------------------------------------ training
    def alignment_loss(self, batch: PVDRRolloutBufferSamples) -> Optional[th.Tensor]:
        """L_act of eq. (5): ``||a_t - Pi(z_t, x_t)||_2`` with z_t = E(x_t, y_t) (posterior mean) and Pi's
        deterministic action, averaged over the minibatch's steps with complete real futures (``None`` if none).

        The target (``batch.act_targets``, see ``act_target``) is built from the actions the env executed (the
        sampled actions clipped to the action space).
        """
        mask = batch.align_mask
        if not bool(mask.any()):
            return None
        observations = {key: value[mask] for key, value in batch.observations.items() if key != "plan_tokens"}  # goal_tokens too
        observations["z_star"] = batch.latents[mask]
        if batch.futures is not None:  # an aligner that reads the plan D(x_t, z*) reads the real future y_t here
            observations["plan_tokens"] = batch.futures[mask]
        predicted = self.policy.get_distribution(observations).mode()
        return th.linalg.vector_norm(batch.act_targets[mask] - predicted, dim=-1).mean()

    @th.no_grad()
    def _compute_alignment_targets(self, chunk: int = 32) -> None:
        """Fill ``rollout_buffer.latents`` with z_t = E(x_t, y_t).mean (not computed when the aligner does not read z),
        ``futures`` with y_t (when the observation holds the plan) and ``align_mask`` with complete futures.

        :param chunk: windows per encoder call. Small on purpose: E's activations for 256 windows (256 x 576 tokens x
            128 floats per tensor) overflow the CPU caches and ran at 18.5 ms per window vs 12 ms for 32 (fp32, two
            threads, AVX2 EPYC; see ``benchmarks/planning_overhead.py``'s "L_act targets" line)."""
        buffer = self.rollout_buffer
        futures, mask = buffer.future_tokens()
        contexts = buffer.observations["context_tokens"]
        rows = np.flatnonzero(mask.reshape(-1))  # steps without l real future frames get no target (masked out of L_act)
        flat_x = contexts.reshape(-1, *contexts.shape[2:])[rows]
        flat_y = futures.reshape(-1, *futures.shape[2:])[rows]
        latents = np.zeros((mask.size, *buffer.latents.shape[2:]), dtype=np.float32)
        if buffer.futures is not None:
            buffer.futures = futures
        uses_z = getattr(self.policy.features_extractor, "uses_z", True)  # an aligner on the plan alone needs no z_t
        with eval_mode(self.dynamics), bf16_autocast(self.use_bf16, self.device):
            for start in range(0, len(flat_x) if uses_z else 0, chunk):
                x = th.as_tensor(flat_x[start : start + chunk], device=self.device)
                y = th.as_tensor(flat_y[start : start + chunk], device=self.device)
                latents[rows[start : start + chunk]] = self.dynamics.posterior(x, y).mode().cpu().numpy()
        buffer.latents = latents.reshape(buffer.latents.shape)
        buffer.align_mask = mask
        actions, _ = buffer.future_actions()  # (T, n_envs, l * frame_step, action_dim)
        actions = np.clip(actions, self.action_space.low, self.action_space.high)
        if self.act_target == "action":
            targets = actions[:, :, 0]
        else:
            targets = actions.mean(axis=2)
            if self.act_target == "window_mean_rescaled":
                targets = np.clip(targets * np.sqrt(actions.shape[2]), self.action_space.low, self.action_space.high)
        buffer.act_targets = targets.astype(np.float32)

    @contextlib.contextmanager
    def _alignment_loss_hook(self) -> Iterator[list[float]]:
        """While active, ``policy.optimizer.zero_grad()`` also back-propagates ``act_coef * L_act`` of the
        minibatch PPO is about to back-propagate (see the module docstring). Yields the list of L_act values."""
        losses: list[float] = []
        optimizer = self.policy.optimizer
        zero_grad = optimizer.zero_grad

        def zero_grad_then_add_alignment_loss(set_to_none: bool = True) -> None:
            zero_grad(set_to_none=set_to_none)
            loss = self.alignment_loss(self.rollout_buffer.current_batch)
            if loss is not None:
                (self.act_coef * loss).backward()
                losses.append(loss.item())

        optimizer.zero_grad = zero_grad_then_add_alignment_loss  # type: ignore[method-assign]
        try:
            yield losses
        finally:
            del optimizer.zero_grad  # back to the class's method

    def _train_alignment_only(self) -> list[float]:
        """Ablation "w/o act rl": the policy learns from ``act_coef * L_act`` alone (PPO's minibatches and epochs)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(self.n_epochs):
            for batch in self.rollout_buffer.get(self.batch_size):
                loss = self.alignment_loss(batch)
                if loss is None:
                    continue
                self.policy.optimizer.zero_grad()
                (self.act_coef * loss).backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
                losses.append(loss.item())
            self._n_updates += 1
        return losses

    def train(self) -> None:
        """Algorithm 1 line 12 on alignment rollouts: PPO's update with ``act_coef * L_act`` added by the hook.

        Fine-tuning rollouts (lines 8-9) were consumed by the fine-tuning callback: the policy is not updated
        (unless ``update_on_finetune``).
        """
        self.logger.record("train/phase_finetune", float(self.rollout_phase == FINETUNE))
        if self.rollout_phase == FINETUNE and not self.update_on_finetune:
            return
        if self.act_coef > 0:
            self._compute_alignment_targets()
        if not self.ppo_loss:
            act_losses = self._train_alignment_only()
        elif self.act_coef > 0:
            with self._alignment_loss_hook() as act_losses:
                super().train()
        else:
            act_losses = []
            super().train()
        if act_losses:
            self.logger.record("train/act_loss", float(np.mean(act_losses)))

    def learn(
        self: SelfPVDR,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PVDR",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPVDR:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    # ------------------------------------------------------------------ persistence
    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "tokenizer", "dynamics", "dynamics_optimizer", "prior_optimizer"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, tensors = super()._get_torch_save_params()
        state_dicts = [*state_dicts, "tokenizer", "dynamics"]
        if self.finetune_rollouts > 0:
            state_dicts += ["dynamics_optimizer", "prior_optimizer"]
        return state_dicts, tensors


def _in_subprocesses(env: VecEnv) -> bool:
    while isinstance(env, VecEnvWrapper):
        env = env.venv
    return isinstance(env, SubprocVecEnv)


def _walk_callbacks(callbacks: list[BaseCallback]) -> Iterator[BaseCallback]:
    for cb in callbacks:
        yield cb
        if isinstance(cb, CallbackList):
            yield from _walk_callbacks(cb.callbacks)


__all__ = ["PVDR"]
