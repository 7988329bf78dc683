"""What the PVDR algorithm and its callbacks share: the rollout phases of Algorithm 1 and the attributes the
callbacks read from the model they are attached to.

Its own module so that ``pvdr.py`` (which adds the callbacks) and ``callbacks.py`` (which reads the model)
do not import each other.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Optional, Protocol

if TYPE_CHECKING:
    import torch as th

    from sb3_pvdr.dynamics import VisualDynamicsModel
    from sb3_pvdr.pvdr.buffer import PVDRRolloutBuffer
    from sb3_pvdr.tokenizer.model import VQTokenizer

# Algorithm 1 alternates fine-tuning rollouts (E1: the visual dynamics model is updated) and alignment rollouts
# (E2: the policy is trained with PPO + L_act); ``PVDR.rollout_phase`` holds one of these.
FINETUNE, ALIGN = "finetune", "align"


class FineTunedModel(Protocol):
    """The part of :class:`sb3_pvdr.pvdr.PVDR` that the online-stage callbacks use."""

    seed: Optional[int]
    device: th.device
    rollout_phase: str
    rollout_buffer: PVDRRolloutBuffer
    tokenizer: VQTokenizer
    dynamics: VisualDynamicsModel
    dynamics_optimizer: th.optim.Optimizer
    prior_optimizer: th.optim.Optimizer
    lambda_1: float
    lambda_2: float
    plan_metric: str
    plan_distance: str
    max_grad_norm: float
    finetune_epochs: int
    finetune_batch_size: int
    finetune_batches: Optional[int]
    finetune_goal_clips: Optional[int]
    use_bf16: bool  # bf16 autocast of the planning models' forward passes (``bf16`` resolved for the device)

    def finetuned_parameters(self, group: str) -> list[th.nn.Parameter]:
        """Parameters updated by L_rec (``"rec"``) or L_prior (``"prior"``)."""
        ...

    def update_threads(self) -> AbstractContextManager[None]:
        """The process's own torch thread count for the block (fine-tuning runs inside the rollout collection,
        which may have lowered it to ``acting_threads``)."""
        ...
