"""Planning with the visual dynamics model: sample N latents from the prior, decode N visual plans in one
batch, keep the one closest to the goal (paper §4.2, eq. (2)).

Plan-to-goal distance (eq. (2), and the goal-oriented term of eq. (4)): ``||D(x, z) - g||_1`` over the whole
plan, i.e. the mean absolute pixel difference (pixels in [0, 1]) between each of the l decoded plan frames
and the goal image, averaged over the frames. This is eq. (2) read literally (the L1 norm of the plan
sequence against g broadcast over time, up to the constant 1/l), and it ranks plans like the sum of the
goal rewards they promise: a plan that gets near the goal early and stays there beats one that only ends
there (the last-frame distance cannot tell them apart), and averaging l frames is less noisy than any
single decoded frame.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional, Union

import torch
from einops import rearrange
from torch import Tensor, nn

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.dynamics import VisualDynamicsModel
from sb3_pvdr.tokenizer.model import VQTokenizer

# n - candidates, t - plan frames (l), h w - token grid, d - latent channels d_z, H W c - pixels

PathOrModule = Union[str, os.PathLike, nn.Module]


@dataclass
class PlanResult:
    """Outcome of one planning call.

    :param z_star: chosen latent ``(h, w, d_z)``
    :param tokens: chosen plan's tokens ``(l, h, w)``
    :param frames: chosen plan decoded ``(l, H, W, 3)`` float in [0, 1]
    :param distances: plan-to-goal distance of every candidate ``(n,)``
    :param index: index of the chosen candidate
    """

    z_star: Tensor
    tokens: Tensor
    frames: Tensor
    distances: Tensor
    index: int


def plan_goal_distance(frames: Tensor, goal: Tensor) -> Tensor:
    """Mean absolute difference of every plan frame to the goal, averaged over frames (see module docstring).

    :param frames: plans ``(n, l, H, W, 3)`` float in [0, 1]
    :param goal: goal image ``(H, W, 3)`` (uint8 or float in [0, 1]) or one per plan ``(n, H, W, 3)``
    :return: ``(n,)``
    """
    if goal.dtype == torch.uint8:
        goal = goal.float() / 255.0
    if goal.dim() == 3:
        goal = goal[None]
    return (frames - goal[:, None].to(frames)).abs().mean(dim=(1, 2, 3, 4))


def load_planning_models(
    tokenizer: PathOrModule, dynamics: PathOrModule, device: Union[str, torch.device] = "cpu"
) -> tuple[VQTokenizer, VisualDynamicsModel]:
    """Resolve a tokenizer and a dynamics model given as checkpoint paths or modules, and check they match.

    Modules are used as they are (shared, not copied), so fine-tuning one object is seen by every user.

    :param tokenizer: ``VQTokenizer`` or path of its checkpoint
    :param dynamics: ``VisualDynamicsModel`` or path of its checkpoint
    :param device: device for models loaded from paths (``~`` in paths is expanded)
    :raises CheckpointError: unreadable checkpoints, or a tokenizer that does not match the model
    """
    if not isinstance(tokenizer, nn.Module):
        tokenizer = VQTokenizer.load(os.path.expanduser(tokenizer), map_location=device)
    if not isinstance(dynamics, nn.Module):
        dynamics = VisualDynamicsModel.load(os.path.expanduser(dynamics), map_location=device)
    if not isinstance(tokenizer, VQTokenizer) or not isinstance(dynamics, VisualDynamicsModel):
        raise ConfigError(
            f"expected a VQTokenizer and a VisualDynamicsModel, got {type(tokenizer).__name__} and {type(dynamics).__name__}"
        )
    dynamics.check_tokenizer(tokenizer)
    return tokenizer, dynamics


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode (no dropout) for the duration, then restore their train/eval flags."""
    flags = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, flag in zip(modules, flags):
            m.train(flag)


class Planner:
    """Eq. (2): ``z* = argmin_{z^n ~ P(.|x), n <= N} ||D(x, z^n) - g||_1``.

    :param tokenizer: frame tokenizer (decodes plans to pixels)
    :param dynamics: visual dynamics model (prior P and decoder D)
    """

    def __init__(self, tokenizer: VQTokenizer, dynamics: VisualDynamicsModel) -> None:
        self.tokenizer = tokenizer
        self.dynamics = dynamics

    @property
    def device(self) -> torch.device:
        return next(self.dynamics.parameters()).device

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
    ) -> PlanResult:
        """Sample ``n_candidates`` latents from the prior, decode their plans, keep the closest to the goal.

        :param context: context tokens ``(m, h, w)``
        :param goal: goal image ``(H, W, 3)`` uint8
        :param n_candidates: N
        :param generator: random generator for the prior samples (on the model's device)
        :param random_z: ablation "PVDR random": z ~ N(0, I) instead of planning (one candidate, no argmin)
        """
        device = self.device
        x = context.to(device).long()[None]
        with eval_mode(self.dynamics, self.tokenizer):
            if random_z:
                z = torch.randn((1, *self.dynamics.z_shape), generator=generator, device=device)
            else:
                prior = self.dynamics.prior(x)
                eps = torch.randn((n_candidates, *self.dynamics.z_shape), generator=generator, device=device)
                z = prior.mean + prior.std * eps  # (n, h, w, d): N reparameterised samples of P(.|x)
            tokens = self.dynamics.generate(x, z, use_cache=True)
            frames = self.decode_plans(tokens)
        distances = plan_goal_distance(frames, goal.to(device))
        best = int(distances.argmin())
        return PlanResult(z[best], tokens[best], frames[best], distances, best)


__all__ = ["PlanResult", "Planner", "eval_mode", "load_planning_models", "plan_goal_distance"]
