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

from typing import Any, Optional

import torch as th
from einops import rearrange, reduce
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.dynamics import STPositionalEmbedding, STTransformer

# b - batch, t - frames (prompt + m context frames), h w - token grid, d - feature dimension, z - d_z

POOLS = ("mean", "spatial")
ARCHS = ("transformer", "cnn")


class TokenEmbedding(nn.Module):
    """Token ids -> vectors: a fresh ``nn.Embedding``, or a frozen tokenizer codebook followed by a learned linear map.

    The codebook's vectors are what the tokenizer's decoder turns into pixels, so codes of similar image patches
    start close together; a fresh table starts every code equally far from every other.

    :param num_tokens: vocabulary size (the codebook size)
    :param dim: output dimension
    :param codebook: ``None`` (learned table), or a ``(num_tokens, d_code)`` tensor to freeze
    """

    def __init__(self, num_tokens: int, dim: int, codebook: Optional[th.Tensor] = None) -> None:
        super().__init__()
        if codebook is None:
            self.table = nn.Embedding(num_tokens, dim)
            self.proj = None
        else:
            if codebook.shape[0] != num_tokens:
                raise ConfigError(f"codebook has {codebook.shape[0]} codes but the observations use {num_tokens}")
            codebook = codebook.detach().float()
            codebook = (codebook - codebook.mean(0)) / codebook.std(0).clamp_min(1e-6)  # per-dim standardised
            self.register_buffer("codebook", codebook)
            self.proj = nn.Linear(codebook.shape[1], dim)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # policies saved before this module existed held a bare nn.Embedding here: ``<prefix>weight``
        if self.proj is None and prefix + "weight" in state_dict and prefix + "table.weight" not in state_dict:
            state_dict[prefix + "table.weight"] = state_dict.pop(prefix + "weight")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, tokens: th.Tensor) -> th.Tensor:
        if self.proj is None:
            return self.table(tokens)
        return self.proj(self.codebook[tokens])


def load_codebook(name: str) -> th.Tensor:
    """The ``(k, d_code)`` codebook of a tokenizer checkpoint path or shipped model name (``"metaworld-64"``)."""
    from sb3_pvdr.pretrained import resolve
    from sb3_pvdr.tokenizer import VQTokenizer

    return VQTokenizer.load(resolve(name, "tokenizer")).codebook.detach().clone()


