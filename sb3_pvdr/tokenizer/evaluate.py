"""Measure a trained tokenizer on held-out frames: PSNR of ``decode(encode(frames))``, codebook usage
and perplexity; optionally save a PNG of originals (top row) over reconstructions (bottom row).

    python -m sb3_pvdr.tokenizer.evaluate --tokenizer PATH --data DIR [--max-frames N] [--png FILE]
"""

# b - batch, n - frames in a grid row, H W - pixels, c - channels

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from sb3_pvdr.common.errors import ConfigError, cli_entry
from sb3_pvdr.common.utils import get_device
from sb3_pvdr.pretrained import resolve as resolve_pretrained
from sb3_pvdr.tokenizer.frames import load_frames
from sb3_pvdr.tokenizer.model import VQTokenizer


def psnr(recon: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR in dB of float images in [0, 1] (any layout, batch first)."""
    mse = (recon.float() - target.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(1.0 / mse)


def code_stats(counts: Tensor) -> tuple[float, float]:
    """``(fraction of codes used, perplexity)`` from a histogram of code counts ``(k,)``."""
    probs = counts.float() / counts.sum().clamp_min(1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
    return float((counts > 0).float().mean()), float(entropy.exp())


@torch.no_grad()
def evaluate(model: VQTokenizer, frames: np.ndarray, batch_size: int = 256) -> dict[str, float]:
    """Held-out metrics: mean PSNR (dB) of ``decode(encode(frames))``, codebook usage and perplexity.

    :param model: the tokenizer (left in the mode it was in)
    :param frames: ``uint8 (N, H, W, 3)``
    :param batch_size: frames encoded at a time
    """
    scores, counts = [], torch.zeros(model.codebook_size, dtype=torch.long)
    for start in range(0, len(frames), batch_size):
        batch = torch.from_numpy(frames[start : start + batch_size])
        tokens = model.encode(batch)
        recon = model.decode(tokens).cpu()
        scores.append(psnr(recon, batch.float() / 255.0))
        counts += torch.bincount(tokens.flatten().cpu(), minlength=model.codebook_size)
    usage, perplexity = code_stats(counts)
    return {
        "psnr": float(torch.cat(scores).mean()),
        "codebook_usage": usage,
        "codes_used": int((counts > 0).sum()),
        "perplexity": perplexity,
        "frames": len(frames),
    }


@torch.no_grad()
def recon_grid(model: VQTokenizer, frames: np.ndarray, n: int = 8) -> np.ndarray:
    """``uint8 (2H, nW, 3)``: ``n`` frames (top row) over their reconstructions (bottom row)."""
    originals = torch.from_numpy(np.ascontiguousarray(frames[:n]))
    recon = (model.decode(model.encode(originals)).cpu() * 255.0).round().to(torch.uint8)
    return rearrange(torch.stack([originals, recon]), "r n H W c -> (r H) (n W) c").numpy()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sb3_pvdr.tokenizer.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", required=True, help="tokenizer checkpoint (tokenizer.pt) or shipped name (metaworld-64)")
    parser.add_argument("--data", required=True, help="held-out folder (or file) of videos / .npz episodes")
    parser.add_argument("--max-frames", type=int, default=None, help="evaluate a random subset of this many frames")
    parser.add_argument("--png", default=None, help="write originals (top) over reconstructions (bottom) to this PNG")
    parser.add_argument("--png-frames", type=int, default=12, help="frames in the PNG, spread evenly over the data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.png_frames <= 0 or (args.max_frames is not None and args.max_frames <= 0):
        raise ConfigError("--png-frames and --max-frames must be positive")
    return args


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Evaluate a tokenizer; prints and returns the metrics."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = VQTokenizer.load(resolve_pretrained(args.tokenizer, "tokenizer"), map_location=get_device(args.device))
    frames = load_frames(args.data, model.image_size, max_frames=args.max_frames)
    metrics: dict[str, Any] = {"tokenizer": str(args.tokenizer), "data": str(args.data), **evaluate(model, frames)}
    if args.png is not None:
        import imageio.v3 as iio

        picks = np.linspace(0, len(frames) - 1, min(args.png_frames, len(frames))).round().astype(int)
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(args.png, recon_grid(model, frames[picks], n=len(picks)))
        metrics["png"] = str(args.png)
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
