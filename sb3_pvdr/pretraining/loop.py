"""The pre-training loop: :func:`pretrain` optimises eq. (1) of the paper on token clips, resumably, in one
process or under ``torchrun`` (DDP), logging scalars, validation terms and image grids on rank 0.

Order of work (every input is checked before anything is written into ``OUT``):

1. :func:`resume_state`: the run to continue (``--resume``), or a refusal to overwrite one;
2. :func:`prepare_run`: tokenizer, model, data checks, optimizer, scheduler, restored state, datasets;
3. the loop: :func:`train_step` per batch, :class:`MetricLog` every ``log_every`` steps, validation every
   ``val_every``, image grids every ``image_every``, checkpoints every ``save_every`` (and on Ctrl-C).
"""

# b - batch, m context frames, l future frames, h w - token grid

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from sb3_pvdr.common.checkpoint import load_checkpoint
from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.pretraining.config import SCHEDULE_KEYS, PretrainConfig
from sb3_pvdr.pretraining.data import ClipBatches, check_data_source, check_enough_clips, fixed_batch, resolve_token_folder
from sb3_pvdr.pretraining.distributed import DistInfo, LossModule, all_reduce_mean, init_distributed
from sb3_pvdr.pretraining.evaluation import evaluate_loss, prediction_grid
from sb3_pvdr.pretraining.state import (
    PRETRAIN_STATE,
    build_model,
    load_tokenizer,
    save_training_state,
    seed_everything,
    set_rng_state,
    warmup_lambda,
    write_run_files,
)

PathLike = Union[str, Path]


@dataclass
class PretrainResult:
    """What :func:`pretrain` hands back (for tests and scripts)."""

    model: nn.Module
    step: int
    last_metrics: dict[str, float]


@dataclass
class TrainingRun:
    """Everything the loop works with, built and checked by :func:`prepare_run`; ``step`` advances."""

    cfg: PretrainConfig
    info: DistInfo
    out: Path
    tokenizer_path: str
    tokenizer: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    dataset: Dataset
    val_set: Optional[Dataset]
    step: int

    def save(self) -> None:
        """``OUT/last.pt`` and ``OUT/dynamics.pt`` at the current step."""
        save_training_state(self.out, self.model, self.optimizer, self.scheduler, self.step, self.cfg, self.tokenizer_path)


def due(step: int, every: int, last: int) -> bool:
    """Periodic work happens every ``every`` steps and at the last step."""
    return step % every == 0 or step == last


def resume_state(out: Path, cfg: PretrainConfig, resume: bool, info: DistInfo) -> tuple[PretrainConfig, Optional[dict[str, Any]]]:
    """
    The saved state to continue and its config (with this run's schedule: ``steps`` and the ``*_every`` keys),
    or ``(cfg, None)`` for a fresh run.

    :raises ConfigError: ``out`` already holds a run and ``resume`` is not set
    """
    last_path = out / "last.pt"
    if resume and last_path.is_file():
        state = load_checkpoint(last_path, PRETRAIN_STATE)
        schedule = {k: getattr(cfg, k) for k in SCHEDULE_KEYS}
        return PretrainConfig.from_dict({**state["config"], **schedule}), state
    if resume:
        if info.is_main:
            print(f"--resume: no {last_path} yet, starting from step 0", flush=True)
    elif last_path.is_file():
        raise ConfigError(f"{out} already holds a run ({last_path}): pass --resume to continue it or pick another --out")
    return cfg, None


