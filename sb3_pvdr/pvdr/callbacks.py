"""Callbacks of the online stage: recording the planning infos, fine-tuning the visual dynamics model between
rollouts (Algorithm 1, lines 7-9), and tensorboard videos of the plans.

Paper: PVDR (Luo, Zhou, Lu, ECCV 2024), §4.3 eqs. (3)-(4), Algorithm 1.

Loss reductions follow :meth:`VisualDynamicsModel.loss` (nats per future token), so ``lambda_1`` and the
pre-training balance carry over:

- L_rec (eq. (3)): token cross-entropy of D(y | x, z ~ E(x, y)), plus ``lambda_1`` times the bottleneck KL
  (eq. (3) omits it; set ``lambda_1: 0`` for eq. (3) literally; the default keeps pre-training's 1e-3 so the
  fine-tuned posterior head does not drift from N(0, I), where the prior samples live). E is frozen except
  ``posterior_head`` (footnote 3); the gradient updates D and that head.
- L_prior (eq. (4)): KL(P(.|x) || sg[E(.|x, y)]) + ``lambda_2`` * ||y^ - g||_1 with y^ ~ D(x, z ~ P(.|x)). The
  plan y^ is generated greedily (as at inference) with autograd on, so its logits have a graph to z (the same
  logits as a teacher-forced pass on the generated tokens, without that second pass: half the time of generate
  + teacher forcing on a CPU, 0.67 vs 1.34 s per minibatch of 32); their softmax probabilities weight the codebook embeddings of each token,
  which go through ``tokenizer.decode_soft`` to pixels (``plan_metric="pixels"``) or are compared with the
  goal's codes directly (``"codes"``), with the planner's distance (mean over plan frames). Only P's parameters
  are updated by it (eq. (4) is L(theta)).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Optional

import imageio.v3 as imageio
import numpy as np
import torch as th
import torch.nn.functional as F
from einops import rearrange
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat
from tensorboard.compat.proto.summary_pb2 import Summary

from sb3_pvdr.common.precision import bf16_autocast
from sb3_pvdr.dynamics import DiagonalGaussian, LossBreakdown, VisualDynamicsModel
from sb3_pvdr.planning.planner import eval_mode, plan_goal_distance
from sb3_pvdr.pvdr.interface import FINETUNE, FineTunedModel
from sb3_pvdr.tokenizer.model import VQTokenizer

# b - batch, t - frames (l), h w - token grid, k - codebook size, H W c - pixels

AUTO = "auto"  # PlanVideoCallback(save_dir=AUTO): files in the run folder (see PlanVideoCallback)


def _posterior(dynamics: VisualDynamicsModel, x: th.Tensor, y: th.Tensor, features: Optional[th.Tensor]) -> DiagonalGaussian:
    """E(x, y), from E's trunk ``features`` when the caller already computed them (fine-tuning shares them)."""
    return dynamics.posterior_from_features(dynamics.posterior_features(x, y) if features is None else features)


def reconstruction_loss(
    dynamics: VisualDynamicsModel, x: th.Tensor, y: th.Tensor, lambda_1: float = 1e-3, features: Optional[th.Tensor] = None
) -> tuple[th.Tensor, LossBreakdown]:
    """L_rec of eq. (3) (+ ``lambda_1`` * bottleneck KL), see the module docstring.

    :param x: context tokens ``(b, m, h, w)``
    :param y: real future tokens ``(b, l, h, w)``
    :param features: ``dynamics.posterior_features(x, y)`` if already computed (E's frozen trunk)
    :return: loss and ``LossBreakdown(recon, kl_bottleneck, kl_prior=0, accuracy)``
    """
    q = _posterior(dynamics, x, y, features)
    logits = dynamics.decode_logits(x, y, q.sample()).float()
    recon = F.cross_entropy(rearrange(logits, "b t h w k -> (b t h w) k"), rearrange(y, "b t h w -> (b t h w)"))
    kl_bottleneck = q.kl().flatten(1).sum(1).mean() / y[0].numel()
    with th.no_grad():
        accuracy = (logits.argmax(dim=-1) == y).float().mean()
    zero = th.zeros((), device=recon.device)
    return recon + lambda_1 * kl_bottleneck, LossBreakdown(recon, kl_bottleneck, zero, accuracy)


