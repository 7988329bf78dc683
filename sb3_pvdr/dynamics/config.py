"""Configuration of the visual dynamics model (paper Table 2), with named profiles.

- ``"cpu"`` (default): 64x64 frames tokenized to 8x8 grids with K=256 codes (the ``cpu`` tokenizer
  profile), sized for 2 CPU cores at both stages: dim 128, feed-forward 256, 4 heads, depths 2 / 2 / 2
  (encoder / prior / decoder), 4x4 temporal windows (a quarter of the 8x8 grid; 2x2 would mimic the
  paper's 1/16 of a frame but leaves temporal attention only 4 tokens per frame, too local for such
  shallow stacks), z grid 8x8x16. The online stage decodes N plans of l frames every few env steps, so
  the decoder's cost per token bounds the agent's steps/s (``benchmarks/planning_overhead.py``): dim 192
  and a 3-unit decoder (the earlier default) cost 3.4x the FLOPs per planned token.
- ``"paper"``: Table 2 exactly: 16x16 grid, 4x4 windows, m=2, l=6, z 16x16x32, attention dim 512,
  feed-forward 512, token embedding 1024, depths 6 / 6 / 3, 4 heads. Table 2 gives no dropout: 0.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

from sb3_pvdr.common.config import check_config_keys
from sb3_pvdr.common.errors import ConfigError

_TUPLE_FIELDS = ("grid", "window")


@dataclass
class DynamicsConfig:
    """Sizes of the visual dynamics CVAE (encoder E, prior P, decoder D) and its ST transformers.

    :param codebook_size: K, the number of tokenizer codes
    :param grid: token grid (h, w) of one frame
    :param m: number of context frames x
    :param l: number of future frames y
    :param z_dim: d_z, channels of the latent grid z of shape (h, w, d_z)
    :param dim: attention (model) dimension of every ST transformer
    :param ff_dim: hidden size of the feed-forward layers
    :param heads: attention heads (``dim`` must be divisible by it)
    :param depth_encoder: ST units (spatial attn + FF + temporal attn + FF) of the encoder E
    :param depth_prior: ST units of the prior P
    :param depth_decoder: ST units of the decoder D
    :param window: temporal-attention window (b, d) in tokens; must divide ``grid``
    :param dropout: dropout in attention and feed-forward layers
    :param token_dim: width of the token embedding table; ``None`` means ``dim``. When it differs
        from ``dim`` (paper: 1024 vs 512) the table is followed by a linear projection to ``dim``.
    :param input_corruption: in training only, the share of teacher-forced future tokens (the decoder's
        inputs y_<j, never its targets) replaced by random codes. Under plain teacher forcing the decoder
        sees the true earlier future frames and barely needs z, then pays for it when it generates
        (exposure bias); corrupted inputs make z the reliable source of the future. 0 is the paper's recipe.
    :param prior_kl: direction of the prior loss. ``"reverse"``: KL(P(.|x) || sg[E(.|x, y)]) as eq. (1) writes it;
        averaged over the futures y of one context it is minimised by a prior whose variance is the posterior's own
        (small, once z is informative), not the spread of the posterior means across futures, so prior samples are
        near-copies. ``"forward"``: KL(sg[E] || P), the usual CVAE direction, whose optimum covers that spread.
    :param frame_step: env steps between consecutive frames of a clip: pre-training clips, held-out evaluation and
        the goal probe take every ``frame_step``-th frame, so the l plan frames cover ``l * frame_step`` steps.
        1 is the paper's (its l = 6 frames cover 6 steps of small arm motion at 64 px; larger steps make the
        futures of one context differ more, issue "Shipped pre-trained models").
    :param prior_goal: the prior reads the goal's token grid as one more frame after the context, P(z | x, g)
        (pre-training: hindsight, the last frame of the clip's episode; online: the env's goal image). A deviation
        from the paper's P(z | x), made for goals that change per reset: a context-only prior cannot know where an
        unseen goal is, so its candidates (and the chosen z*) carry no goal (``evaluate_dynamics --goal-probe``).
        ``False`` is the paper's.
    :param prior_decode: weight of a decoding loss on the prior's mean: the cross-entropy of the future y under
        D(x, mu_P(x)) (teacher-forced, with the inputs ``input_corruption`` corrupts), added to the prior's loss. The
        forward KL fits mu_P to the *average* of the posterior means over the futures of one context; where those
        spread (noisy futures), that average need not be a latent the decoder turns into a likely future (hand-insert:
        the prior's mean decodes worse than z = 0, even on its own training clips). This term asks mu_P for the latent
        that decodes the futures best. It trains P (and D, unless frozen: ``train_only: [prior]``). 0 is the paper's.
    :param prior_decode_inputs: the decoder's inputs in that loss: ``"teacher"`` (the true earlier future frames,
        corrupted as in pre-training) or ``"generated"`` (free-running: its own greedy frames, as in planning and in
        the held-out gates; the gradient reaches mu_P through every frame's logits, not through the argmax). Under
        teacher forcing the true earlier frames already show the motion, so mu_P need not carry it.
    """

    codebook_size: int = 256
    grid: tuple[int, int] = (8, 8)
    m: int = 2
    l: int = 6  # noqa: E741 (the paper's name)
    z_dim: int = 16
    dim: int = 128
    ff_dim: int = 256
    heads: int = 4
    depth_encoder: int = 2
    depth_prior: int = 2
    depth_decoder: int = 2
    window: tuple[int, int] = (4, 4)
    dropout: float = 0.0
    token_dim: Optional[int] = None
    input_corruption: float = 0.0
    prior_kl: str = "reverse"
    frame_step: int = 1
    prior_goal: bool = False
    prior_decode: float = 0.0
    prior_decode_inputs: str = "teacher"

    def __post_init__(self) -> None:
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, int):
                value = (value, value)
            try:
                value = tuple(int(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(f"DynamicsConfig.{name} must be two integers (h, w), got {value!r}") from None
            if len(value) != 2 or min(value) < 1:
                raise ConfigError(f"DynamicsConfig.{name} must be two positive integers (h, w), got {value!r}")
            setattr(self, name, value)
        positive = ["codebook_size", "m", "l", "z_dim", "dim", "ff_dim", "heads", "frame_step"]
        positive += ["depth_encoder", "depth_prior", "depth_decoder"]
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"DynamicsConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.token_dim is not None and (not isinstance(self.token_dim, int) or self.token_dim < 1):
            raise ConfigError(f"DynamicsConfig.token_dim must be a positive integer or null, got {self.token_dim!r}")
        if self.dim % self.heads != 0:
            raise ConfigError(f"DynamicsConfig.dim={self.dim} must be divisible by heads={self.heads}")
        if self.grid[0] % self.window[0] or self.grid[1] % self.window[1]:
            raise ConfigError(f"DynamicsConfig.window={self.window} must divide grid={self.grid}; pick e.g. (2, 2) or (4, 4)")
        if self.prior_kl not in ("reverse", "forward"):
            raise ConfigError(f"DynamicsConfig.prior_kl must be 'reverse' (eq. (1)) or 'forward', got {self.prior_kl!r}")
        if not 0.0 <= float(self.input_corruption) < 1.0:
            raise ConfigError(f"DynamicsConfig.input_corruption must be in [0, 1), got {self.input_corruption!r}")
        if not isinstance(self.prior_decode, (int, float)) or isinstance(self.prior_decode, bool) or self.prior_decode < 0:
            raise ConfigError(f"DynamicsConfig.prior_decode must be a number >= 0, got {self.prior_decode!r}")
        if self.prior_decode_inputs not in ("teacher", "generated"):
            raise ConfigError(
                f"DynamicsConfig.prior_decode_inputs must be 'teacher' or 'generated', got {self.prior_decode_inputs!r}"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"DynamicsConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.prior_goal, bool):
            raise ConfigError(f"DynamicsConfig.prior_goal must be true or false, got {self.prior_goal!r}")

    @property
    def embed_dim(self) -> int:
        """Width of the token embedding table (``token_dim`` or ``dim``)."""
        return self.token_dim or self.dim

    @classmethod
    def profile(cls, name: str = "cpu") -> DynamicsConfig:
        """Named profile: ``"cpu"`` (default) or ``"paper"`` (Table 2)."""
        if name not in PROFILES:
            raise ConfigError(f"unknown dynamics profile {name!r}; choose one of {sorted(PROFILES)}")
        return dataclasses.replace(PROFILES[name])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DynamicsConfig:
        """Build from a plain dict (yaml/json/checkpoint); unknown keys raise :class:`ConfigError`."""
        check_config_keys(cls, data, "DynamicsConfig")
        return cls(**data)

    @classmethod
    def from_spec(cls, spec: Union[str, Path, dict[str, Any], DynamicsConfig]) -> DynamicsConfig:
        """Resolve a profile name (``"cpu"``, ``"paper"``), a yaml/json file, a dict or a config.

        A file may hold ``profile: NAME`` plus overrides of that profile's fields.
        """
        if isinstance(spec, DynamicsConfig):
            return dataclasses.replace(spec)
        if isinstance(spec, dict):
            data = dict(spec)
        elif str(spec) in PROFILES:
            return cls.profile(str(spec))
        else:
            path = Path(spec)
            if not path.is_file():
                raise ConfigError(f"dynamics config {spec!r} is neither a profile {sorted(PROFILES)} nor a file")
            text = path.read_text()
            if path.suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
            if not isinstance(data, dict):
                raise ConfigError(f"{path} must hold a mapping of DynamicsConfig fields")
        base = data.pop("profile", None)
        if base is None:
            return cls.from_dict(data)
        return cls.from_dict({**asdict(cls.profile(base)), **data})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for yaml/json; ``from_dict`` reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


PROFILES: dict[str, DynamicsConfig] = {
    "cpu": DynamicsConfig(),
    "paper": DynamicsConfig(
        codebook_size=256,
        grid=(16, 16),
        m=2,
        l=6,
        z_dim=32,
        dim=512,
        ff_dim=512,
        heads=4,
        depth_encoder=6,
        depth_prior=6,
        depth_decoder=3,
        window=(4, 4),
        dropout=0.0,
        token_dim=1024,
    ),
}

__all__ = ["PROFILES", "DynamicsConfig"]
