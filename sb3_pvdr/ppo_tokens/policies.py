"""Policy of the paper's PPO baseline: PVDR's ST transformer over [goal tokens, context tokens]."""

from __future__ import annotations

from typing import Any, Optional

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from sb3_pvdr.pvdr.extractor import STTokenFeaturesExtractor
from sb3_pvdr.pvdr.policies import PVDRPolicy

# b - batch, t - frames (goal + m context frames), h w - token grid, d - feature dimension


class TokenGoalFeaturesExtractor(STTokenFeaturesExtractor):
    """The action alignment module's transformer (:class:`~sb3_pvdr.pvdr.extractor.PVDRFeaturesExtractor`:
    same sizes, same pooling) with the goal's token grid where PVDR puts the z* prompt.

    :param observation_space: ``Dict(context_tokens (m, h, w), goal_tokens (1, h, w))`` (:class:`TokenGoalWrapper`)
    :param dim: feature dimension of the transformer
    :param depth: ST units (paper: 3)
    :param heads: attention heads (paper: 4)
    :param ff_dim: feed-forward hidden size
    :param window: temporal-attention window; ``None``: 4x4 when it divides the grid, else the grid
    :param dropout: dropout in attention and feed-forward layers
    :param pool: ``"mean"`` (one vector per frame) or ``"spatial"`` (the last frame's grid kept)
    :param arch: ``"transformer"`` or ``"cnn"`` (:class:`~sb3_pvdr.pvdr.extractor.STTokenFeaturesExtractor`)
    :param codebook: ``None`` or a tokenizer whose frozen codebook embeds the tokens
    :param cnn_features: output size of the ``"cnn"`` trunk
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
        arch: str = "transformer",
        codebook: Optional[str] = None,
        cnn_features: int = 256,
    ) -> None:
        super().__init__(observation_space, "goal_tokens", dim, depth, heads, ff_dim, window, dropout, pool, arch, codebook, cnn_features)

    def prompt(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        return self.embed(observations["goal_tokens"].long())  # (b, 1, h, w, d)


class TokenGoalPolicy(PVDRPolicy):
    """PVDR's actor-critic (shared transformer trunk, one last linear layer each) on goal + context tokens."""

    def __init__(self, *args: Any, features_extractor_class: type[BaseFeaturesExtractor] = TokenGoalFeaturesExtractor, **kwargs: Any) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


__all__ = ["TokenGoalFeaturesExtractor", "TokenGoalPolicy"]