def prior_loss(
    dynamics: VisualDynamicsModel,
    tokenizer: VQTokenizer,
    x: th.Tensor,
    y: th.Tensor,
    goals: th.Tensor,
    lambda_2: float = 0.8,
    metric: str = "pixels",
    distance: str = "mean",
    features: Optional[th.Tensor] = None,
    hindsight_goals: Optional[th.Tensor] = None,
    goal_clips: Optional[int] = None,
) -> tuple[th.Tensor, dict[str, th.Tensor]]:
    """L_prior of eq. (4): KL(P || sg[E]) + ``lambda_2`` * goal distance of the plan decoded from z ~ P.

    A goal-conditioned prior (``prior_goal``) reads ``hindsight_goals`` in the KL term (the frame the clip's episode
    really reached: fitting P(z | x, g) to E's z of a future that went elsewhere than g would teach it to ignore g),
    and the goal images' tokens in the goal term.

    :param x: context tokens ``(b, m, h, w)``
    :param y: real future tokens ``(b, l, h, w)`` (for the posterior of the KL term)
    :param goals: goal images ``(b, H, W, 3)`` uint8
    :param lambda_2: weight of the goal-oriented term (0: ablation "w/o prior opt")
    :param metric: space of the goal distance, as the planner's: ``"pixels"`` (softmax probabilities through
        ``tokenizer.decode_soft``) or ``"codes"`` (probability-weighted codebook embeddings vs the goal's codes)
    :param distance: over the ``"mean"`` of the l plan frames or the ``"last"`` one, as the planner's
    :param features: ``dynamics.posterior_features(x, y)`` if already computed (E's frozen trunk)
    :param hindsight_goals: tokens ``(b, h, w)`` of the frames the clips' episodes reached (goal-conditioned prior
        only; ``None``: the goal images')
    :param goal_clips: estimate the goal term on the first this many clips only (``None``: all); the KL term always
        reads every clip
    :return: loss and ``{"kl_prior", "goal"}``
    """
    n_tokens = y[0].numel()
    with th.no_grad():
        q = _posterior(dynamics, x, y, features)
    conditioned = dynamics.config.prior_goal  # P(z | x, g)

    def goal_image_tokens() -> th.Tensor:
        with th.no_grad():
            return tokenizer.encode(goals).long()

    kl_goal = (goal_image_tokens() if hindsight_goals is None else hindsight_goals) if conditioned else None
    p = dynamics.prior(x, kl_goal)
    kl_prior = dynamics.prior_divergence(p, q).flatten(1).sum(1).mean() / n_tokens
    goal = th.zeros((), device=kl_prior.device)
    if lambda_2 > 0:
        if goal_clips is not None and goal_clips < x.shape[0]:
            x, goals = x[:goal_clips], goals[:goal_clips]
            p = DiagonalGaussian(p.mean[:goal_clips], p.logvar[:goal_clips])
        if conditioned and hindsight_goals is not None:
            p = dynamics.prior(x, goal_image_tokens())  # the plan toward the task's goal
        z = p.sample()
        with eval_mode(dynamics):  # greedy, as at inference; the generation's logits are differentiable w.r.t. z
            _, logits = dynamics.generate(x, z, return_logits=True)
        probs = logits.float().softmax(dim=-1)
        if metric == "pixels":
            flat = rearrange(probs, "b t h w k -> (b t) h w k")
            frames = rearrange(tokenizer.decode_soft(flat), "(b t) H W c -> b t H W c", b=x.shape[0])
            target = goals
        else:
            codebook = tokenizer.codebook.detach()
            frames = th.einsum("b t h w k, k d -> b t h w d", probs, codebook.to(probs))
            target = codebook[tokenizer.encode(goals)]
        goal = plan_goal_distance(frames, target, distance).mean()
    return kl_prior + lambda_2 * goal, {"kl_prior": kl_prior, "goal": goal}


