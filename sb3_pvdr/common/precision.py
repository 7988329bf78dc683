"""bfloat16 autocast for the planning models (planning, L_act targets, fine-tuning): where it pays, and a switch.

On a CPU, bf16 matmuls are fast only with native instructions (``avx512_bf16`` or AMX); without them PyTorch
emulates bf16 and autocast is slower than fp32. ``"auto"`` therefore turns autocast on where the hardware has
native bf16 (CPU flags, or a CUDA device that supports it) and off elsewhere. Weights and optimiser state stay
fp32 (autocast only changes the precision of the matmuls/convs inside the block).
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Union

import torch

from sb3_pvdr.common.errors import ConfigError

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: Union[torch.device, str]) -> bool:
    """Whether ``device`` runs bf16 matmuls natively (CPU: ``avx512_bf16`` or AMX; CUDA: ``is_bf16_supported``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)
    return False


def resolve_bf16(bf16: Union[bool, str], device: Union[torch.device, str]) -> bool:
    """``True``/``False`` as given; ``"auto"``: :func:`native_bf16` of the device.

    :raises ConfigError: any other value
    """
    if isinstance(bf16, bool):
        return bf16
    if bf16 == "auto":
        return native_bf16(device)
    raise ConfigError(f"bf16 must be true, false or 'auto', got {bf16!r}")


def bf16_autocast(enabled: bool, device: Union[torch.device, str]) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bf16 on ``device`` when ``enabled``, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


__all__ = ["BF16_CPU_FLAGS", "bf16_autocast", "cpu_flags", "native_bf16", "resolve_bf16"]