class GridCNN(nn.Module):
    """Frames stacked on channels, 3x3 convolutions at the token grid's resolution, flattened, one linear layer and
    a LayerNorm: NatureCNN's recipe on a token grid (every cell keeps its place up to the last layer).

    The LayerNorm bounds the features, as the transformer's final norm does: with a ReLU there instead, 50 Adam
    steps of a policy-gradient loss on random advantages moved the action mean by 660 (transformer 1.3, pixel PPO's
    NatureCNN + MLP 3.2). With it, PPO's updates are still larger than pixel PPO's (results/aligner: median
    approx_kl per update 0.025-0.48 against 0.013-0.039).

    :param in_channels: ``frames * dim``
    :param grid: token grid ``(h, w)``
    :param channels: convolution width
    :param features_dim: output size
    """

    def __init__(self, in_channels: int, grid: tuple[int, int], channels: int = 64, features_dim: int = 256) -> None:
        super().__init__()
        h, w = grid
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(channels * h * w, features_dim),
            nn.LayerNorm(features_dim),
        )

    def forward(self, frames: th.Tensor) -> th.Tensor:
        return self.net(rearrange(frames, "b t h w d -> b (t d) h w"))


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
    :param arch: ``"transformer"`` (the paper's ST transformer) or ``"cnn"`` (:class:`GridCNN` over the same
        embedded grids; ``pool`` does not apply)
    :param codebook: ``None`` (a fresh token embedding table), or a tokenizer checkpoint path / shipped name whose
        frozen codebook embeds the tokens (:class:`TokenEmbedding`)
    :param cnn_features: output size of the ``"cnn"`` trunk
    :param prompt_frames: how many grids :meth:`prompt` returns
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
        arch: str = "transformer",
        codebook: Optional[str] = None,
        cnn_features: int = 256,
        prompt_frames: int = 1,
    ) -> None:
        name = type(self).__name__
        if not isinstance(observation_space, spaces.Dict) or not {"context_tokens", prompt_key} <= set(observation_space.spaces):
            raise ConfigError(f"{name} needs Dict(context_tokens, {prompt_key}) observations, got {observation_space}")
        if pool not in POOLS:
            raise ConfigError(f"{name}: pool must be one of {POOLS}, got {pool!r}")
        if arch not in ARCHS:
            raise ConfigError(f"{name}: arch must be one of {ARCHS}, got {arch!r}")
        m, h, w = observation_space["context_tokens"].shape
        frames = prompt_frames + m  # grids the trunk sees
        if arch == "cnn":
            features = cnn_features
        else:
            features = frames * dim if pool == "mean" else (frames - 1) * dim + h * w * dim
        super().__init__(observation_space, features_dim=features)
        self.pool, self.arch = pool, arch
        num_tokens = int(observation_space["context_tokens"].high.max()) + 1
        self.embed = TokenEmbedding(num_tokens, dim, load_codebook(codebook) if codebook is not None else None)
        if arch == "cnn":
            self.cnn = GridCNN(frames * dim, (h, w), features_dim=cnn_features)
            return
        self.pos = STPositionalEmbedding(dim, frames, (h, w))
        window = tuple(window) if window is not None else _default_window((h, w))
        self.transformer = STTransformer(dim, depth, heads, ff_dim, window, causal=False, dropout=dropout)

    def prompt(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        """The prompt grids ``(b, prompt_frames, h, w, d)``."""
        raise NotImplementedError

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        tokens = observations["context_tokens"].long()  # SB3 hands Box observations over as float
        frames = th.cat((self.prompt(observations), self.embed(tokens)), dim=1)  # (b, prompt_frames + m, h, w, d)
        if self.arch == "cnn":
            return self.cnn(frames)
        hidden = self.transformer(self.pos(frames))  # (b, 1 + m, h, w, d)
        if self.pool == "mean":
            return reduce(hidden, "b t h w d -> b (t d)", "mean")
        pooled = reduce(hidden[:, :-1], "b t h w d -> b (t d)", "mean")
        return th.cat((pooled, rearrange(hidden[:, -1], "b h w d -> b (h w d)")), dim=1)


INPUTS = ("z", "plan", "z+plan", "z+goal", "plan+goal", "z+plan+goal")


class PVDRFeaturesExtractor(STTokenFeaturesExtractor):
    """ST transformer (or grid CNN) over [prompt grids, x_{t-m+1}, ..., x_t].

    The prompt (``inputs``) is z* (the paper: its ``(h, w, d_z)`` grid projected to ``dim``), the chosen plan's l
    token grids D(x_t, z*) (the planning wrapper's ``observe_plan``; embedded like the context), or both. The plan
    is a function of (x_t, z*) through the frozen decoder, so the aligner is still Pi(x_t, z*); unlike z it shows
    where the arm will be (scripts/act_target_probe.py: a window's mean action is readable from the real future
    frames' tokens, held-out R^2 0.13-0.33, not from its posterior z, -0.16 to -0.13). ``+goal`` adds the goal
    image's token grid (the planning wrapper's ``observe_goal``), a deviation from the paper's Pi(a | x, z*) that
    gives the aligner what pixel PPO sees.

    :param observation_space: the planning wrapper's ``Dict(context_tokens (m, h, w), z_star (h, w, d_z)
        [, plan_tokens (l, h, w)] [, goal_tokens (1, h, w)])``
    :param dim: feature dimension of the transformer
    :param depth: ST units (paper: 3)
    :param heads: attention heads (paper: 4)
    :param ff_dim: feed-forward hidden size
    :param window: temporal-attention window (p, q); ``None``: 4x4 when it divides the grid, else the grid
    :param dropout: dropout in attention and feed-forward layers
    :param pool: ``"mean"`` (one vector per frame) or ``"spatial"`` (the last frame's grid kept)
    :param arch: ``"transformer"`` or ``"cnn"`` (:class:`STTokenFeaturesExtractor`)
    :param codebook: ``None`` or a tokenizer whose frozen codebook embeds the tokens
    :param cnn_features: output size of the ``"cnn"`` trunk
    :param inputs: ``"z"`` (the paper), ``"plan"`` or ``"z+plan"``, each optionally ``"+goal"``
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
        inputs: str = "z",
    ) -> None:
        if inputs not in INPUTS:
            raise ConfigError(f"PVDRFeaturesExtractor: inputs must be one of {INPUTS}, got {inputs!r}")
        parts = inputs.split("+")
        self.uses_z, self.uses_plan, self.uses_goal = "z" in parts, "plan" in parts, "goal" in parts
        for used, key, flag in ((self.uses_plan, "plan_tokens", "observe_plan"), (self.uses_goal, "goal_tokens", "observe_goal")):
            if used and (not isinstance(observation_space, spaces.Dict) or key not in observation_space.spaces):
                raise ConfigError(f"PVDRFeaturesExtractor inputs={inputs!r} needs {key} in the observation: "
                                  f"wrap the env in PlanningWrapper(..., {flag}=True)")
        plan_frames = observation_space["plan_tokens"].shape[0] if self.uses_plan else 0
        super().__init__(observation_space, "z_star", dim, depth, heads, ff_dim, window, dropout, pool, arch, codebook,
                         cnn_features, prompt_frames=int(self.uses_z) + plan_frames + int(self.uses_goal))
        if self.uses_z:
            self.z_proj = nn.Linear(observation_space["z_star"].shape[-1], dim)

    def prompt(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        grids = []
        if self.uses_z:
            grids.append(rearrange(self.z_proj(observations["z_star"]), "b h w d -> b 1 h w d"))
        if self.uses_plan:
            grids.append(self.embed(observations["plan_tokens"].long()))  # (b, l, h, w, d)
        if self.uses_goal:
            grids.append(self.embed(observations["goal_tokens"].long()))  # (b, 1, h, w, d)
        return th.cat(grids, dim=1)


__all__ = ["ARCHS", "INPUTS", "POOLS", "GridCNN", "PVDRFeaturesExtractor", "STTokenFeaturesExtractor", "TokenEmbedding", "load_codebook"]