def run_folder(callbacks: Iterable[BaseCallback]) -> Optional[str]:
    """The run's folder as the given callbacks know it: where an ``EvalCallback`` saves its best model (or its
    ``evaluations.npz``), else where a ``CheckpointCallback`` saves; ``None`` if none of them saves anything.
    Under ``train.py`` (rl-zoo) both are the run folder ``<log-folder>/<algo>/<env>_<n>``."""
    callbacks = list(callbacks)
    for cb in callbacks:
        if isinstance(cb, EvalCallback) and (cb.best_model_save_path or cb.log_path):
            return cb.best_model_save_path or os.path.dirname(cb.log_path)
    for cb in callbacks:
        if isinstance(cb, CheckpointCallback):
            return cb.save_path
    return None


def _minibatches(n: int, batch_size: int, rng: np.random.Generator, max_batches: Optional[int] = None) -> list[np.ndarray]:
    """A shuffled pass over ``n`` samples in minibatches, cut after ``max_batches`` (``None``: the whole pass)."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)][:max_batches]


class RolloutRecorderCallback(BaseCallback):
    """Copies the planning wrapper's infos of every step into the PVDR rollout buffer (added internally by PVDR).

    It runs inside ``collect_rollouts`` after ``env.step`` and before the step is added to the buffer, which is
    the one place SB3 exposes ``infos`` without copying ``collect_rollouts``.
    """

    def _on_rollout_start(self) -> None:
        self.plan_stats: dict[str, list[float]] = {}
        self.steps = 0

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        self.model.rollout_buffer.record(infos, self.locals["dones"])
        self.steps += len(infos)
        for info in infos:
            for key, value in info.get("plan_stats", {}).items():
                self.plan_stats.setdefault(key, []).append(value)
        return True

    def _on_rollout_end(self) -> None:
        """Planning diagnostics of the rollout: does eq. (2)'s choice matter, how often does z* change."""
        stats = getattr(self, "plan_stats", {})
        for key, values in stats.items():
            finite = [v for v in values if np.isfinite(v)]
            if finite:
                self.logger.record(f"plan/{key}", float(np.mean(finite)))
        if self.steps:
            self.logger.record("plan/replans_per_step", len(stats.get("choice_gain", [])) / self.steps)


