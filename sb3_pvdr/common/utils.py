"""Small helpers shared by the CLIs."""

from __future__ import annotations

import torch


def get_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU (SB3's convention)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
