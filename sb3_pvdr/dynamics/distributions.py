"""Diagonal Gaussian over the latent grid z: reparameterised samples and closed-form KL (eq. (1))."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

# logvar is clamped to this range (as in taming-transformers / latent diffusion) so that exp() can
# neither overflow nor collapse the variance to exactly 0 early in training.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


class DiagonalGaussian:
    """Independent Gaussians N(mean, exp(logvar)), one per element of ``mean`` (e.g. ``(B, h, w, d_z)``).

    Statistics are kept in float32 even when produced under bf16 autocast, so KL terms stay accurate.

    :param mean: means
    :param logvar: log-variances, same shape as ``mean``; clamped to [-30, 20]
    """

    def __init__(self, mean: Tensor, logvar: Tensor) -> None:
        if mean.shape != logvar.shape:
            raise ValueError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} must have the same shape")
        self.mean = mean.float()
        self.logvar = logvar.float().clamp(LOGVAR_MIN, LOGVAR_MAX)

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> Tensor:
        return torch.exp(self.logvar)

    @property
    def shape(self) -> torch.Size:
        return self.mean.shape

    def sample(self, generator: Optional[torch.Generator] = None) -> Tensor:
        """Reparameterised sample ``mean + std * eps`` (gradients flow to mean and logvar)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> Tensor:
        """The most probable value, i.e. the mean."""
        return self.mean

    def detach(self) -> DiagonalGaussian:
        """The same distribution cut from the graph (the paper's stop-gradient ``sg[.]``)."""
        return DiagonalGaussian(self.mean.detach(), self.logvar.detach())

    def kl(self, other: Optional[DiagonalGaussian] = None) -> Tensor:
        """KL(self || other) in closed form, per element (no reduction); ``other=None`` means N(0, I).

        KL = 0.5 * (logvar_o - logvar_s + (var_s + (mean_s - mean_o)^2) / var_o - 1)
        """
        if other is None:
            return 0.5 * (self.mean.pow(2) + self.var - 1.0 - self.logvar)
        return 0.5 * (
            other.logvar - self.logvar + (self.var + (self.mean - other.mean).pow(2)) * torch.exp(-other.logvar) - 1.0
        )

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of ``value``, per element."""
        return -0.5 * ((value - self.mean).pow(2) * torch.exp(-self.logvar) + self.logvar + math.log(2 * math.pi))

    def __repr__(self) -> str:
        return f"DiagonalGaussian(shape={tuple(self.mean.shape)})"


__all__ = ["DiagonalGaussian", "LOGVAR_MAX", "LOGVAR_MIN"]
