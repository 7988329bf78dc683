"""``python -m sb3_pvdr.pretrain``: arguments, config overrides, the checks that need no model, then :func:`pretrain`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from sb3_pvdr.common.errors import CheckpointError, ConfigError, DataError, cli_entry
from sb3_pvdr.pretrained import resolve
from sb3_pvdr.pretraining.config import PretrainConfig
from sb3_pvdr.pretraining.distributed import init_distributed
from sb3_pvdr.pretraining.loop import pretrain


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_pvdr.pretrain",
        description="Pre-train the PVDR visual dynamics model (CVAE over token clips, eq. (1) of the paper). "
        "Distributed: torchrun --nproc_per_node N -m sb3_pvdr.pretrain ...",
    )
    parser.add_argument("--data", required=True, help="token folder (from sb3_pvdr.tokenizer.tokenize) or folder of videos")
    parser.add_argument("--tokenizer", required=True,
                        help="trained VQTokenizer checkpoint (tokenizer.pt) or a shipped model's name (metaworld-64)")
    parser.add_argument("--out", required=True, help="run folder: last.pt, dynamics.pt, tb/, config.yml")
    parser.add_argument("--config", default="cpu", help="profile 'cpu' (default), 'paper', or a .yml file")
    parser.add_argument("--val-data", default=None, help="held-out token folder (or videos) for validation")
    parser.add_argument("--steps", type=int, default=None, help="total optimizer steps")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per step and per process")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    parser.add_argument("--bf16", action="store_true", default=None, help="bfloat16 autocast")
    parser.add_argument("--num-workers", type=int, default=None, help="DataLoader workers")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-every", type=int, default=None)
    parser.add_argument("--save-every", type=int, default=None)
    parser.add_argument("--image-every", type=int, default=None)
    parser.add_argument("--val-every", type=int, default=None)
    parser.add_argument("--init-from", default=None,
                        help="start from this dynamics.pt's weights, or a shipped model's (metaworld-64-fwd); with the "
                        "config's train_only: re-fit a part of it")
    parser.add_argument("--resume", action="store_true", help="continue OUT/last.pt (model, optimizer, step)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (1 is often fastest on a busy shared CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar (log files)")
    args = parser.parse_args(argv)
    # shipped models by name, wherever a checkpoint path is accepted (python -m sb3_pvdr.pretrained list)
    args.tokenizer = resolve(args.tokenizer, "tokenizer")
    if args.init_from is not None:
        args.init_from = resolve(args.init_from, "dynamics")
    return args


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """``--config`` profile or file, then the explicit command-line overrides."""
    cfg = PretrainConfig.load(args.config)
    overrides = {
        key: getattr(args, key)
        for key in ("steps", "batch_size", "lr", "bf16", "num_workers", "seed", "log_every", "save_every",
                    "image_every", "val_every", "init_from")
        if getattr(args, key) is not None
    }
    for key in ("steps", "batch_size", "log_every", "save_every"):
        if key in overrides and overrides[key] <= 0:
            raise ConfigError(f"--{key.replace('_', '-')} must be positive, got {overrides[key]}")
    return PretrainConfig.from_dict(overrides, base=cfg)


@cli_entry
def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    cfg = config_from_args(args)
    if args.threads is not None:
        if args.threads <= 0:
            raise ConfigError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    if not Path(args.tokenizer).is_file():
        raise CheckpointError(f"--tokenizer {args.tokenizer} does not exist: train one with python -m sb3_pvdr.tokenizer.train")
    if not Path(args.data).exists():
        raise DataError(f"--data {args.data} does not exist: give a token folder or a folder of videos")
    info = init_distributed(args.device)
    try:
        # pretrain() checks everything before it writes OUT (args.yml included)
        result = pretrain(args.data, args.tokenizer, args.out, cfg, resume=args.resume, device=args.device,
                          val_data=args.val_data, progress=not args.no_progress, info=info, run_args=vars(args))
        if info.is_main:
            summary = ", ".join(f"{k}={v:.4g}" for k, v in result.last_metrics.items())
            print(f"done: step {result.step}, {summary}; model in {Path(args.out) / 'dynamics.pt'}", flush=True)
    finally:
        if info.distributed and dist.is_initialized():
            dist.destroy_process_group()


__all__ = ["config_from_args", "main", "parse_args"]
