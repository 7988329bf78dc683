"""Pre-training hyperparameters: :class:`PretrainConfig` (profiles ``cpu`` and ``paper``, yaml files)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from sb3_pvdr.common.config import check_config_keys
from sb3_pvdr.common.errors import ConfigError

# Keys a --resume run takes from its own command line (everything else comes from the saved run's config).
SCHEDULE_KEYS = ("steps", "log_every", "save_every", "image_every", "val_every")


@dataclass
class PretrainConfig:
    """Pre-training hyperparameters; the model's own sizes come from ``DynamicsConfig.profile(profile)``
    updated with ``model`` (a dict of ``DynamicsConfig`` fields).

    A yaml file given to ``--config`` holds these keys (all optional), e.g.::

        profile: cpu
        model: {dim: 256, ff_dim: 512}
        batch_size: 32
        lr: 3.0e-4
    """

    profile: str = "cpu"
    """name of the ``DynamicsConfig`` profile the model starts from (``cpu`` or ``paper``)"""
    model: dict[str, Any] = field(default_factory=dict)
    """overrides of ``DynamicsConfig`` fields (e.g. ``grid``, ``codebook_size`` for another tokenizer)"""
    steps: int = 10_000
    """total number of optimizer steps (``--resume`` continues up to this count)"""
    batch_size: int = 16
    """clips per optimizer step and per process (DDP multiplies it by the number of processes)"""
    lr: float = 3e-4
    """Adam learning rate (the paper uses 1e-4 with minibatch 1025)"""
    weight_decay: float = 0.0
    """AdamW weight decay (0: Adam, as in the paper)"""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas"""
    warmup_steps: int = 100
    """linear learning-rate warm-up, then constant (CPU runs are short: the demo's is 600 steps)"""
    grad_clip: float = 1.0
    """max gradient norm (0 disables clipping)"""
    lambda_1: float = 1e-3
    """weight of the information bottleneck KL(q || N(0, I)) in eq. (1)"""
    bf16: bool = False
    """bfloat16 autocast for forward and backward (weights and optimizer stay fp32)"""
    num_workers: int = 0
    """DataLoader worker processes (token clips are memmap slices: 0 is usually fastest on CPU)"""
    seed: int = 0
    """seed of parameters, sampling of z and data order"""
    log_every: int = 50
    """steps between scalar logs"""
    save_every: int = 500
    """steps between checkpoints (``last.pt`` and ``dynamics.pt``)"""
    image_every: int = 1000
    """steps between tensorboard image grids (0 disables them)"""
    val_every: int = 1000
    """steps between validation passes when ``--val-data`` is given"""
    val_batches: int = 8
    """batches per validation pass"""
    init_from: Optional[str] = None
    """a ``dynamics.pt`` whose weights start the run (its model config, updated with ``model``); ``None``: random"""
    train_only: Optional[list[str]] = None
    """parameter groups trained (``encoder``, ``prior``, ``decoder``); the others stay frozen. ``None``: all. E.g.
    ``[prior]`` with ``init_from`` re-fits only the prior of a pre-trained model (its loss trains nothing else)"""

    @classmethod
    def profile_config(cls, name: str) -> PretrainConfig:
        """Named training profiles: ``cpu`` (default, 2 CPU cores) and ``paper`` (Table 2)."""
        if name == "cpu":
            return cls(profile="cpu")
        if name == "paper":
            # Table 2: minibatch 1025 (over 8 GPUs in the paper), Adam lr 1e-4, 3.5e5 steps.
            return cls(profile="paper", steps=350_000, batch_size=128, lr=1e-4, warmup_steps=2000, bf16=True,
                       num_workers=4, log_every=100, save_every=2000, image_every=5000, val_every=5000)
        raise ConfigError(f"unknown pre-training profile '{name}': use 'cpu', 'paper' or a .yml file")

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Optional[PretrainConfig] = None) -> PretrainConfig:
        """Build a config from ``data`` on top of ``base`` (the profile named by ``data['profile']`` by default).

        :raises ConfigError: on unknown keys (the message lists the valid ones)
        """
        check_config_keys(cls, data, "pre-training config")
        if base is None:
            base = cls.profile_config(str(data.get("profile", "cpu")))
        merged = {**asdict(base), **data}
        merged["betas"] = tuple(merged["betas"])
        merged["model"] = dict(merged["model"] or {})
        cfg = cls(**merged)
        cfg.check_ranges()
        return cfg

    def check_ranges(self) -> None:
        """:raises ConfigError: a count or rate out of its range (e.g. ``batch_size: 0`` in a yaml file)."""
        groups = {"encoder", "prior", "decoder"}
        if self.train_only is not None and (not self.train_only or not set(self.train_only) <= groups):
            raise ConfigError(f"pre-training config: train_only must list some of {sorted(groups)}, got {self.train_only!r}")
        if self.init_from is not None and not Path(os.path.expanduser(self.init_from)).is_file():
            raise ConfigError(f"pre-training config: init_from {self.init_from} is not a file")
        positive = ("steps", "batch_size", "log_every", "save_every", "val_batches", "lr")
        non_negative = ("warmup_steps", "num_workers", "image_every", "val_every", "grad_clip", "weight_decay", "lambda_1")
        for key in positive + non_negative:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 if key in positive else value >= 0):
                raise ConfigError(f"pre-training config: {key} must be a {'positive' if key in positive else 'non-negative'} "
                                  f"number, got {value!r}")

    @classmethod
    def load(cls, spec: str) -> PretrainConfig:
        """``spec`` is a profile name (``cpu``, ``paper``) or a yaml file."""
        if spec in ("cpu", "paper"):
            return cls.profile_config(spec)
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"--config {spec}: neither a profile (cpu, paper) nor an existing .yml file")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
        return cls.from_dict(data)

    def dynamics_config(self) -> Any:
        """The model's ``DynamicsConfig``: the profile updated with ``self.model``."""
        from sb3_pvdr.dynamics import DynamicsConfig

        base = asdict(DynamicsConfig.profile(self.profile))
        return DynamicsConfig.from_dict({**base, **self.model})


__all__ = ["SCHEDULE_KEYS", "PretrainConfig"]
