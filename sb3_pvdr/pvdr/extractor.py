"""Features extractor of the action alignment module Pi(a | z*, x) and its critic (paper Fig. 8, right).

An ST transformer over the grid of prompts z* followed by the context token grids, like the decoder's main
network (A.1: "the visual dynamics decoder, the action alignment module, and the critic network share the main
network ... with distinct post-processing forms of the hidden states"). Temporal attention is bidirectional here
(nothing is generated, so there is nothing to mask). How the hidden states become features (``pool``):

- ``"mean"``: each frame's grid mean-pooled, one vector per frame: ``(b, (1 + m) * dim)``. Where things are in
  the frame reaches the features only through what attention mixed into the mean (a review measured that swapping
  two token cells changes the features by 0.3% at initialisation, against 8.4% for NatureCNN).
- ``"spatial"``: the last context frame's grid kept cell by cell (positions intact), the other frames mean-pooled:
  ``(b, m * dim + h * w * dim)``.

The paper's baseline PPO on tokens (:mod:`sb3_pvdr.ppo_tokens`) uses the same trunk with the goal's token grid in
the prompt's place (:class:`STTokenFeaturesExtractor` is the shared part).
"""

from __future__ import annotations

from typing import Optional

import torch as th
from einops import rearrange, reduce
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.dynamics import STPositionalEmbedding, STTransformer

# b - batch, t - frames (prompt + m context frames), h w - token grid, d - feature dimension, z - d_z

POOLS = ("mean", "spatial")


def _default_window(grid: tuple[int, int]) -> tuple[int, int]:
    """4x4 windows (Table 2) when they divide the grid, else the whole grid."""
    return tuple(4 if g % 4 == 0 else g for g in grid)  # type: ignore[return-value]


class STTokenFeaturesExtractor(BaseFeaturesExtractor):
    """ST transformer over ``[prompt grid, x_{t-m+1}, ..., x_t]``; subclasses say what the prompt grid is.

    :param observation_space: a ``Dict`` with ``context_tokens (m, h, w)`` and the prompt's key
    :param prompt_key: the observation key of the prompt (checked to be present)
    :param dim: feature dimension of the transformer
    :param depth: ST units (paper: 3)
    :param heads: attention heads (paper: 4)
    :param ff_dim: feed-forward hidden size
    :param window: temporal-attention window (p, q); ``None``: 4x4 when it divides the grid, else the grid
    :param dropout: dropout in attention and feed-forward layers
    :param pool: ``"mean"`` or ``"spatial"`` (module docstring)
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        prompt_key: str,
        dim: int = 64,
        depth: int = 3,
        heads: int = 4,
        ff_dim: int = 128,
        window: Optional[tuple[int, int]] = None,
        dropout: float = 0.0,
        pool: str = "mean",
    ) -> None:
        name = type(self).__name__
        if not isinstance(observation_space, spaces.Dict) or not {"context_tokens", prompt_key} <= set(observation_space.spaces):
            raise ConfigError(f"{name} needs Dict(context_tokens, {prompt_key}) observations, got {observation_space}")
        if pool not in POOLS:
            raise ConfigError(f"{name}: pool must be one of {POOLS}, got {pool!r}")
        m, h, w = observation_space["context_tokens"].shape
        features = (m + 1) * dim if pool == "mean" else m * dim + h * w * dim
        super().__init__(observation_space, features_dim=features)
        self.pool = pool
        self.embed = nn.Embedding(int(observation_space["context_tokens"].high.max()) + 1, dim)
        self.pos = STPositionalEmbedding(dim, m + 1, (h, w))
        window = tuple(window) if window is not None else _default_window((h, w))
        self.transformer = STTransformer(dim, depth, heads, ff_dim, window, causal=False, dropout=dropout)

    def prompt(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        """The prompt frame ``(b, 1, h, w, d)``."""
        raise NotImplementedError

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        tokens = observations["context_tokens"].long()  # SB3 hands Box observations over as float
        frames = th.cat((self.prompt(observations), self.embed(tokens)), dim=1)
        hidden = self.transformer(self.pos(frames))  # (b, 1 + m, h, w, d)
        if self.pool == "mean":
            return reduce(hidden, "b t h w d -> b (t d)", "mean")
        pooled = reduce(hidden[:, :-1], "b t h w d -> b (t d)", "mean")
        return th.cat((pooled, rearrange(hidden[:, -1], "b h w d -> b (h w d)")), dim=1)


class PVDRFeaturesExtractor(STTokenFeaturesExtractor):
    """ST transformer over [z* prompt grid, x_{t-m+1}, ..., x_t] token grids.

    :param observation_space: the planning wrapper's ``Dict(context_tokens (m, h, w), z_star (h, w, d_z))``
    :param dim: feature dimension of the transformer
    :param depth: ST units (paper: 3)
    :param heads: attention heads (paper: 4)
    :param ff_dim: feed-forward hidden size
    :param window: temporal-attention window (p, q); ``None``: 4x4 when it divides the grid, else the grid
    :param dropout: dropout in attention and feed-forward layers
    :param pool: ``"mean"`` (one vector per frame) or ``"spatial"`` (the last frame's grid kept)
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        dim: int = 64,
        depth: int = 3,
        heads: int = 4,
        ff_dim: int = 128,
        window: Optional[tuple[int, int]] = None,
        dropout: float = 0.0,
        pool: str = "mean",
    ) -> None:
        super().__init__(observation_space, "z_star", dim, depth, heads, ff_dim, window, dropout, pool)
        self.z_proj = nn.Linear(observation_space["z_star"].shape[-1], dim)

    def prompt(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        return rearrange(self.z_proj(observations["z_star"]), "b h w d -> b 1 h w d")


__all__ = ["POOLS", "PVDRFeaturesExtractor", "STTokenFeaturesExtractor"]
