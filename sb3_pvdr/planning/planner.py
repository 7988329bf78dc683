"""Planning with the visual dynamics model: sample N latents from the prior, decode N visual plans in one
batch, keep the one closest to the goal (paper §4.2, eq. (2)).

Plan-to-goal distance (eq. (2), and the goal-oriented term of eq. (4)): ``||D(x, z) - g||_1`` over the whole
plan, i.e. the mean absolute pixel difference (pixels in [0, 1]) between each of the l decoded plan frames
and the goal image, averaged over the frames. This is eq. (2) read literally (the L1 norm of the plan
sequence against g broadcast over time, up to the constant 1/l), and it ranks plans like the sum of the
goal rewards they promise: a plan that gets near the goal early and stays there beats one that only ends
there (the last-frame distance cannot tell them apart), and averaging l frames is less noisy than any
single decoded frame. ``distance="last"`` (PVDR's ``plan_distance``) compares the last plan frame only: with the
shipped model it ranks candidates by where their plan's hand ends far better (``evaluate_dynamics --goal-probe
--hand-candidates``: Spearman 0.51 vs 0.24 with the hand's distance to the goal on reach), since the early plan
frames differ little between candidates and dilute the difference. ``distance="last_blurred"`` compares the last plan
frame and the goal both average-pooled to an 8 x 8 grid of cells (8 x 8 pixels at 64 px; pixels metric only): a
hand that ends far from the goal's hand still ranks by how far, where the plain L1 saturates once the two hands no
longer overlap (goal probe, frame-step-3 model, prior temperature 3: Spearman 0.71 vs 0.56 with the hand's distance
to the goal, and 0.42 vs 0.37 of the best choice's gain at N = 16; results/frame_step3/README.md).

Two spaces for that distance (``metric``), used consistently by planning (eq. (2)), the planning-oriented reward
term (eq. (6)) and the goal term of the prior loss (eq. (4)):

- ``"pixels"`` (A.1: plans are decoded "directly ... with VQGAN"): plan tokens -> tokenizer decoder -> frames in
  [0, 1], compared with the goal image. Decoding N * l frames per call dominates planning on a CPU.
- ``"codes"``: the grids of codebook embeddings (§3.2 writes the compressed frames x_t, y_t as
  ``h x w x n_q`` grids of codes); the goal is tokenized once, plans are looked up in the codebook, no
  decoder runs. Several times cheaper; the scale of the distances differs from pixels', which matters for
  lambda_2 and lambda_3.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional, Union

import torch
from einops import rearrange, reduce
from torch import Tensor, nn

from sb3_pvdr.common.errors import CheckpointError, ConfigError, DataError
from sb3_pvdr.common.precision import bf16_autocast
from sb3_pvdr.dynamics import VisualDynamicsModel
from sb3_pvdr.tokenizer.model import VQTokenizer

# n - candidates, t - plan frames (l), h w - token grid, d - latent channels d_z, H W c - pixels

PathOrModule = Union[str, os.PathLike, nn.Module]
PLAN_METRICS = ("pixels", "codes")
PLAN_DISTANCES = ("mean", "last", "last_blurred")
BLUR_GRID = 8  # "last_blurred": frames average-pooled to a BLUR_GRID x BLUR_GRID grid of cells


@dataclass
class PlanResult:
    """Outcome of one planning call.

    :param z_star: chosen latent ``(h, w, d_z)``
    :param tokens: chosen plan's tokens ``(l, h, w)``
    :param frames: chosen plan in the metric's space: ``(l, H, W, 3)`` pixels in [0, 1] or ``(l, h, w, d_code)`` codes
    :param distances: plan-to-goal distance of every candidate ``(n,)``
    :param index: index of the chosen candidate
    """

    z_star: Tensor
    tokens: Tensor
    frames: Tensor
    distances: Tensor
    index: int


def blur_frames(frames: Tensor, grid: int = BLUR_GRID) -> Tensor:
    """Frames ``(..., H, W, c)`` average-pooled to ``(..., grid, grid, c)`` (H, W multiples of ``grid``; a smaller
    side is left as it is)."""
    h, w = frames.shape[-3:-1]
    a, b = max(1, h // grid), max(1, w // grid)
    return reduce(frames, "... (h a) (w b) c -> ... h w c", "mean", a=a, b=b)


def plan_goal_distance(frames: Tensor, goal: Tensor, reduce: str = "mean") -> Tensor:
    """Mean absolute difference of the plan frames to the goal (see module docstring).

    :param frames: plans ``(n, l, ...)``: pixels ``(n, l, H, W, 3)`` in [0, 1] or codes ``(n, l, h, w, d)``
    :param goal: goal ``(...)`` (a uint8 image is scaled to [0, 1]) or one per plan ``(n, ...)``
    :param reduce: ``"mean"``: averaged over the l frames (eq. (2) read literally); ``"last"``: the last frame only;
        ``"last_blurred"``: the last frame and the goal pooled by :func:`blur_frames` first
    :return: ``(n,)``
    """
    if reduce not in PLAN_DISTANCES:
        raise ConfigError(f"plan distance must be one of {PLAN_DISTANCES}, got {reduce!r}")
    if goal.dtype == torch.uint8:
        goal = goal.float() / 255.0
    if goal.dim() == frames.dim() - 2:
        goal = goal[None]
    if reduce != "mean":
        frames = frames[:, -1:]
    if reduce == "last_blurred":
        frames, goal = blur_frames(frames), blur_frames(goal.to(frames))
    return (frames - goal[:, None].to(frames)).abs().flatten(1).mean(dim=1)


def check_plan_settings(metric: str, distance: str) -> None:
    """:raises ConfigError: an unknown metric or distance, or ``"last_blurred"`` on code grids (8 x 8 tokens: nothing
    to pool)"""
    if metric not in PLAN_METRICS:
        raise ConfigError(f"plan metric must be one of {PLAN_METRICS}, got {metric!r}")
    if distance not in PLAN_DISTANCES:
        raise ConfigError(f"plan_distance must be one of {PLAN_DISTANCES}, got {distance!r}")
    if distance == "last_blurred" and metric != "pixels":
        raise ConfigError(f"plan_distance 'last_blurred' pools decoded frames: it needs plan_metric 'pixels', got {metric!r}")


def load_planning_models(
    tokenizer: PathOrModule, dynamics: PathOrModule, device: Union[str, torch.device] = "cpu"
) -> tuple[VQTokenizer, VisualDynamicsModel]:
    """Resolve a tokenizer and a dynamics model given as checkpoint paths or modules, and check they match.

    Modules are used as they are (shared, not copied), so fine-tuning one object is seen by every user.

    :param tokenizer: ``VQTokenizer``, path of its checkpoint, or a shipped model's name (``"metaworld-64"``)
    :param dynamics: ``VisualDynamicsModel``, path of its checkpoint, or a shipped model's name
    :param device: device for models loaded from paths (``~`` in paths is expanded)
    :raises CheckpointError: unreadable checkpoints, or a tokenizer that does not match the model
    """
    from sb3_pvdr.pretrained import available, resolve

    if not isinstance(tokenizer, nn.Module):
        tokenizer = resolve(tokenizer, "tokenizer")
    if not isinstance(dynamics, nn.Module):
        dynamics = resolve(dynamics, "dynamics")
    for name, path in (("tokenizer", tokenizer), ("dynamics model", dynamics)):
        if not isinstance(path, nn.Module) and not os.path.isfile(path):
            raise CheckpointError(
                f"{name} checkpoint not found: {path}; give a checkpoint path or a shipped model's name "
                f"({', '.join(available()) or 'none shipped in this install'}) as "
                "-params tokenizer:... dynamics:... (or in the PlanningWrapper's env_wrapper kwargs)"
            )
    if not isinstance(tokenizer, nn.Module):
        tokenizer = VQTokenizer.load(tokenizer, map_location=device)
    if not isinstance(dynamics, nn.Module):
        dynamics = VisualDynamicsModel.load(dynamics, map_location=device)
    if not isinstance(tokenizer, VQTokenizer) or not isinstance(dynamics, VisualDynamicsModel):
        raise ConfigError(
            f"expected a VQTokenizer and a VisualDynamicsModel, got {type(tokenizer).__name__} and {type(dynamics).__name__}"
        )
    dynamics.check_tokenizer(tokenizer)
    return tokenizer, dynamics


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode (no dropout) for the duration, then restore their train/eval flags.

    Modules whose root is already in eval mode are left alone (``.eval()`` walks every submodule: on a
    planning call per env step that walk is measurable).
    """
    training = [m for m in modules if m.training]
    for m in training:
        m.eval()
    try:
        yield
    finally:
        for m in training:
            m.train()


