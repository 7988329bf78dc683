"""Train the VQ frame tokenizer on the frames of a video dataset.

    python -m sb3_pvdr.tokenizer.train --data DIR --out DIR [--config cpu|paper|FILE.yml] [--steps N]
        [--batch-size B] [--lr LR] [--val-data DIR] [--resume] [--device auto] [--threads T]
        [--init-from tokenizer.pt [--train-only decoder]]

``--init-from T --train-only decoder`` sharpens a trained tokenizer's reconstructions without changing a single
token (encoder and codebook frozen): token datasets and dynamics models made with ``T`` stay valid.

Writes into ``--out``: ``tokenizer.pt`` (the model, for users: ``VQTokenizer.load``), ``last.pt``
(training state: model, optimizer(s), step, RNG, for ``--resume``), ``config.yml``, ``args.yml``,
``command.txt``, ``metrics.json`` (last evaluation) and tensorboard logs under ``tb/`` (loss terms,
codebook usage / perplexity, held-out PSNR, image grids of originals over reconstructions).
"""

# b - batch, c - channels, H W - pixels, k - codebook size

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import yaml
from einops import rearrange
from torch import Tensor
from tqdm import tqdm

from sb3_pvdr.common.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from sb3_pvdr.common.errors import CheckpointError, ConfigError, DataError, cli_entry
from sb3_pvdr.common.utils import get_device
from sb3_pvdr.pretrained import resolve as resolve_pretrained
from sb3_pvdr.tokenizer.config import TokenizerConfig
from sb3_pvdr.tokenizer.evaluate import code_stats, evaluate, recon_grid
from sb3_pvdr.tokenizer.frames import load_frames
from sb3_pvdr.tokenizer.losses import TokenizerLoss
from sb3_pvdr.tokenizer.model import VQTokenizer

TRAIN_STATE_KIND = "tokenizer_train_state"


# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sb3_pvdr.tokenizer.train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="folder (or file) of training videos / .npz episodes")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, logs)")
    parser.add_argument("--config", default="cpu", help="profile name (cpu, paper) or a yaml file of TokenizerConfig keys")
    parser.add_argument("--steps", type=int, default=None, help="total training steps (overrides the config)")
    parser.add_argument("--batch-size", type=int, default=None, help="frames per step (overrides the config)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (overrides the config)")
    parser.add_argument("--init-from", default=None,
                        help="start a new run from this tokenizer.pt or shipped name (its model config; --steps/--batch-size/--lr/--train-only "
                             "override the training keys); ignored by --resume, which continues OUT/last.pt")
    parser.add_argument("--train-only", default=None, choices=["decoder"],
                        help="train only this part (decoder: encoder and codebook frozen, tokens unchanged; needs --init-from)")
    parser.add_argument("--val-data", default=None, help="held-out folder for the PSNR / codebook-usage evaluation")
    parser.add_argument("--val-frames", type=int, default=1024, help="held-out frames evaluated (random, fixed)")
    parser.add_argument("--frame-step", type=int, default=1, help="keep every n-th frame of each training episode")
    parser.add_argument("--max-frames", type=int, default=None, help="cap on the training frames held in memory")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (step count, optimizer, RNG)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (on a busy shared CPU, 1 can beat 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "lr", "val_frames", "frame_step", "max_frames", "threads"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    return args


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    model: VQTokenizer
    loss_fn: TokenizerLoss
    optimizer: torch.optim.Optimizer
    disc_optimizer: Optional[torch.optim.Optimizer]
    step: int
    rng: np.random.Generator


def learning_rate(config: TokenizerConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``learning_rate * min_lr_ratio`` at ``config.steps``."""
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps > 0 else 1.0
    progress = min(step, config.steps) / config.steps
    cosine = config.min_lr_ratio + (1.0 - config.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.learning_rate * warmup * cosine


def build_state(config: TokenizerConfig, device: torch.device, seed: int) -> TrainState:
    torch.manual_seed(seed)
    model = VQTokenizer(config).to(device).train()  # conv weights channels-last: the constructor's layout
    loss_fn = TokenizerLoss(config).to(device)
    trained = model.decoder if config.train_only == "decoder" else model
    optimizer = torch.optim.Adam(trained.parameters(), lr=config.learning_rate, betas=config.adam_betas)
    disc_optimizer = None
    if loss_fn.discriminator is not None:
        disc_optimizer = torch.optim.Adam(loss_fn.discriminator.parameters(), lr=config.learning_rate, betas=config.adam_betas)
    return TrainState(model, loss_fn, optimizer, disc_optimizer, 0, np.random.default_rng(seed))


def save_state(path: Path, state: TrainState) -> None:
    """Atomic training checkpoint (kind ``"tokenizer_train_state"``)."""
    save_checkpoint(
        path,
        TRAIN_STATE_KIND,
        config=state.model.config.to_dict(),
        state_dict=state.model.state_dict(),
        optimizer=state.optimizer.state_dict(),
        discriminator=state.loss_fn.state_dict(),
        disc_optimizer=state.disc_optimizer.state_dict() if state.disc_optimizer is not None else None,
        step=state.step,
        numpy_rng=state.rng.bit_generator.state,
        torch_rng=torch.get_rng_state(),
    )


def load_state(path: Path, device: torch.device, steps: Optional[int], batch_size: Optional[int]) -> TrainState:
    """Rebuild the training state from ``last.pt`` (its stored config, with ``--steps``/``--batch-size`` applied)."""
    data = load_checkpoint(path, TRAIN_STATE_KIND, map_location=device)
    try:
        config = TokenizerConfig.from_dict(data["config"])
        overrides = {k: v for k, v in (("steps", steps), ("batch_size", batch_size)) if v is not None}
        config = config.replace(**overrides)
        state = build_state(config, device, seed=0)
        state.model.load_state_dict(data["state_dict"])
        state.optimizer.load_state_dict(data["optimizer"])
        state.loss_fn.load_state_dict(data["discriminator"])
        if state.disc_optimizer is not None and data.get("disc_optimizer") is not None:
            state.disc_optimizer.load_state_dict(data["disc_optimizer"])
        state.step = int(data["step"])
        state.rng.bit_generator.state = data["numpy_rng"]
        torch.set_rng_state(data["torch_rng"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot restore the training state: {str(exc)[:200]}") from exc
    return state


def train_step(state: TrainState, images: Tensor) -> dict[str, float]:
    """One optimisation step of the tokenizer (and of the discriminator once it is active)."""
    model, loss_fn, step = state.model, state.loss_fn, state.step
    lr = learning_rate(model.config, step)
    for opt in (state.optimizer, state.disc_optimizer):
        if opt is not None:
            for group in opt.param_groups:
                group["lr"] = lr
    out = model(images, update_codes=model.config.train_only is None)
    total, breakdown = loss_fn(images, out, step, model.decoder.last_layer)
    state.optimizer.zero_grad(set_to_none=True)
    total.backward()
    state.optimizer.step()
    terms = breakdown._asdict()
    if loss_fn.discriminator is None:  # no adversarial term at all: don't log constant zeros
        terms = {k: v for k, v in terms.items() if k not in ("generator", "adaptive_weight")}
    if loss_fn.perceptual is None:
        terms.pop("perceptual")
    logs = {"loss/total": float(total.detach()), "lr": lr, **{f"loss/{k}": float(v) for k, v in terms.items()}}
    if loss_fn.adversarial_active(step):
        assert state.disc_optimizer is not None
        d_loss = loss_fn.discriminator_loss(images, out.recon)
        state.disc_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        state.disc_optimizer.step()
        logs["loss/discriminator"] = float(d_loss.detach())
    logs["_indices"] = out.indices.detach()  # type: ignore[assignment]
    return logs


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=False).encode())


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Train a tokenizer; returns the final metrics (also written to ``OUT/metrics.json``)."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    out = Path(args.out).expanduser()
    last_path = out / "last.pt"

    if args.resume:
        if not last_path.is_file():
            raise CheckpointError(f"--resume: no training checkpoint at {last_path}")
        state = load_state(last_path, device, args.steps, args.batch_size)
        config = state.model.config
    else:
        if last_path.exists():
            raise DataError(f"{out} already holds a training run (last.pt); pass --resume or choose another --out")
        init = VQTokenizer.load(resolve_pretrained(args.init_from, "tokenizer")) if args.init_from is not None else None
        config = init.config if init is not None else TokenizerConfig.resolve(args.config)
        overrides = {
            k: v
            for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("learning_rate", args.lr), ("train_only", args.train_only))
            if v is not None
        }
        config = config.replace(**overrides)
        if config.train_only is not None and init is None:
            raise ConfigError(f"train_only {config.train_only} needs --init-from TOKENIZER.pt (a trained codebook to keep: a decoder "
                              "alone on an untrained codebook learns nothing useful)")
        state = build_state(config, device, args.seed)
        if init is not None:
            state.model.load_state_dict(init.state_dict())

    # frames in memory (uint8); the held-out frames are a fixed random subset of --val-data
    frames = load_frames(args.data, config.image_size, frame_step=args.frame_step, max_frames=args.max_frames, seed=args.seed)
    val_frames: Optional[np.ndarray] = None
    if args.val_data is not None:
        val_frames = load_frames(args.val_data, config.image_size, max_frames=args.val_frames, seed=args.seed + 1)
    grid_frames = val_frames if val_frames is not None else frames[np.random.default_rng(args.seed).choice(len(frames), min(8, len(frames)), replace=False)]

    # every input is checked above: a refused run leaves --out as it was
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(out / "config.yml", config.to_dict())
    write_yaml(out / "args.yml", vars(args))
    atomic_write_bytes(out / "command.txt", (" ".join(shlex.quote(a) for a in [sys.executable, "-m", "sb3_pvdr.tokenizer.train", *(sys.argv[1:] if argv is None else argv)]) + "\n").encode())

    from torch.utils.tensorboard import SummaryWriter  # imported late: tensorboard import is slow

    writer = SummaryWriter(str(out / "tb"), purge_step=state.step if args.resume else None)
    if not args.resume:
        writer.add_text("config", "```\n" + yaml.safe_dump(config.to_dict(), sort_keys=False) + "\n```")
    print(f"tokenizer: {sum(p.numel() for p in state.model.parameters()) / 1e6:.2f}M parameters, grid {config.grid_size}, "
          f"K={config.codebook_size}; {len(frames)} training frames; step {state.step}/{config.steps}; threads {torch.get_num_threads()}")

    def checkpoint_and_eval() -> dict[str, Any]:
        metrics: dict[str, Any] = {"step": state.step}
        if val_frames is not None:
            metrics.update({f"val/{k}": v for k, v in evaluate(state.model, val_frames).items()})
            for key in ("psnr", "codebook_usage", "perplexity"):
                writer.add_scalar(f"val/{key}", metrics[f"val/{key}"], state.step)
        writer.add_image("reconstruction (top: original, bottom: decoded)", recon_grid(state.model, grid_frames), state.step, dataformats="HWC")
        save_state(last_path, state)
        state.model.save(out / "tokenizer.pt", step=state.step, metrics=metrics)
        atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=2).encode())
        writer.flush()
        return metrics

    counts = torch.zeros(config.codebook_size, dtype=torch.long)
    metrics: dict[str, Any] = {"step": state.step}
    start_time, start_step = time.time(), state.step
    progress = tqdm(total=config.steps, initial=state.step, disable=args.no_progress, desc="tokenizer", dynamic_ncols=True)
    while state.step < config.steps:
        # ALGO LOGIC: sample a batch of frames, one step on the reconstruction + commitment (+ GAN) loss
        batch = torch.from_numpy(frames[state.rng.integers(0, len(frames), config.batch_size)])
        images = rearrange(batch.to(device).float() / 255.0, "b H W c -> b c H W").contiguous(memory_format=torch.channels_last)
        logs = train_step(state, images)
        state.step += 1
        progress.update(1)

        counts += torch.bincount(logs.pop("_indices").flatten().cpu(), minlength=config.codebook_size)  # type: ignore[arg-type]
        if state.step % config.log_every == 0 or state.step == config.steps:
            usage, perplexity = code_stats(counts)
            counts.zero_()
            logs.update({"codebook/usage": usage, "codebook/perplexity": perplexity})
            logs["time/steps_per_s"] = (state.step - start_step) / max(time.time() - start_time, 1e-9)
            for key, value in logs.items():
                writer.add_scalar(key, value, state.step)
            progress.set_postfix(loss=f"{logs['loss/total']:.4f}", usage=f"{usage:.2f}")
        if state.step % config.eval_every == 0 or state.step == config.steps:
            metrics = checkpoint_and_eval()
            if "val/psnr" in metrics:
                progress.write(f"step {state.step}: val PSNR {metrics['val/psnr']:.2f} dB, codebook usage {metrics['val/codebook_usage']:.2f}")
    progress.close()
    if state.step == start_step:  # nothing left to train (e.g. --resume of a finished run): still evaluate
        metrics = checkpoint_and_eval()
    metrics["wall_time_s"] = round(time.time() - start_time, 1)
    atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=2).encode())
    writer.close()
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
