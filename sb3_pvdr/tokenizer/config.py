"""Configuration of the VQ frame tokenizer: model sizes, codebook options, loss weights and training
hyperparameters in one dataclass, with named profiles and strict yaml loading.

Profiles:

- ``"cpu"`` (default): 64x64 frames -> 8x8 tokens, K = 256, 2.5M parameters. A 4x4 space-to-depth
  stem (``patch_size=4``) replaces the first two strided convolutions, so every convolution runs at
  16x16 or 8x8 (widths 64, 64, 64, 128; one residual block per level, two in the decoder). Measured on
  held-out Meta-World frames (12 tasks): 28.0 dB PSNR, all 256 codes in use, after 1500 steps of 16
  frames, 28 minutes on one thread of a shared 2-core CPU. A full-resolution VQGAN layout
  (``patch_size=1``, 32 base channels, (1, 2, 2, 4)) needs 5.5 GFLOP per frame (forward + backward)
  against 2.0 here.
- ``"paper"``: Table 1 of the paper (a taming-transformers VQGAN): 128x128 frames -> 16x16 tokens,
  K = 256, code dimension 1024, channel multipliers (1, 2, 2, 4), 2 residual blocks, dropout 0.1,
  discriminator weight 0.8 from step 10000, Adam with learning rate 4.5e-6, minibatch 1600, 4e5 steps.

Reconciling Table 1 with 128 / 16 = 8: taming-transformers' ``Encoder`` has ``len(ch_mult)`` resolution
blocks ("number of downsampling blocks: 4") and downsamples between them, i.e. ``len(ch_mult) - 1 = 3``
times; so 4 blocks with multipliers (1, 2, 2, 4) give the 8x reduction. We follow the same convention:
``grid = image_size / 2 ** (len(channel_mult) - 1)``.

Table 1's "Channel in & out: in 160, out 64" is read as the base channel width (160, the width of the
first convolution) and the width of the encoder output / decoder input (``z_channels = 64``); the 1024-d
codes are reached through vector-quantize-pytorch's ``codebook_dim`` projection (64 -> 1024 -> 64).
Table 1's learning rate 4.5e-6 is taming-transformers' *base* rate, which that code multiplies by the
total batch size; we keep the table's number and leave the scaling to the user.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from sb3_pvdr.common.config import check_config_keys
from sb3_pvdr.common.errors import ConfigError


@dataclass
class TokenizerConfig:
    """Sizes and hyperparameters of :class:`sb3_pvdr.tokenizer.VQTokenizer` and its training.

    :param image_size: square frame size in pixels (frames are ``(image_size, image_size, 3)``)
    :param patch_size: space-to-depth factor before the first convolution (and depth-to-space after the
        last one), replacing the first ``log2(patch_size)`` strided downsamplings (the token grid is
        unchanged); 1 is VQGAN, 2 runs no convolution at full resolution (much cheaper, used on CPU)
    :param channels: base channel width of encoder and decoder
    :param channel_mult: width multiplier per resolution level; ``len - 1`` downsamplings
    :param num_res_blocks: residual blocks per resolution level (the decoder uses one more, as in VQGAN)
    :param mid_attention: self-attention block at the lowest resolution (VQGAN's middle block)
    :param dropout: dropout inside residual blocks
    :param z_channels: width of the encoder output and decoder input (the quantizer's input dimension)
    :param code_dim: dimension of the codebook vectors (projected from/to ``z_channels`` when different)
    :param codebook_size: number of codes K
    :param use_cosine_sim: l2-normalised codes and encoder outputs (cosine-similarity lookup)
    :param ema_decay: decay of the codebook's exponential moving average updates
    :param threshold_ema_dead_code: codes whose EMA cluster size falls below this are re-seeded from the batch
    :param kmeans_init: initialise the codebook with k-means on the first batch
    :param commitment_weight: weight of the commitment loss ||z - sg(q)||^2
    :param l1_weight: weight of the L1 reconstruction loss
    :param mse_weight: weight of the MSE reconstruction loss
    :param perceptual_weight: weight of the LPIPS-style perceptual loss on VGG16 features (VQGAN uses 1.0); it
        needs ImageNet VGG16 weights, which are never downloaded (:mod:`sb3_pvdr.tokenizer.perceptual`)
    :param perceptual_vgg: torchvision's ``vgg16`` state-dict file; ``None``: torchvision's cache
        (``<torch hub dir>/checkpoints/vgg16-397923af.pth``)
    :param perceptual_heads: LPIPS linear heads file; ``None``: the ``lpips`` package's when it is installed,
        else equal weights (a plain VGG feature distance)
    :param disc_weight: weight of the PatchGAN adversarial loss (0 disables the discriminator)
    :param disc_start: training step at which the adversarial loss switches on
    :param disc_channels: base width of the PatchGAN discriminator
    :param disc_layers: number of strided layers of the PatchGAN discriminator
    :param learning_rate: Adam learning rate (tokenizer and discriminator)
    :param adam_betas: Adam betas
    :param warmup_steps: linear learning-rate warm-up steps
    :param min_lr_ratio: the learning rate decays with a cosine to ``learning_rate * min_lr_ratio`` at ``steps``
    :param train_only: ``None`` trains the whole tokenizer; ``"decoder"`` trains only the decoder (with
        ``--init-from``): the encoder and the codebook stay frozen, so every frame keeps its tokens and the token
        datasets and dynamics models built on them stay valid while the reconstructions get sharper
    :param batch_size: frames per training step
    :param steps: total training steps
    :param log_every: steps between scalar logs
    :param eval_every: steps between held-out evaluations, image grids and checkpoints
    """

    # model
    image_size: int = 64
    patch_size: int = 4
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 1, 1, 2)
    num_res_blocks: int = 1
    mid_attention: bool = False
    dropout: float = 0.0
    z_channels: int = 64
    code_dim: int = 64
    codebook_size: int = 256
    # codebook
    use_cosine_sim: bool = False
    ema_decay: float = 0.9
    threshold_ema_dead_code: float = 2.0
    kmeans_init: bool = True
    # losses
    commitment_weight: float = 0.25
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    perceptual_weight: float = 0.0
    perceptual_vgg: Optional[str] = None
    perceptual_heads: Optional[str] = None
    disc_weight: float = 0.0
    disc_start: int = 10_000
    disc_channels: int = 64
    disc_layers: int = 3
    # optimisation
    learning_rate: float = 2e-3
    adam_betas: tuple[float, float] = (0.5, 0.9)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    train_only: Optional[str] = None
    batch_size: int = 16
    steps: int = 1500
    log_every: int = 25
    eval_every: int = 250

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def downsample_factor(self) -> int:
        """Pixels per token side: ``2 ** (len(channel_mult) - 1)`` (whatever the ``patch_size``)."""
        return 2 ** (len(self.channel_mult) - 1)

    def level_resolution(self, level: int) -> int:
        """Feature-map side at resolution level ``level`` of the encoder (0 = first)."""
        return self.image_size // max(self.patch_size, 2**level)

    def downsamples_after(self, level: int) -> bool:
        """Whether the encoder halves the resolution after ``level`` (the decoder mirrors it)."""
        return level < len(self.channel_mult) - 1 and self.level_resolution(level + 1) < self.level_resolution(level)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid ``(h, w)``."""
        side = self.image_size // self.downsample_factor
        return side, side

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible combinations."""
        if len(self.channel_mult) < 1:
            raise ConfigError("channel_mult needs at least one level, e.g. [1, 2, 2, 4]")
        if self.image_size <= 0 or self.image_size % self.downsample_factor != 0:
            raise ConfigError(
                f"image_size={self.image_size} is not divisible by the downsampling factor "
                f"{self.downsample_factor} (= 2 ** (len(channel_mult) - 1)); pick e.g. 64 or 128"
            )
        if self.patch_size < 1 or self.patch_size & (self.patch_size - 1) or self.patch_size > self.downsample_factor:
            raise ConfigError(f"patch_size={self.patch_size} must be a power of 2 and at most the downsampling factor {self.downsample_factor}")
        if not 2 <= self.codebook_size <= 65536:
            raise ConfigError(f"codebook_size={self.codebook_size} must be in [2, 65536] (tokens are stored as uint16)")
        if self.train_only not in TRAIN_ONLY:
            raise ConfigError(f"train_only={self.train_only!r} must be one of {TRAIN_ONLY} (None: the whole tokenizer)")
        if self.perceptual_weight < 0:
            raise ConfigError(f"perceptual_weight={self.perceptual_weight} must be >= 0 (0: no perceptual loss)")
        for name in ("channels", "z_channels", "code_dim", "num_res_blocks", "batch_size", "steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive")

    # ------------------------------------------------------------------ construction
    @classmethod
    def profile(cls, name: str = "cpu", **overrides: Any) -> "TokenizerConfig":
        """A named profile (``"cpu"`` or ``"paper"``), optionally with some fields overridden."""
        if name not in PROFILES:
            raise ConfigError(f"unknown tokenizer profile '{name}'; choose one of {sorted(PROFILES)}")
        return cls.from_dict({**PROFILES[name], **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TokenizerConfig":
        """Build from a plain dict; unknown keys raise :class:`ConfigError` listing the valid ones.

        A ``profile`` key selects the base profile that the other keys override.
        """
        data = dict(data)
        base = data.pop("profile", None)
        check_config_keys(cls, data, "tokenizer config")
        if base is not None:
            if base not in PROFILES:
                raise ConfigError(f"unknown tokenizer profile '{base}'; choose one of {sorted(PROFILES)}")
            data = {**PROFILES[base], **data}
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"bad tokenizer config: {exc}") from exc

    @classmethod
    def from_yaml(cls, path: Union[str, os.PathLike]) -> "TokenizerConfig":
        """Load a yaml file of config keys (optionally with ``profile: cpu|paper``)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"tokenizer config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of tokenizer config keys")
        return cls.from_dict(data)

    @classmethod
    def resolve(cls, spec: str) -> "TokenizerConfig":
        """A profile name (``cpu``, ``paper``) or a path to a yaml file."""
        if spec in PROFILES:
            return cls.profile(spec)
        if spec.endswith((".yml", ".yaml")) or os.path.exists(spec):
            return cls.from_yaml(spec)
        raise ConfigError(f"--config '{spec}' is neither a profile {sorted(PROFILES)} nor a yaml file")

    def to_dict(self) -> dict[str, Any]:
        """Plain, yaml-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def replace(self, **changes: Any) -> "TokenizerConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


TRAIN_ONLY = (None, "decoder")

PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {},
    "paper": dict(
        image_size=128,
        patch_size=1,
        channels=160,
        channel_mult=(1, 2, 2, 4),
        num_res_blocks=2,
        mid_attention=True,
        dropout=0.1,
        z_channels=64,
        code_dim=1024,
        codebook_size=256,
        commitment_weight=0.25,
        l1_weight=1.0,
        mse_weight=0.0,
        disc_weight=0.8,
        disc_start=10_000,
        learning_rate=4.5e-6,
        warmup_steps=0,
        min_lr_ratio=1.0,
        batch_size=1600,
        steps=400_000,
        log_every=100,
        eval_every=5000,
    ),
}