class DynamicsFineTuneCallback(BaseCallback):
    """Algorithm 1 lines 8-9 at the end of every fine-tuning rollout (E1) of PVDR (added internally by PVDR).

    Rollouts alternate: ``finetune_rollouts`` fine-tuning rollouts (E1: the visual dynamics model is updated,
    the policy is not), then ``align_rollouts`` alignment rollouts (E2: rewards relabelled, the policy is
    trained with PPO + L_act). The schedule lives in :attr:`PVDR.rollout_phase`; this callback reads it.

    Experience: (x_t, y_t, g) of every step of the rollout with l real future frames. Line 8 runs
    ``finetune_epochs`` passes of L_rec over it, then line 9 as many passes of L_prior over the same minibatches;
    with ``finetune_batches`` each pass stops after that many minibatches. E's trunk is frozen (footnote 3), so
    each minibatch's trunk features are computed once and serve both lines (only ``posterior_head`` moves).

    :param verbose: verbosity
    """

    model: FineTunedModel  # type: ignore[assignment]

    def _init_callback(self) -> None:
        self.rng = np.random.default_rng(self.model.seed)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.model.rollout_phase != FINETUNE:
            return
        with self.model.update_threads():  # all threads, not acting_threads
            stats = self.finetune(self.model)
        for key, value in stats.items():
            self.logger.record(f"finetune/{key}", value)

    def finetune(self, model: FineTunedModel) -> dict[str, float]:
        """Run lines 8-9 on ``model.rollout_buffer``; return the mean losses."""
        buffer = model.rollout_buffer
        futures, mask = buffer.future_tokens()
        contexts = buffer.observations["context_tokens"][mask]
        futures, goals = futures[mask], buffer.goals[mask]
        if len(contexts) == 0:
            return {}
        # a goal-conditioned prior's KL term reads where each episode really went (hindsight), as in pre-training
        hindsight = buffer.hindsight_goal_tokens()[mask] if model.dynamics.config.prior_goal else None
        device = model.device
        dynamics, tokenizer = model.dynamics, model.tokenizer
        rng = self.rng
        stats: dict[str, list[float]] = {"recon": [], "kl_bottleneck": [], "accuracy": [], "kl_prior": [], "goal": []}

        def batch(idx: np.ndarray) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
            return (
                th.as_tensor(contexts[idx], device=device),
                th.as_tensor(futures[idx], device=device),
                th.as_tensor(goals[idx], device=device),
            )

        def hindsight_batch(idx: np.ndarray) -> Optional[th.Tensor]:
            return None if hindsight is None else th.as_tensor(hindsight[idx], device=device)

        minibatches = [idx for _ in range(model.finetune_epochs)
                       for idx in _minibatches(len(contexts), model.finetune_batch_size, rng, model.finetune_batches)]
        features: list[th.Tensor] = []  # E's frozen trunk per minibatch, shared by lines 8 and 9
        was_training = dynamics.training
        dynamics.train()
        try:
            # line 8: E (posterior head only) and D with L_rec
            for idx in minibatches:
                x, y, _ = batch(idx)
                with bf16_autocast(model.use_bf16, device):
                    with th.no_grad():
                        features.append(dynamics.posterior_features(x, y))
                    loss, parts = reconstruction_loss(dynamics, x, y, model.lambda_1, features[-1])
                model.dynamics_optimizer.zero_grad()
                loss.backward(inputs=model.finetuned_parameters("rec"))
                th.nn.utils.clip_grad_norm_(model.finetuned_parameters("rec"), model.max_grad_norm)
                model.dynamics_optimizer.step()
                stats["recon"].append(parts.recon.item())
                stats["kl_bottleneck"].append(parts.kl_bottleneck.item())
                stats["accuracy"].append(parts.accuracy.item())
            # line 9: P with L_prior
            for idx, trunk in zip(minibatches, features):
                x, y, g = batch(idx)
                with bf16_autocast(model.use_bf16, device):
                    loss, parts = prior_loss(dynamics, tokenizer, x, y, g, model.lambda_2, model.plan_metric,
                                             model.plan_distance, trunk, hindsight_batch(idx), model.finetune_goal_clips)
                model.prior_optimizer.zero_grad()
                loss.backward(inputs=model.finetuned_parameters("prior"))
                th.nn.utils.clip_grad_norm_(model.finetuned_parameters("prior"), model.max_grad_norm)
                model.prior_optimizer.step()
                stats["kl_prior"].append(parts["kl_prior"].item())
                stats["goal"].append(parts["goal"].item())
        finally:
            dynamics.train(was_training)
        return {key: float(np.mean(values)) for key, values in stats.items() if values}


