"""Spatial-Temporal (ST) Transformer: alternating spatial and windowed temporal attention.

Paper: PVDR Appendix A.1 (Fig. 9), after MaskViT (Gupta et al., 2022, https://arxiv.org/abs/2206.11894).

Design choices:

- One unit of ``depth`` is spatial attention -> feed-forward -> temporal attention -> feed-forward
  (Fig. 9: "cross-stacked Spatial Attention and Temporal Attention blocks, with interleaved
  Feed-Forward Layers"). Every sublayer is pre-norm (LayerNorm) with a residual connection, and the
  stack ends with a LayerNorm, so the output can go straight into a linear head.
- Spatial attention: a token of frame k attends all h*w tokens of frame k.
- Temporal attention: the tokens of one local b x d window attend each other across all frames,
  i.e. sequences of ``t * b * d`` tokens. The window partition is one einops pattern
  ``b t (nh p) (nw q) d -> (b nh nw) (t p q) d``, so all windows of all clips run as one batch.
- Causal (decoder): a token of frame k attends the window tokens of frames <= k (A.1 writes
  ``k < k*``, which would leave frame 0 with nothing to attend; like any causal transformer we keep
  the own frame and let the caller predict frame k+1 from the hidden state of frame k). Spatial
  attention is per frame and so never looks ahead; the mask is a block-causal boolean mask.
- Attention is ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels, no Python loop
  over tokens); one fused qkv projection per attention.
- Frame-level KV cache (causal only): :class:`FrameKVCache` keeps the keys/values of every temporal
  attention layer for the frames seen so far. Feeding new frames with the cache gives exactly the
  hidden states the full causal pass would give them: spatial attention and feed-forwards only see
  the new frame, temporal attention sees the cached frames plus the new ones.
- Output frames (``frames_out``): a caller that reads only some frames' hidden states (E and P read the query
  frame, generation the last frame) gets them without computing the rest of the last unit: its spatial attention
  and first feed-forward still run on every frame (they make the temporal keys/values), its temporal attention
  queries, second feed-forward and the final norm only on the kept frames. Same values as slicing the full
  output (tested), ~1/6 fewer FLOPs for a two-unit encoder.
- Positions are not added here: :class:`STPositionalEmbedding` (learned time and space tables) is a
  separate module, so a cached step can be embedded at its absolute frame index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from sb3_pvdr.common.errors import ConfigError

# b - batch, t - time (frames), h w - token grid, d - feature dimension,
# p q - temporal window (rows, cols), nh nw - windows per column / row, n - sequence, e - heads

KV = tuple[Tensor, Tensor]


@dataclass
class FrameKVCache:
    """Keys/values of each temporal-attention layer for the ``n_frames`` frames fed so far.

    ``kv[i]`` is ``(k, v)`` of layer i, each ``((b nh nw), heads, (n_frames p q), dim_head)``.
    """

    kv: list[Optional[KV]] = field(default_factory=list)
    n_frames: int = 0


class FeedForward(nn.Module):
    """Pre-norm MLP: LayerNorm -> Linear -> GELU -> Linear."""

    def __init__(self, dim: int, ff_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, ff_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ff_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Pre-norm multi-head self-attention over ``(b, n, d)`` with fused SDPA and optional past keys/values.

    :param dim: feature dimension
    :param heads: number of heads (``dim // heads`` per head)
    :param dropout: attention-probability and output dropout
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"attention dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.dropout = dropout
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(
        self, x: Tensor, mask: Optional[Tensor] = None, past_kv: Optional[KV] = None, queries: Optional[slice] = None
    ) -> tuple[Tensor, KV]:
        """:param queries: only these positions of ``x`` query (default all); keys/values are always all of ``x``
        :return: output ``(b, n or n_queries, d)`` and the keys/values ``(b, e, n_past + n, d/e)`` for caching"""
        q, k, v = rearrange(self.to_qkv(self.norm(x)), "b n (three e d) -> three b e n d", three=3, e=self.heads)
        if queries is not None:
            q = q[:, :, queries]
            mask = mask[queries] if mask is not None else None
        if past_kv is not None:
            k = torch.cat((past_kv[0], k), dim=2)
            v = torch.cat((past_kv[1], v), dim=2)
        if q.dtype == torch.bfloat16 and q.device.type == "cpu" and torch.is_grad_enabled():
            out = self._attention_bf16_cpu_training(q, k, v, mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "b e n d -> b n (e d)")), (k, v)

    def _attention_bf16_cpu_training(self, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor]) -> Tensor:
        """Attention as two bf16 matmuls with an fp32 softmax. Under bf16 autocast on a CPU, SDPA's fused kernel
        spends ~3x longer in its backward pass than these matmuls' backward (online fine-tuning: 1.43 -> 0.95 s
        per minibatch of 32 clips, L_rec); forward-only calls (planning) keep SDPA, equally fast there.
        :param q: ``(b, e, n, d)`` :param k: ``(b, e, n_k, d)`` :param v: ``(b, e, n_k, d)``
        :param mask: boolean ``(n, n_k)``, True = attend"""
        scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5  # (b, e, n, n_k)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = F.dropout(scores.softmax(dim=-1), p=self.dropout, training=self.training)
        return weights.to(v.dtype) @ v


class SpatialAttention(nn.Module):
    """Attention among the h*w tokens of each frame."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, _, _ = x.shape
        out, _ = self.attn(rearrange(x, "b t h w d -> (b t) (h w) d"))
        return rearrange(out, "(b t) (h w) d -> b t h w d", b=b, h=h)


