"""VQ frame tokenizer: a VQGAN-like convolutional encoder/decoder around a vector-quantize-pytorch codebook.

Paper §3.2 / Appendix A.1: each frame ``X_t`` (H x W x 3) is encoded and quantized to a grid of
discrete tokens ``x_t = argmin_q ||q - Enc(X_t)||`` (h x w); the dynamics model predicts such grids, and
the decoder turns predicted (or probability-weighted, for the online stage's goal loss) codes into frames.
"""

# b - batch, c - channels, H W - pixels, h w - token grid, d - code / feature dimension, k - codebook size

from __future__ import annotations

import os
from collections import namedtuple
from contextlib import contextmanager
from typing import Iterator, Union

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from vector_quantize_pytorch import VectorQuantize

from sb3_pvdr.common.checkpoint import load_checkpoint, save_checkpoint
from sb3_pvdr.common.errors import CheckpointError, ConfigError, DataError
from sb3_pvdr.tokenizer.config import TokenizerConfig

CHECKPOINT_KIND = "vq_tokenizer"

VQOutput = namedtuple("VQOutput", ["recon", "indices", "commit_loss"])


def Normalize(channels: int) -> nn.GroupNorm:
    """GroupNorm as in VQGAN (32 groups, or fewer for narrow layers)."""
    groups = 32 if channels % 32 == 0 else max(g for g in (16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block: norm -> SiLU -> conv, twice, with a 1x1 shortcut on width change."""

    def __init__(self, dim_in: int, dim_out: int, dropout: float = 0.0):
        super().__init__()
        self.block = nn.Sequential(
            Normalize(dim_in),
            nn.SiLU(),
            nn.Conv2d(dim_in, dim_out, 3, padding=1),
            Normalize(dim_out),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(dim_out, dim_out, 3, padding=1),
        )
        self.shortcut = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map (VQGAN's middle block)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = Normalize(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.to_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=1)
        q, k, v = (rearrange(t, "b c h w -> b 1 (h w) c") for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        out = rearrange(out, "b 1 (h w) c -> b c h w", h=height, w=width)
        return x + self.to_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution (asymmetric padding as in VQGAN)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid_block(dim: int, attention: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [ResBlock(dim, dim, dropout)]
    if attention:
        layers += [AttnBlock(dim), ResBlock(dim, dim, dropout)]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """``(b, 3, H, W)`` in [-1, 1] -> ``(b, z_channels, h, w)``; downsamples between resolution levels."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths = [config.channels * m for m in config.channel_mult]
        # patch_size > 1: space-to-depth stem standing in for the first log2(patch_size) downsamplings,
        # so that no convolution runs at full resolution (CPU profile)
        layers: list[nn.Module] = [nn.PixelUnshuffle(config.patch_size)] if config.patch_size > 1 else []
        layers.append(nn.Conv2d(3 * config.patch_size**2, config.channels, 3, padding=1))
        dim = config.channels
        for level, width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                layers.append(ResBlock(dim, width, config.dropout))
                dim = width
            if config.downsamples_after(level):
                layers.append(Downsample(dim))
        layers += [
            _mid_block(dim, config.mid_attention, config.dropout),
            Normalize(dim),
            nn.SiLU(),
            nn.Conv2d(dim, config.z_channels, 3, padding=1),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """``(b, z_channels, h, w)`` -> ``(b, 3, H, W)`` (unbounded; ~[-1, 1]); mirror of the encoder."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths = [config.channels * m for m in config.channel_mult]
        dim = widths[-1]
        layers: list[nn.Module] = [
            nn.Conv2d(config.z_channels, dim, 3, padding=1),
            _mid_block(dim, config.mid_attention, config.dropout),
        ]
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(config.num_res_blocks + 1):
                layers.append(ResBlock(dim, width, config.dropout))
                dim = width
            if level > 0 and config.downsamples_after(level - 1):
                layers.append(Upsample(dim))
        self.net = nn.Sequential(*layers)
        self.to_rgb = nn.Sequential(
            Normalize(dim),
            nn.SiLU(),
            nn.Conv2d(dim, 3 * config.patch_size**2, 3, padding=1),
            nn.PixelShuffle(config.patch_size) if config.patch_size > 1 else nn.Identity(),
        )

    @property
    def last_layer(self) -> nn.Parameter:
        """Weight of the output convolution (for VQGAN's adaptive adversarial weight)."""
        return self.to_rgb[2].weight

    def forward(self, z: Tensor) -> Tensor:
        return self.to_rgb(self.net(z))


def _straight_through_clamp(x: Tensor) -> Tensor:
    """Values clamped to [0, 1], gradient of the identity (saturated pixels still pass gradient)."""
    return x + (x.clamp(0.0, 1.0) - x).detach()


class VQTokenizer(nn.Module):
    """VQ frame tokenizer (VQGAN-like encoder/decoder, EMA codebook from vector-quantize-pytorch).

    Paper: "Pre-trained Visual Dynamics Representations for Efficient Policy Learning" (ECCV 2024),
    §3.2 and Appendix A.1 / Table 1 (which used a VQGAN, https://arxiv.org/abs/2012.09841).

    :param config: sizes and hyperparameters (:class:`TokenizerConfig`); ``TokenizerConfig()`` is the
        ``"cpu"`` profile (64x64 frames -> 8x8 tokens, K = 256)
    """

    def __init__(self, config: TokenizerConfig | None = None):
        super().__init__()
        self.config = config if config is not None else TokenizerConfig()
        cfg = self.config
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantizer = VectorQuantize(
            dim=cfg.z_channels,
            codebook_size=cfg.codebook_size,
            codebook_dim=cfg.code_dim,
            decay=cfg.ema_decay,
            commitment_weight=cfg.commitment_weight,
            kmeans_init=cfg.kmeans_init,
            threshold_ema_dead_code=cfg.threshold_ema_dead_code,
            use_cosine_sim=cfg.use_cosine_sim,
        )
        # conv weights in the layout encode/decode feed them (as training always had them): a loaded checkpoint's
        # weights keep it (load_state_dict copies into these tensors). NCHW weights with channels-last frames cost
        # the planning wrapper 10.4 instead of 8.0 ms per frame encode (one thread, AVX2 EPYC; same tokens)
        self.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ properties
    @property
    def image_size(self) -> int:
        """Square frame size in pixels."""
        return self.config.image_size

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid ``(h, w)``."""
        return self.config.grid_size

    @property
    def codebook_size(self) -> int:
        """Number of codes K."""
        return self.config.codebook_size

    @property
    def codebook(self) -> Tensor:
        """Codebook embeddings ``(k, d_code)``."""
        return self.quantizer.codebook

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ training forward
    def forward(self, images: Tensor, update_codes: bool = True) -> VQOutput:
        """Training forward pass.

        :param images: float ``(b, 3, H, W)`` in [0, 1]
        :param update_codes: ``False`` runs the encoder and the quantizer without gradients and without codebook
            EMA / dead-code updates (decoder-only training: every frame keeps its tokens)
        :return: ``VQOutput(recon (b, 3, H, W) unclamped, indices (b, h, w), commit_loss)``
        """
        was_training = self.quantizer.training
        self.quantizer.train(was_training and update_codes)  # eval mode: no codebook EMA / dead-code updates
        with torch.set_grad_enabled(torch.is_grad_enabled() and update_codes):
            z = self.encoder(images * 2.0 - 1.0)
            height, width = z.shape[-2:]
            quantized, indices, commit_loss = self.quantizer(rearrange(z, "b d h w -> b (h w) d"))
        self.quantizer.train(was_training)
        if not update_codes:
            commit_loss = quantized.new_zeros(())
        quantized = rearrange(quantized, "b (h w) d -> b d h w", h=height, w=width)
        recon = (self.decoder(quantized) + 1.0) / 2.0
        indices = rearrange(indices, "b (h w) -> b h w", h=height, w=width)
        return VQOutput(recon, indices, commit_loss.sum())

    # ------------------------------------------------------------------ inference API
    def _check_frames(self, frames: Union[Tensor, np.ndarray]) -> Tensor:
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        if not isinstance(frames, Tensor):
            raise DataError(f"encode expects a uint8 array or tensor (B, H, W, 3), got {type(frames).__name__}")
        expected = (self.image_size, self.image_size, 3)
        if frames.ndim != 4 or tuple(frames.shape[1:]) != expected:
            raise DataError(
                f"encode expects frames of shape (B, {expected[0]}, {expected[1]}, 3), got {tuple(frames.shape)}; "
                f"resize the frames to {self.image_size}x{self.image_size} (the tokenizer's image_size)"
            )
        if frames.dtype != torch.uint8:
            raise DataError(f"encode expects uint8 frames (0..255), got dtype {frames.dtype}")
        return frames

    @contextmanager
    def _inference_mode(self) -> Iterator[None]:
        """Eval mode (no dropout, no codebook EMA / dead-code updates) for the duration, then restore.

        A tokenizer already in eval mode is left alone: ``.eval()``/``.train()`` walk every submodule, which
        is measurable when the planning wrapper encodes one frame per env step.
        """
        was_training = self.training
        if was_training:
            self.eval()
        try:
            yield
        finally:
            if was_training:
                self.train()

    @torch.no_grad()
    def encode(self, frames: Union[Tensor, np.ndarray]) -> Tensor:
        """Frames to token grids.

        With ``kmeans_init``, the codebook is all zeros until the first forward pass initialises it
        (from that batch): train before encoding anything meaningful.

        :param frames: uint8 ``(b, H, W, 3)`` (tensor or ndarray), ``H = W = image_size``
        :return: LongTensor ``(b, h, w)`` of code indices in ``[0, K)``
        """
        frames = self._check_frames(frames).to(self.device)
        images = rearrange(frames.float() / 255.0, "b H W c -> b c H W").contiguous(memory_format=torch.channels_last)
        with self._inference_mode():
            z = self.encoder(images * 2.0 - 1.0)
            height, width = z.shape[-2:]
            _, indices, _ = self.quantizer(rearrange(z, "b d h w -> b (h w) d"))
        return rearrange(indices, "b (h w) -> b h w", h=height, w=width).long()

    def _decode_codes(self, codes: Tensor) -> Tensor:
        """``(b, h, w, d_code)`` codebook-space embeddings -> float frames ``(b, H, W, 3)``."""
        z = self.quantizer.project_out(codes)
        z = rearrange(z, "b h w d -> b d h w").contiguous(memory_format=torch.channels_last)
        out = (self.decoder(z) + 1.0) / 2.0
        return rearrange(_straight_through_clamp(out), "b c H W -> b H W c")

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """Token grids to frames (no gradient: use :meth:`decode_soft` for a differentiable decoding).

        :param tokens: LongTensor ``(b, h, w)`` of code indices
        :return: float ``(b, H, W, 3)`` in [0, 1]
        """
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != self.grid_size:
            raise DataError(f"decode expects tokens of shape (B, {self.grid_size[0]}, {self.grid_size[1]}), got {tuple(tokens.shape)}")
        tokens = tokens.to(self.device).long()
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.codebook_size):
            raise DataError(f"token indices must lie in [0, {self.codebook_size}), got [{int(tokens.min())}, {int(tokens.max())}]")
        with self._inference_mode():
            return self._decode_codes(self.codebook[tokens])

    def decode_soft(self, probs: Tensor) -> Tensor:
        """Differentiable decoding of a distribution over codes (the online stage's goal loss needs it).

        The decoder input at each grid cell is the probability-weighted mean of the codebook embeddings;
        with one-hot ``probs`` this equals :meth:`decode`. Gradients flow to ``probs`` (and to the decoder).

        :param probs: float ``(b, h, w, k)``, e.g. ``logits.softmax(-1)``
        :return: float ``(b, H, W, 3)`` in [0, 1] (clamped with a straight-through gradient)
        """
        if probs.ndim != 4 or tuple(probs.shape[1:]) != (*self.grid_size, self.codebook_size):
            raise DataError(
                f"decode_soft expects probs of shape (B, {self.grid_size[0]}, {self.grid_size[1]}, {self.codebook_size}), "
                f"got {tuple(probs.shape)}"
            )
        with self._inference_mode():
            codes = torch.einsum("b h w k, k d -> b h w d", probs.to(self.codebook.dtype), self.codebook)
            return self._decode_codes(codes)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Union[str, os.PathLike], **extra: object) -> None:
        """Save weights and config atomically (kind ``"vq_tokenizer"``)."""
        save_checkpoint(path, CHECKPOINT_KIND, config=self.config.to_dict(), state_dict=self.state_dict(), **extra)

    @classmethod
    def from_checkpoint_data(cls, data: dict, source: object = "checkpoint") -> "VQTokenizer":
        """Build a tokenizer from a loaded checkpoint dict holding ``config`` and ``state_dict``."""
        try:
            config = TokenizerConfig.from_dict(data["config"])
        except (KeyError, ConfigError) as exc:
            raise CheckpointError(f"{source}: bad tokenizer config in checkpoint: {exc}") from exc
        model = cls(config)
        try:
            model.load_state_dict(data["state_dict"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{source}: weights do not match the stored config: {str(exc)[:200]}") from exc
        return model

    @classmethod
    def load(cls, path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> "VQTokenizer":
        """Load a tokenizer saved with :meth:`save` (in eval mode).

        :raises CheckpointError: missing, corrupt, or another kind of checkpoint
        """
        data = load_checkpoint(path, CHECKPOINT_KIND, map_location=map_location)
        model = cls.from_checkpoint_data(data, source=path)
        return model.eval()
