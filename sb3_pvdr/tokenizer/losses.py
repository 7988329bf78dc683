"""Tokenizer losses: reconstruction (L1 + MSE, and a perceptual term where VGG16 weights are available) +
commitment, and an optional PatchGAN adversarial term (VQGAN, https://arxiv.org/abs/2012.09841, eq. (5)-(7):
hinge loss, adaptive weight, delayed start).

The perceptual term (``perceptual_weight > 0``, VQGAN's L_rec = |x - x^| + LPIPS) is
:class:`~sb3_pvdr.tokenizer.perceptual.PerceptualLoss`: it needs ImageNet VGG16 weights, which are never
downloaded; building the loss without them is a one-line ConfigError saying where to put them. The VGG is a
fixed metric: it is kept out of this module's ``state_dict`` (training checkpoints stay small and load either way).
"""

# b - batch, c - channels, H W - pixels

from __future__ import annotations

from collections import namedtuple
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sb3_pvdr.tokenizer.config import TokenizerConfig
from sb3_pvdr.tokenizer.model import VQOutput
from sb3_pvdr.tokenizer.perceptual import PerceptualLoss

LossBreakdown = namedtuple("LossBreakdown", ["l1", "mse", "perceptual", "commitment", "generator", "adaptive_weight"])


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix / VQGAN's ``NLayerDiscriminator``): one real/fake logit per patch.

    :param channels: width of the first layer (doubled per layer, capped at 8x)
    :param n_layers: number of stride-2 layers
    """

    def __init__(self, channels: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        dim = channels
        for n in range(1, n_layers + 1):
            dim_out = channels * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(dim, dim_out, 4, stride=stride, padding=1, bias=False), nn.BatchNorm2d(dim_out), nn.LeakyReLU(0.2)]
            dim = dim_out
        layers.append(nn.Conv2d(dim, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """``(b, 3, H, W)`` in [0, 1] -> patch logits ``(b, 1, H', W')``."""
        return self.net(images * 2.0 - 1.0)


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator hinge loss."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(rec_loss: Tensor, gen_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """VQGAN eq. (7): balance the adversarial gradient against the reconstruction gradient at the last layer."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gen_grad = torch.autograd.grad(gen_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (gen_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()


class TokenizerLoss(nn.Module):
    """Total tokenizer loss with a named breakdown, and the discriminator's loss when it is enabled.

    :param config: loss weights (``l1_weight``, ``mse_weight``, ``perceptual_weight`` with ``perceptual_vgg`` /
        ``perceptual_heads``, ``commitment_weight`` is applied by the quantizer, ``disc_weight``, ``disc_start``,
        ``disc_channels``, ``disc_layers``)
    :raises ConfigError: ``perceptual_weight > 0`` and no VGG16 weights
    """

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        self.discriminator: Optional[PatchDiscriminator] = (
            PatchDiscriminator(config.disc_channels, config.disc_layers) if config.disc_weight > 0 else None
        )
        # a tuple, not a submodule: not in state_dict, moved to the images' device on use
        self._perceptual: tuple[PerceptualLoss, ...] = (
            (PerceptualLoss.from_paths(config.perceptual_vgg, config.perceptual_heads),) if config.perceptual_weight > 0 else ()
        )

    @property
    def perceptual(self) -> Optional[PerceptualLoss]:
        """The perceptual metric, ``None`` when ``perceptual_weight`` is 0."""
        return self._perceptual[0] if self._perceptual else None

    def adversarial_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.config.disc_start

    def forward(self, images: Tensor, out: VQOutput, step: int, last_layer: Tensor) -> tuple[Tensor, LossBreakdown]:
        """Tokenizer (generator) loss.

        :param images: targets ``(b, 3, H, W)`` in [0, 1]
        :param out: the tokenizer's training output
        :param step: training step (the adversarial term starts at ``disc_start``)
        :param last_layer: the decoder's last weight, for the adaptive adversarial weight
        """
        cfg = self.config
        l1 = (out.recon - images).abs().mean()
        mse = F.mse_loss(out.recon, images)
        rec = cfg.l1_weight * l1 + cfg.mse_weight * mse
        zero = rec.new_zeros(())
        perceptual = zero
        if self.perceptual is not None:
            perceptual = self.perceptual.to(images.device)(out.recon, images).mean()
            rec = rec + cfg.perceptual_weight * perceptual
        total = rec + out.commit_loss  # commit_loss already carries commitment_weight
        generator, weight = zero, zero
        if self.adversarial_active(step):
            assert self.discriminator is not None
            generator = -self.discriminator(out.recon).mean()
            weight = adaptive_weight(rec, generator, last_layer) if torch.is_grad_enabled() else rec.new_ones(())
            total = total + cfg.disc_weight * weight * generator
        return total, LossBreakdown(l1.detach(), mse.detach(), perceptual.detach(), out.commit_loss.detach(), generator.detach(), weight)

    def discriminator_loss(self, images: Tensor, recon: Tensor) -> Tensor:
        """Hinge loss of the discriminator on real frames vs (detached) reconstructions."""
        assert self.discriminator is not None
        return hinge_d_loss(self.discriminator(images), self.discriminator(recon.detach()))
