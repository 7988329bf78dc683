"""Features extractor of the action alignment module Pi(a | z*, x) and its critic (paper Fig. 8, right).

An ST transformer over the grid of prompts z* followed by the context token grids, like the decoder's main
network (A.1: "the visual dynamics decoder, the action alignment module, and the critic network share the main
network ... with distinct post-processing forms of the hidden states"). The hidden states are mean-pooled
over each frame's grid and concatenated, so the features keep one vector per frame: ``(b, (1 + m) * dim)``.
Temporal attention is bidirectional here (nothing is generated, so there is nothing to mask).
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

# b - batch, t - frames (z prompt + m context frames), h w - token grid, d - feature dimension, z - d_z


def _default_window(grid: tuple[int, int]) -> tuple[int, int]:
    """4x4 windows (Table 2) when they divide the grid, else the whole grid."""
    return tuple(4 if g % 4 == 0 else g for g in grid)  # type: ignore[return-value]


class PVDRFeaturesExtractor(BaseFeaturesExtractor):
    """ST transformer over [z* prompt grid, x_{t-m+1}, ..., x_t] token grids.

    :param observation_space: the planning wrapper's ``Dict(context_tokens (m, h, w), z_star (h, w, d_z))``
    :param dim: feature dimension of the transformer
    :param depth: ST units (paper: 3)
    :param heads: attention heads (paper: 4)
    :param ff_dim: feed-forward hidden size
    :param window: temporal-attention window (p, q); ``None``: 4x4 when it divides the grid, else the grid
    :param dropout: dropout in attention and feed-forward layers
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
    ) -> None:
        if not isinstance(observation_space, spaces.Dict) or not {"context_tokens", "z_star"} <= set(observation_space.spaces):
            raise ConfigError(f"PVDRFeaturesExtractor needs Dict(context_tokens, z_star) observations, got {observation_space}")
        m, h, w = observation_space["context_tokens"].shape
        super().__init__(observation_space, features_dim=(m + 1) * dim)
        codebook_size = int(observation_space["context_tokens"].high.max()) + 1
        z_dim = observation_space["z_star"].shape[-1]
        self.embed = nn.Embedding(codebook_size, dim)
        self.z_proj = nn.Linear(z_dim, dim)
        self.pos = STPositionalEmbedding(dim, m + 1, (h, w))
        window = tuple(window) if window is not None else _default_window((h, w))
        self.transformer = STTransformer(dim, depth, heads, ff_dim, window, causal=False, dropout=dropout)

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        tokens = observations["context_tokens"].long()  # SB3 hands Box observations over as float
        prompt = rearrange(self.z_proj(observations["z_star"]), "b h w d -> b 1 h w d")
        frames = th.cat((prompt, self.embed(tokens)), dim=1)
        hidden = self.transformer(self.pos(frames))
        return reduce(hidden, "b t h w d -> b (t d)", "mean")


__all__ = ["PVDRFeaturesExtractor"]