def block_causal_mask(t: int, window_tokens: int, past_frames: int = 0, device: Optional[torch.device] = None) -> Tensor:
    """Boolean mask ``(t s, (past + t) s)`` (True = attend): a query of frame k sees keys of frames <= k.

    :param t: number of new (query) frames
    :param window_tokens: s, tokens per frame inside one window
    :param past_frames: frames already in the cache (they precede the new frames)
    """
    q_frame = torch.arange(past_frames, past_frames + t, device=device).repeat_interleave(window_tokens)
    k_frame = torch.arange(past_frames + t, device=device).repeat_interleave(window_tokens)
    return k_frame[None, :] <= q_frame[:, None]


class TemporalAttention(nn.Module):
    """Attention among the tokens of a local ``window`` across frames (block-causal when ``causal``).

    :param dim: feature dimension
    :param heads: number of heads
    :param window: (p, q) window size in tokens
    :param causal: mask later frames
    :param dropout: dropout
    """

    def __init__(self, dim: int, heads: int, window: tuple[int, int], causal: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.window = tuple(window)
        self.causal = causal
        self.attn = Attention(dim, heads, dropout)

    def forward(
        self, x: Tensor, past_kv: Optional[KV] = None, past_frames: int = 0, frames_out: Optional[slice] = None
    ) -> tuple[Tensor, KV]:
        """:param frames_out: frames of ``x`` whose output is computed (contiguous slice, default all; every frame
        still gives keys/values) :return: ``(b, t_out, h, w, d)`` and the layer's keys/values"""
        b, t, h, w, _ = x.shape
        p, q = self.window
        if h % p or w % q:
            raise ConfigError(f"temporal window {self.window} must divide the token grid {(h, w)}")
        tokens = rearrange(x, "b t (nh p) (nw q) d -> (b nh nw) (t p q) d", p=p, q=q)
        mask = None
        if self.causal and t > 1:  # a single new frame may see every cached frame and itself
            mask = block_causal_mask(t, p * q, past_frames, device=x.device)
        queries = None
        if frames_out is not None:  # tokens are frame-major inside a window: frames [i, j) are one token range
            kept = range(t)[frames_out]
            queries = slice(kept.start * p * q, kept.stop * p * q)
        out, kv = self.attn(tokens, mask=mask, past_kv=past_kv, queries=queries)
        out = rearrange(out, "(b nh nw) (t p q) d -> b t (nh p) (nw q) d", b=b, nh=h // p, p=p, q=q)
        return out, kv


class STTransformer(nn.Module):
    """ST Transformer of PVDR (Fig. 9): ``depth`` units of spatial attn, FF, temporal attn, FF.

    Maps ``(b, t, h, w, d)`` to the same shape (final LayerNorm included).

    :param dim: feature dimension d
    :param depth: number of units (each holds one spatial and one temporal attention)
    :param heads: attention heads
    :param ff_dim: feed-forward hidden size
    :param window: temporal-attention window (p, q) in tokens; must divide the grid
    :param causal: block-causal temporal attention (decoder); enables the frame KV cache
    :param dropout: dropout in attention and feed-forward layers
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        ff_dim: int,
        window: tuple[int, int],
        causal: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.depth = depth
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    SpatialAttention(dim, heads, dropout),
                    FeedForward(dim, ff_dim, dropout),
                    TemporalAttention(dim, heads, window, causal, dropout),
                    FeedForward(dim, ff_dim, dropout),
                ]
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def new_cache(self) -> FrameKVCache:
        """An empty frame KV cache for incremental (frame by frame) causal decoding."""
        if not self.causal:
            raise ValueError("a frame KV cache only makes sense for a causal STTransformer")
        return FrameKVCache(kv=[None] * self.depth, n_frames=0)

    def forward(self, x: Tensor, cache: Optional[FrameKVCache] = None, frames_out: Optional[slice] = None) -> Tensor:
        """:param x: ``(b, t, h, w, d)``; with ``cache``, the frames that follow the cached ones
        :param cache: frame KV cache (causal only); updated in place with the new frames (all of them)
        :param frames_out: return only these frames (a contiguous slice, e.g. ``slice(0, 1)`` or ``slice(-1, None)``);
            equal to ``forward(x)[:, frames_out]``, with less of the last unit computed (module docstring)
        :return: ``(b, t, h, w, d)``, or ``(b, t_out, h, w, d)`` with ``frames_out``
        """
        if cache is not None and not self.causal:
            raise ValueError("a frame KV cache only makes sense for a causal STTransformer")
        if frames_out is not None and frames_out.step not in (None, 1):
            raise ValueError(f"frames_out must be a contiguous slice, got {frames_out}")
        t, past_frames = x.shape[1], cache.n_frames if cache is not None else 0
        for i, (spatial, ff1, temporal, ff2) in enumerate(self.layers):
            last = i == self.depth - 1
            x = x + spatial(x)
            x = x + ff1(x)
            past_kv = cache.kv[i] if cache is not None else None
            out, kv = temporal(x, past_kv=past_kv, past_frames=past_frames, frames_out=frames_out if last else None)
            if cache is not None:
                cache.kv[i] = kv
            x = (x[:, frames_out] if last and frames_out is not None else x) + out
            x = x + ff2(x)
        if cache is not None:
            cache.n_frames += t
        return self.norm(x)


class STPositionalEmbedding(nn.Module):
    """Learned time and space positional embeddings added to ``(b, t, h, w, d)``.

    :param dim: feature dimension
    :param max_frames: longest sequence (frames) it can embed
    :param grid: token grid (h, w)
    """

    def __init__(self, dim: int, max_frames: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.max_frames = max_frames
        self.time = nn.Parameter(torch.randn(max_frames, dim) * 0.02)
        self.space = nn.Parameter(torch.randn(grid[0], grid[1], dim) * 0.02)

    def forward(self, x: Tensor, t_offset: int = 0) -> Tensor:
        """:param t_offset: absolute frame index of ``x[:, 0]`` (cached decoding feeds one frame at a time)"""
        t = x.shape[1]
        if t_offset + t > self.max_frames:
            raise ValueError(f"frames {t_offset}..{t_offset + t - 1} exceed max_frames={self.max_frames}")
        if tuple(x.shape[2:4]) != tuple(self.space.shape[:2]):
            raise ValueError(f"token grid {tuple(x.shape[2:4])} does not match {tuple(self.space.shape[:2])}")
        return x + rearrange(self.time[t_offset : t_offset + t], "t d -> t 1 1 d") + self.space


__all__ = [
    "Attention",
    "FeedForward",
    "FrameKVCache",
    "STPositionalEmbedding",
    "STTransformer",
    "SpatialAttention",
    "TemporalAttention",
    "block_causal_mask",
]