class Planner:
    """Eq. (2): ``z* = argmin_{z^n ~ P(.|x), n <= N} ||D(x, z^n) - g||_1``.

    :param tokenizer: frame tokenizer (decodes plans to pixels)
    :param dynamics: visual dynamics model (prior P and decoder D)
    :param metric: space of the plan-to-goal distance, ``"pixels"`` or ``"codes"`` (module docstring)
    :param distance: ``"mean"`` over the l plan frames (default, eq. (2) read literally), the ``"last"`` frame only
        (ranks candidates by where the hand ends: ``evaluate_dynamics --goal-probe``'s hand-space report), or the
        ``"last_blurred"`` one (pixels only; module docstring)
    """

    def __init__(self, tokenizer: VQTokenizer, dynamics: VisualDynamicsModel, metric: str = "pixels",
                 distance: str = "mean") -> None:
        check_plan_settings(metric, distance)
        self.tokenizer = tokenizer
        self.dynamics = dynamics
        self.metric = metric
        self.distance = distance

    @property
    def device(self) -> torch.device:
        return next(self.dynamics.parameters()).device

    @torch.no_grad()
    def frame_target(self, frames: Tensor, tokens: Optional[Tensor] = None) -> Tensor:
        """Frames ``(b, H, W, 3)`` uint8 in the metric's space: pixels in [0, 1] or code grids ``(b, h, w, d)``.

        :param tokens: their token grids ``(b, h, w)`` if already known (skips the encoder)
        """
        if self.metric == "pixels":
            return frames.float() / 255.0
        if tokens is None:
            tokens = self.tokenizer.encode(frames)
        return self.tokenizer.codebook[tokens.to(self.tokenizer.codebook.device)]

    @torch.no_grad()
    def represent(self, tokens: Tensor) -> Tensor:
        """Plans' tokens ``(n, l, h, w)`` in the metric's space (decoded frames, or code grids)."""
        if self.metric == "pixels":
            return self.decode_plans(tokens)
        return self.tokenizer.codebook[tokens.to(self.tokenizer.codebook.device)]

    @torch.no_grad()
    def decode_plans(self, tokens: Tensor) -> Tensor:
        """Plans' tokens ``(n, l, h, w)`` -> frames ``(n, l, H, W, 3)`` in [0, 1], one tokenizer batch."""
        n = tokens.shape[0]
        frames = self.tokenizer.decode(rearrange(tokens, "n t h w -> (n t) h w"))
        return rearrange(frames, "(n t) H W c -> n t H W c", n=n)

    @torch.no_grad()
    def plan(
        self,
        context: Tensor,
        goal: Tensor,
        n_candidates: int,
        generator: Optional[torch.Generator] = None,
        random_z: bool = False,
        oracle_future: Optional[Tensor] = None,
        temperature: float = 1.0,
        bf16: bool = False,
        goal_tokens: Optional[Tensor] = None,
    ) -> PlanResult:
        """Sample ``n_candidates`` latents from the prior, decode their plans, keep the closest to the goal.

        :param context: context tokens ``(m, h, w)``
        :param goal: goal image ``(H, W, 3)`` uint8, or its :meth:`frame_target` (cache it when the goal is fixed)
        :param n_candidates: N
        :param generator: random generator for the prior samples (on the model's device)
        :param random_z: ablation "PVDR random": z ~ N(0, I) instead of planning (one candidate, no argmin)
        :param oracle_future: debugging upper bound: tokens ``(l, h, w)`` of the real future (e.g. the scripted
            expert's); z* is then the posterior mean E(x, y) of it (one candidate, no argmin)
        :param temperature: candidates are ``mean + temperature * std * eps``: 1 samples the prior P(.|x) itself,
            larger values spread the N candidates wider (more diverse plans for eq. (2) to choose from)
        :param bf16: run the prior, the generation and the plans' decoding under bf16 autocast
            (:mod:`sb3_pvdr.common.precision`); latents and distances stay fp32
        :param goal_tokens: the goal's tokens ``(h, w)`` for a goal-conditioned prior (``prior_goal``; encoded from
            ``goal`` when that is the image; cache them when the goal is fixed)
        """
        device = self.device
        x = context.to(device).long()[None]
        if self.dynamics.config.prior_goal and goal_tokens is None:
            if goal.dtype != torch.uint8:
                raise DataError("the dynamics model's prior is goal-conditioned: pass goal_tokens with a cached goal")
            goal_tokens = self.tokenizer.encode(goal[None].to(device))[0]
        with eval_mode(self.dynamics, self.tokenizer), bf16_autocast(bf16, device):
            if oracle_future is not None:
                z = self.dynamics.posterior(x, oracle_future.to(device).long()[None]).mode()
            elif random_z:
                z = torch.randn((1, *self.dynamics.z_shape), generator=generator, device=device)
            else:
                prior = self.dynamics.prior(x, None if goal_tokens is None else goal_tokens.to(device).long()[None])
                eps = torch.randn((n_candidates, *self.dynamics.z_shape), generator=generator, device=device)
                z = prior.mean + temperature * prior.std * eps  # (n, h, w, d): N samples of P(.|x) (tempered)
            tokens = self.dynamics.generate(x, z, use_cache=True)  # (n, l, h, w)
            if goal.dtype == torch.uint8:
                goal = self.frame_target(goal[None].to(device))[0]
            # "last"/"last_blurred" rank by the last frames: represent (decode) those, then the chosen plan's l frames
            ranked = self.represent(tokens if self.distance == "mean" else tokens[:, -1:]).float()  # (n, l or 1, ...)
            distances = plan_goal_distance(ranked, goal.to(device), self.distance)
            best = int(distances.argmin())
            chosen = ranked[best] if self.distance == "mean" else self.represent(tokens[best : best + 1]).float()[0]
        return PlanResult(z[best], tokens[best], chosen, distances, best)


__all__ = [
    "BLUR_GRID",
    "PLAN_DISTANCES",
    "PLAN_METRICS",
    "PlanResult",
    "Planner",
    "blur_frames",
    "check_plan_settings",
    "eval_mode",
    "load_planning_models",
    "plan_goal_distance",
]