def prepare_run(data: PathLike, tokenizer_path: PathLike, out: Path, cfg: PretrainConfig, state: Optional[dict[str, Any]],
                info: DistInfo, val_data: Optional[PathLike] = None) -> TrainingRun:  # fmt: skip
    """Build the run; the data, clip counts and optimizer settings are checked before the first write (videos
    are tokenized into ``OUT/tokens`` / ``OUT/val_tokens`` only after every check has passed)."""
    tokenizer = load_tokenizer(tokenizer_path, info.device)
    # Same seed on every rank: identical initial weights (DDP also broadcasts them from rank 0).
    seed_everything(cfg.seed)
    init = None
    if state is None and cfg.init_from is not None:
        from sb3_pvdr.dynamics import VisualDynamicsModel

        init = VisualDynamicsModel.load(os.path.expanduser(cfg.init_from))
    model_config = state["model_config"] if state else ({**init.config.to_dict(), **cfg.model} if init is not None else None)
    model = build_model(cfg, tokenizer, model_config)
    if init is not None:
        model.load_weights_from(init)
    if cfg.train_only is not None:
        for group, params in model.parameter_groups().items():
            for param in params:
                param.requires_grad_(group in cfg.train_only)

    m, l, k = model.config.m, model.config.l, model.config.frame_step  # noqa: E741
    source = check_data_source(data, tokenizer, out / "tokens", m, l, "--data", frame_step=k)
    check_enough_clips(source.num_clips, cfg.batch_size, info.world_size)
    val_source = None
    if val_data is not None:
        val_source = check_data_source(val_data, tokenizer, out / "val_tokens", m, l, "--val-data", frame_step=k)

    model.to(info.device)
    try:
        trainable = [param for param in model.parameters() if param.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    except ValueError as exc:  # torch's own check of lr, betas, weight_decay
        raise ConfigError(f"pre-training config: {exc}") from exc
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(cfg.warmup_steps))
    step = 0
    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])

    from sb3_pvdr.video import TokenClipDataset

    # Writes start here: videos are tokenized into OUT/tokens (OUT/val_tokens) once.
    goal = model.config.prior_goal  # hindsight goals: the last frame of each clip's episode
    dataset = TokenClipDataset(resolve_token_folder(source, tokenizer_path, info.is_main), m, l, frame_step=k, goal=goal)
    val_set = None
    if val_source is not None:
        val_set = TokenClipDataset(resolve_token_folder(val_source, tokenizer_path, info.is_main), m, l, frame_step=k,
                                   goal=goal)  # fmt: skip
    return TrainingRun(cfg, info, out, str(tokenizer_path), tokenizer, model, optimizer, scheduler, dataset, val_set, step)


def train_step(run: TrainingRun, loss_module: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: Any,
               goal: Optional[torch.Tensor] = None) -> dict[str, Any]:  # fmt: skip
    """One optimizer step of eq. (1) on a batch (``goal``: tokens for a goal-conditioned prior); returns the step's
    terms (tensors) for :class:`MetricLog`."""
    with autocast:
        total, breakdown = loss_module(x, y, goal)
    run.optimizer.zero_grad(set_to_none=True)
    total.backward()
    clip = run.cfg.grad_clip if run.cfg.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    run.optimizer.step()
    run.scheduler.step()
    run.step += 1
    terms = {"loss/total": total, "grad_norm": grad_norm, **{f"loss/{k}": v for k, v in breakdown._asdict().items()}}
    terms["accuracy"] = terms.pop("loss/accuracy")
    return terms


