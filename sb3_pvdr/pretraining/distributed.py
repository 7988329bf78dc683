"""Distributed pre-training helpers: the process group ``torchrun`` describes (gloo on CPU, nccl on GPU), averaged
log scalars, and the loss as a module for ``DistributedDataParallel``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

from sb3_pvdr.common.utils import get_device


@dataclass
class DistInfo:
    """Where this process sits in the (possibly 1-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` (nccl on
    GPU, gloo on CPU); a plain ``python -m`` run is a 1-process job.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dev = get_device(device)
    if world_size <= 1:
        return DistInfo(device=dev)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalars over processes (for logging)."""
    if not info.distributed:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


class LossModule(nn.Module):
    """``forward(x, y)`` -> eq. (1) loss and its breakdown, so ``DistributedDataParallel`` (which hooks
    ``forward``) synchronises the gradients of ``VisualDynamicsModel.loss``.
    """

    def __init__(self, model: nn.Module, lambda_1: float) -> None:
        super().__init__()
        self.model = model
        self.lambda_1 = lambda_1

    def forward(self, x: torch.Tensor, y: torch.Tensor, goal: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Any]:
        return self.model.loss(x, y, lambda_1=self.lambda_1, goal=goal)


__all__ = ["DistInfo", "LossModule", "all_reduce_mean", "init_distributed"]