class PlanVideoCallback(BaseCallback):
    """Tensorboard video of context | chosen plan | what really happened, every ``every_n_rollouts`` rollouts.

    Each clip shows one planning step t of the first env: l video frames, frame k shows the current frame o_t
    (left), the plan's frame k (middle) and the real frame o_{t+1+k} (right). Clips are taken every l steps of
    the rollout, up to ``n_clips``; a clip stops at an episode end.

    The video is written as an animated GIF image summary (tag ``pvdr/plans``, the IMAGES tab of tensorboard)
    straight to the run's tensorboard writer, because ``SummaryWriter.add_video`` needs ``moviepy.editor``,
    which moviepy 2 removed, and as a file ``plans_<timesteps>.gif`` in :meth:`video_dir`: by default
    ``<run folder>/plan_videos/``, where the run folder is the one where the run's ``EvalCallback`` saves its best
    model (or its ``CheckpointCallback`` its checkpoints): ``logs/pvdr/reach-v2_1/`` under ``train.py``. PVDR
    tells the callback that folder when ``learn`` starts (:func:`run_folder`); without such a callback the
    files go beside the tensorboard events (``<tensorboard run>/plan_videos/``), and without tensorboard either
    nowhere.

    :param every_n_rollouts: log a video every this many rollouts (the first rollout included)
    :param n_clips: clips per video
    :param fps: frames per second of the video
    :param save_dir: folder of the ``plans_<timesteps>.gif`` files; ``"auto"`` (default): as above;
        ``None``: no files (tensorboard only)
    :param verbose: verbosity
    """

    model: FineTunedModel  # type: ignore[assignment]

    def __init__(self, every_n_rollouts: int = 5, n_clips: int = 4, fps: int = 4, save_dir: Optional[str] = AUTO, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.every_n_rollouts = every_n_rollouts
        self.n_clips = n_clips
        self.fps = fps
        self.save_dir = save_dir
        self.run_folder: Optional[str] = None  # set by PVDR.learn (see run_folder())
        self._n_rollouts = 0
        self._steps: list[tuple[np.ndarray, np.ndarray, bool]] = []
        self.last_video: Optional[np.ndarray] = None

    def _recording(self) -> bool:
        return self._n_rollouts % self.every_n_rollouts == 0

    def _on_rollout_start(self) -> None:
        self._steps = []

    def _on_step(self) -> bool:
        if self._recording():
            info = self.locals["infos"][0]
            self._steps.append((info["frame"], info["plan_tokens"], bool(self.locals["dones"][0])))
        return True

    def _on_rollout_end(self) -> None:
        if self._recording():
            video = self.make_video(self._steps, self.model.tokenizer, self.n_clips, self.model.dynamics.config.frame_step)
            if video is not None:
                self.last_video = video
                self._write(video)
        self._n_rollouts += 1

    def video_dir(self) -> Optional[str]:
        """Where the GIF files go: ``save_dir``, else ``<run folder>/plan_videos``, else ``<tensorboard run>/plan_videos``."""
        if self.save_dir != AUTO:
            return self.save_dir
        if self.run_folder is not None:
            return os.path.join(self.run_folder, "plan_videos")
        for output in self.logger.output_formats:
            if isinstance(output, TensorBoardOutputFormat):
                return os.path.join(output.writer.log_dir, "plan_videos")
        return None

    def _write(self, video: np.ndarray) -> None:
        gif = imageio.imwrite("<bytes>", video, extension=".gif", duration=1000 / self.fps, loop=0)
        folder = self.video_dir()
        if folder is not None:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"plans_{self.num_timesteps}.gif"), "wb") as f:
                f.write(gif)
        height, width = video.shape[1:3]
        summary = Summary(
            value=[Summary.Value(tag="pvdr/plans", image=Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif))]
        )
        for output in self.logger.output_formats:
            if isinstance(output, TensorBoardOutputFormat):
                output.writer.file_writer.add_summary(summary, self.num_timesteps)
                output.writer.flush()

    @staticmethod
    def make_video(steps: list[tuple[np.ndarray, np.ndarray, bool]], tokenizer: VQTokenizer, n_clips: int,
                   frame_step: int = 1) -> Optional[np.ndarray]:
        """Build the video ``(T, H, 3W, 3)`` uint8 from recorded ``(frame o_{t+1}, plan for o_{t+1}, done)`` steps
        (plan frame k predicts the frame ``(k + 1) * frame_step`` steps ahead)."""
        frames: list[np.ndarray] = []
        l = steps[0][1].shape[0] if steps else 0  # noqa: E741
        for start in range(0, max(len(steps) - 1, 0), max(l * frame_step, 1)):
            if len(frames) >= n_clips * l:
                break
            if steps[start][2]:  # o_{start+1} is a terminal frame: its plan is never followed
                continue
            current, plan_tokens, _ = steps[start]
            with th.no_grad():
                plan = (tokenizer.decode(th.as_tensor(plan_tokens)).cpu().numpy() * 255).round().astype(np.uint8)
            for k in range(l):
                real_idx = start + (k + 1) * frame_step
                if real_idx >= len(steps) or any(done for *_, done in steps[start + 1 + k * frame_step : real_idx]):
                    break  # past the rollout, or the episode ended before that frame
                frames.append(np.concatenate((current, plan[k], steps[real_idx][0]), axis=1))
                if steps[real_idx][2]:
                    break
        return np.stack(frames) if frames else None


__all__ = [
    "DynamicsFineTuneCallback",
    "PlanVideoCallback",
    "RolloutRecorderCallback",
    "prior_loss",
    "reconstruction_loss",
    "run_folder",
]