class MetricLog:
    """Means of the step terms between two log steps (averaged over processes), plus throughput and learning
    rate; written to tensorboard and the progress bar (or one line per log step with ``--no-progress``).

    :param info: the process group (only rank 0 writes)
    :param writer: rank 0's ``SummaryWriter`` (``None`` elsewhere)
    :param bar: the tqdm bar, ``None`` without one
    :param tokens_per_clip: tokens in one ``m + l`` clip (for ``tokens_per_s``)
    """

    def __init__(self, info: DistInfo, writer: Any, bar: Any, tokens_per_clip: int) -> None:
        self.info, self.writer, self.bar, self.tokens_per_clip = info, writer, bar, tokens_per_clip
        self.last_metrics: dict[str, float] = {}
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0
        self.start = time.perf_counter()

    def add(self, terms: dict[str, Any]) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
        self.n += 1

    def flush(self, step: int, steps: int, batch_size: int, lr: float) -> dict[str, float]:
        """Log the means since the last flush at ``step`` (of ``steps``) and start new ones."""
        metrics = all_reduce_mean({k: v / self.n for k, v in self.sums.items()}, self.info)
        elapsed = time.perf_counter() - self.start
        metrics["tokens_per_s"] = self.n * batch_size * self.info.world_size * self.tokens_per_clip / elapsed
        metrics["lr"] = lr
        self.last_metrics = metrics
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(k, v, step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{metrics['loss/total']:.3f}", acc=f"{metrics['accuracy']:.3f}")
        elif self.info.is_main:  # log files (--no-progress): one line per log step
            print(f"step {step}/{steps} " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
        self._reset()
        return metrics


def validate(run: TrainingRun, writer: Any, print_line: bool, fork_devices: list[torch.device]) -> None:
    """Held-out eq. (1) terms (all ranks), written by rank 0. Its z samples come from a forked RNG, so that
    validation leaves the training's random stream (and thus ``--resume``) untouched."""
    assert run.val_set is not None
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(run.cfg.seed)
        val = all_reduce_mean(evaluate_loss(run.model, run.val_set, run.cfg, run.info), run.info)
    if writer is not None:
        for k, v in val.items():
            writer.add_scalar(f"val/{k}", v, run.step)
        if print_line:
            print(f"step {run.step} val " + " ".join(f"{k}={v:.4g}" for k, v in val.items()), flush=True)


def log_predictions(run: TrainingRun, writer: Any, grid_batch: tuple[torch.Tensor, torch.Tensor], fork_devices: list[torch.device]) -> None:
    """Rank 0: the image grid of :func:`prediction_grid` on fixed clips (forked RNG, as :func:`validate`)."""
    run.model.eval()
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(run.cfg.seed)
        grid = prediction_grid(run.model, run.tokenizer, *grid_batch)
    writer.add_image("predictions", grid, run.step, dataformats="HWC")
    run.model.train()


def pretrain(
    data: PathLike,
    tokenizer_path: PathLike,
    out: PathLike,
    cfg: PretrainConfig,
    resume: bool = False,
    device: str = "auto",
    val_data: Optional[PathLike] = None,
    progress: bool = True,
    info: Optional[DistInfo] = None,
    run_args: Optional[dict[str, Any]] = None,
) -> PretrainResult:
    """Pre-train a ``VisualDynamicsModel`` on token clips with eq. (1) of the paper.

    :param data: token folder or folder of videos
    :param tokenizer_path: trained ``VQTokenizer`` checkpoint (the one that made the tokens)
    :param out: run folder (``last.pt``, ``dynamics.pt``, ``tb/``, ``config.yml``)
    :param cfg: hyperparameters; on ``resume`` the saved config is used except ``steps``, ``log_every``,
        ``save_every``, ``image_every``, ``val_every``
    :param resume: continue from ``out/last.pt`` (model, optimizer, step, RNG)
    :param device: ``auto``, ``cpu`` or ``cuda``
    :param val_data: held-out token folder (or videos) for validation scalars and image grids
    :param progress: show a tqdm bar on rank 0
    :param info: process-group description (default: from the ``torchrun`` environment)
    :param run_args: the command-line arguments, written as ``OUT/args.yml`` once every check has passed
    :raises PVDRError: (ConfigError, DataError, CheckpointError) before anything is written into ``out``
    """
    info = info or init_distributed(device)
    out = Path(out)
    cfg, state = resume_state(out, cfg, resume, info)
    run = prepare_run(data, tokenizer_path, out, cfg, state, info, val_data)
    # Different dropout masks and z samples on each rank; a 1-process --resume restores the exact RNG.
    seed_everything(cfg.seed + 1000 * info.rank + 7919 * run.step)
    if state is not None and info.is_main:
        set_rng_state(state["rng"])

    loss_module: nn.Module = LossModule(run.model, cfg.lambda_1)
    if info.distributed:
        loss_module = DistributedDataParallel(loss_module, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    batches = ClipBatches(run.dataset, cfg.batch_size, info.rank, info.world_size, cfg.seed, cfg.num_workers)

    writer, bar, grid_batch = None, None, None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_run_files(out, cfg, run.model, info.world_size, run_args)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
        writer.add_text("config", "```\n" + (out / "config.yml").read_text() + "```", run.step)
        grid_batch = fixed_batch(run.val_set if run.val_set is not None else run.dataset, 4)
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=run.step, desc="pretrain", dynamic_ncols=True, file=sys.stdout)

    autocast = torch.autocast(device_type=info.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    grid = run.model.config.grid
    log = MetricLog(info, writer, bar, (run.model.config.m + run.model.config.l) * grid[0] * grid[1])
    fork_devices = [info.device] if info.device.type == "cuda" else []
    data_iter = batches.iterate(start_step=run.step)
    run.model.train()
    try:
        while run.step < cfg.steps:
            x, y, *goal = (part.to(info.device, non_blocking=True) for part in next(data_iter))
            log.add(train_step(run, loss_module, x, y, autocast, goal[0] if goal else None))
            if bar is not None:
                bar.update(1)
            if due(run.step, cfg.log_every, cfg.steps):
                log.flush(run.step, cfg.steps, x.shape[0], run.scheduler.get_last_lr()[0])
            if run.val_set is not None and cfg.val_every > 0 and due(run.step, cfg.val_every, cfg.steps):
                validate(run, writer, bar is None, fork_devices)
            if writer is not None and cfg.image_every > 0 and due(run.step, cfg.image_every, cfg.steps):
                assert grid_batch is not None
                log_predictions(run, writer, grid_batch, fork_devices)
            if info.is_main and due(run.step, cfg.save_every, cfg.steps):
                run.save()
    except KeyboardInterrupt:
        if info.is_main and run.step > 0:
            run.save()
            print(f"\ninterrupted: saved step {run.step} to {out / 'last.pt'} (continue with --resume)", flush=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    return PretrainResult(model=run.model, step=run.step, last_metrics=log.last_metrics)


__all__ = ["MetricLog", "PretrainResult", "TrainingRun", "pretrain", "prepare_run", "resume_state", "train_step"]
