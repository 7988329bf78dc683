"""What pre-training shows of the model: image grids (context | true future | predicted futures, decoded by
the tokenizer) and the held-out eq. (1) terms."""

# b - batch, t - time (frames), h w - token grid, H W - pixels, c - channels, r - rows of a grid

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from einops import rearrange
from torch import nn
from torch.utils.data import Dataset

from sb3_pvdr.pretraining.config import PretrainConfig
from sb3_pvdr.pretraining.data import fixed_batch
from sb3_pvdr.pretraining.distributed import DistInfo


@torch.no_grad()
def decode_clip_tokens(tokenizer: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``tokens (b, t, h, w)`` -> frames ``float (b, t, H, W, 3)`` in [0, 1]."""
    b = tokens.shape[0]
    flat = rearrange(tokens, "b t h w -> (b t) h w")
    frames = tokenizer.decode(flat.to(next(tokenizer.parameters()).device)).float().clamp(0, 1).cpu()
    return rearrange(frames, "(b t) H W c -> b t H W c", b=b)


def prediction_rows(context: torch.Tensor, future: torch.Tensor, predictions: list[torch.Tensor]) -> torch.Tensor:
    """Lay out one clip as rows of frames ``(rows, m + l, H, W, 3)``: the first row is context | true future,
    each next row is a blank context slot | one predicted future.
    """
    first = torch.cat([context, future], dim=0)
    blank = torch.ones_like(context)
    rows = [first] + [torch.cat([blank, p], dim=0) for p in predictions]
    return torch.stack(rows)


def tile_frames(rows: torch.Tensor, pad: int = 2) -> np.ndarray:
    """``rows (r, t, H, W, 3)`` float -> one ``uint8 (r*(H+pad), t*(W+pad), 3)`` image with white gutters."""
    rows = torch.nn.functional.pad(rows, (0, 0, 0, pad, 0, pad), value=1.0)
    image = rearrange(rows, "r t H W c -> (r H) (t W) c")
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


@torch.no_grad()
def prediction_grid(model: nn.Module, tokenizer: Any, x: torch.Tensor, y: torch.Tensor,
                    goal: Optional[torch.Tensor] = None, n_prior: int = 2, use_posterior: bool = True) -> np.ndarray:
    """Image grid for each clip of ``x``/``y``: context | true future, then (optionally) the future generated
    with the posterior mean of z, then futures generated from ``n_prior`` samples of the prior (given ``goal``
    tokens ``(b, h, w)`` when the prior is goal-conditioned).
    """
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    goal = goal.to(device) if goal is not None else None
    preds: list[torch.Tensor] = []
    if use_posterior:
        preds.append(model.generate(x, model.posterior(x, y).mode()))
    prior = model.prior(x, goal)
    preds += [model.generate(x, prior.sample()) for _ in range(n_prior)]
    ctx, fut = decode_clip_tokens(tokenizer, x), decode_clip_tokens(tokenizer, y)
    pred_frames = [decode_clip_tokens(tokenizer, p) for p in preds]
    clips = [prediction_rows(ctx[i], fut[i], [p[i] for p in pred_frames]) for i in range(x.shape[0])]
    return tile_frames(torch.cat(clips, dim=0))


@torch.no_grad()
def evaluate_loss(model: nn.Module, dataset: Dataset, cfg: PretrainConfig, info: DistInfo) -> dict[str, float]:
    """Mean eq. (1) terms and teacher-forced token accuracy over ``cfg.val_batches`` fixed batches."""
    model.eval()
    n = min(len(dataset), cfg.val_batches * cfg.batch_size)  # type: ignore[arg-type]
    parts = fixed_batch(dataset, n)  # (x, y) or (x, y, g)
    sums: dict[str, float] = {}
    chunks = list(zip(*(part.split(cfg.batch_size) for part in parts)))
    autocast = torch.autocast(device_type=info.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    for chunk in chunks:
        x, y, *goal = (part.to(info.device) for part in chunk)
        with autocast:
            total, breakdown = model.loss(x, y, lambda_1=cfg.lambda_1, goal=goal[0] if goal else None)
        for k, v in {"total": total, **breakdown._asdict()}.items():
            sums[k] = sums.get(k, 0.0) + float(v) / len(chunks)
    model.train()
    return sums


__all__ = ["decode_clip_tokens", "evaluate_loss", "prediction_grid", "prediction_rows", "tile_frames"]
