"""Policy of the paper's PPO baseline: PVDR's ST transformer over [goal tokens, context tokens]."""

from __future__ import annotations

from typing import Any, Optional

import torch as th
from einops import reduce
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.dynamics import STPositionalEmbedding, STTransformer
from sb3_pvdr.pvdr.extractor import _default_window
from sb3_pvdr.pvdr.policies import PVDRPolicy

# b - batch, t - frames (goal + m context frames), h w - token grid, d - feature dimension


class TokenGoalFeaturesExtractor(BaseFeaturesExtractor):
    """The action alignment module's transformer (:class:`~sb3_pvdr.pvdr.extractor.PVDRFeaturesExtractor`:
    same sizes, same per-frame mean pooling) with the goal's token grid where PVDR puts the z* prompt.

    :param observation_space: ``Dict(context_tokens (m, h, w), goal_tokens (1, h, w))`` (:class:`TokenGoalWrapper`)
    :param dim: feature dimension of the transformer
    :param depth: ST units (paper: 3)
    :param heads: attention heads (paper: 4)
    :param ff_dim: feed-forward hidden size
    :param window: temporal-attention window; ``None``: 4x4 when it divides the grid, else the grid
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
        if not isinstance(observation_space, spaces.Dict) or not {"context_tokens", "goal_tokens"} <= set(observation_space.spaces):
            raise ConfigError(f"TokenGoalFeaturesExtractor needs Dict(context_tokens, goal_tokens) observations, got {observation_space}")
        m, h, w = observation_space["context_tokens"].shape
        super().__init__(observation_space, features_dim=(m + 1) * dim)
        self.embed = nn.Embedding(int(observation_space["context_tokens"].high.max()) + 1, dim)
        self.pos = STPositionalEmbedding(dim, m + 1, (h, w))
        window = tuple(window) if window is not None else _default_window((h, w))
        self.transformer = STTransformer(dim, depth, heads, ff_dim, window, causal=False, dropout=dropout)

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        # SB3 hands Box observations over as float: back to ids
        tokens = th.cat((observations["goal_tokens"], observations["context_tokens"]), dim=1).long()  # (b, 1 + m, h, w)
        hidden = self.transformer(self.pos(self.embed(tokens)))
        return reduce(hidden, "b t h w d -> b (t d)", "mean")


class TokenGoalPolicy(PVDRPolicy):
    """PVDR's actor-critic (shared transformer trunk, one last linear layer each) on goal + context tokens."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = TokenGoalFeaturesExtractor, **kwargs: Any) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


__all__ = ["TokenGoalFeaturesExtractor", "TokenGoalPolicy"]
