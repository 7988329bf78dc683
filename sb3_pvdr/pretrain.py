"""Pre-training CLI of the visual dynamics model (paper §4.1, eq. (1), Appendix A.1-A.2).

    python -m sb3_pvdr.pretrain --data TOKENS_OR_VIDEOS --tokenizer tokenizer.pt --out runs/dynamics
    torchrun --nproc_per_node 2 -m sb3_pvdr.pretrain --data ... --tokenizer ... --out ...   # DDP

``--data`` is a token folder made by ``python -m sb3_pvdr.tokenizer.tokenize`` (``tokens.npy``,
``episodes.npy``, ``meta.json``) or a folder of videos, which is tokenized once into ``OUT/tokens``.

Writes into ``OUT``: ``last.pt`` (kind ``"pretrain_state"``: model, optimizer, scheduler, step, RNG;
``--resume`` continues from it), ``dynamics.pt`` (kind ``"visual_dynamics"``, what users load),
``config.yml`` / ``args.yml`` / ``command.txt`` (rl-zoo convention) and tensorboard logs under ``OUT/tb``
(every loss term, token accuracy, and an image grid context | true future | predicted futures).
Every input (config, tokenizer, ``--data``/``--val-data`` against the tokenizer, clip counts) is checked
before anything is written: a refused run leaves ``OUT`` as it was.

Under ``torchrun`` the model is wrapped in ``DistributedDataParallel`` (gloo on CPU, nccl on GPU), every
process reads its own shard through a ``DistributedSampler``, and only rank 0 logs and saves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
import yaml
from einops import rearrange
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from sb3_pvdr.common.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from sb3_pvdr.common.config import check_config_keys
from sb3_pvdr.common.errors import CheckpointError, ConfigError, DataError, cli_entry
from sb3_pvdr.common.utils import get_device

# b - batch, t - time (frames), h w - token grid, k - codebook size, H W - pixels, c - channels,
# n - prior samples per clip

PRETRAIN_STATE = "pretrain_state"


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass
class PretrainConfig:
    """Pre-training hyperparameters; the model's own sizes come from ``DynamicsConfig.profile(profile)``
    updated with ``model`` (a dict of ``DynamicsConfig`` fields).

    A yaml file given to ``--config`` holds these keys (all optional), e.g.::

        profile: cpu
        model: {dim: 256, ff_dim: 512}
        batch_size: 32
        lr: 3.0e-4
    """

    profile: str = "cpu"
    """name of the ``DynamicsConfig`` profile the model starts from (``cpu`` or ``paper``)"""
    model: dict[str, Any] = field(default_factory=dict)
    """overrides of ``DynamicsConfig`` fields (e.g. ``grid``, ``codebook_size`` for another tokenizer)"""
    steps: int = 10_000
    """total number of optimizer steps (``--resume`` continues up to this count)"""
    batch_size: int = 16
    """clips per optimizer step and per process (DDP multiplies it by the number of processes)"""
    lr: float = 3e-4
    """Adam learning rate (the paper uses 1e-4 with minibatch 1025)"""
    weight_decay: float = 0.0
    """AdamW weight decay (0: Adam, as in the paper)"""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas"""
    warmup_steps: int = 100
    """linear learning-rate warm-up, then constant (CPU runs are short: the demo's is 600 steps)"""
    grad_clip: float = 1.0
    """max gradient norm (0 disables clipping)"""
    lambda_1: float = 1e-3
    """weight of the information bottleneck KL(q || N(0, I)) in eq. (1)"""
    bf16: bool = False
    """bfloat16 autocast for forward and backward (weights and optimizer stay fp32)"""
    num_workers: int = 0
    """DataLoader worker processes (token clips are memmap slices: 0 is usually fastest on CPU)"""
    seed: int = 0
    """seed of parameters, sampling of z and data order"""
    log_every: int = 50
    """steps between scalar logs"""
    save_every: int = 500
    """steps between checkpoints (``last.pt`` and ``dynamics.pt``)"""
    image_every: int = 1000
    """steps between tensorboard image grids (0 disables them)"""
    val_every: int = 1000
    """steps between validation passes when ``--val-data`` is given"""
    val_batches: int = 8
    """batches per validation pass"""

    @classmethod
    def profile_config(cls, name: str) -> PretrainConfig:
        """Named training profiles: ``cpu`` (default, 2 CPU cores) and ``paper`` (Table 2)."""
        if name == "cpu":
            return cls(profile="cpu")
        if name == "paper":
            # Table 2: minibatch 1025 (over 8 GPUs in the paper), Adam lr 1e-4, 3.5e5 steps.
            return cls(profile="paper", steps=350_000, batch_size=128, lr=1e-4, warmup_steps=2000, bf16=True,
                       num_workers=4, log_every=100, save_every=2000, image_every=5000, val_every=5000)
        raise ConfigError(f"unknown pre-training profile '{name}': use 'cpu', 'paper' or a .yml file")

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Optional[PretrainConfig] = None) -> PretrainConfig:
        """Build a config from ``data`` on top of ``base`` (the profile named by ``data['profile']`` by default).

        :raises ConfigError: on unknown keys (the message lists the valid ones)
        """
        check_config_keys(cls, data, "pre-training config")
        if base is None:
            base = cls.profile_config(str(data.get("profile", "cpu")))
        merged = {**asdict(base), **data}
        merged["betas"] = tuple(merged["betas"])
        merged["model"] = dict(merged["model"] or {})
        cfg = cls(**merged)
        cfg.check_ranges()
        return cfg

    def check_ranges(self) -> None:
        """:raises ConfigError: a count or rate out of its range (e.g. ``batch_size: 0`` in a yaml file)."""
        positive = ("steps", "batch_size", "log_every", "save_every", "val_batches", "lr")
        non_negative = ("warmup_steps", "num_workers", "image_every", "val_every", "grad_clip", "weight_decay", "lambda_1")
        for key in positive + non_negative:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 if key in positive else value >= 0):
                raise ConfigError(f"pre-training config: {key} must be a {'positive' if key in positive else 'non-negative'} "
                                  f"number, got {value!r}")

    @classmethod
    def load(cls, spec: str) -> PretrainConfig:
        """``spec`` is a profile name (``cpu``, ``paper``) or a yaml file."""
        if spec in ("cpu", "paper"):
            return cls.profile_config(spec)
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"--config {spec}: neither a profile (cpu, paper) nor an existing .yml file")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
        return cls.from_dict(data)

    def dynamics_config(self) -> Any:
        """The model's ``DynamicsConfig``: the profile updated with ``self.model``."""
        from sb3_pvdr.dynamics import DynamicsConfig

        base = asdict(DynamicsConfig.profile(self.profile))
        return DynamicsConfig.from_dict({**base, **self.model})


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def is_token_folder(path: Path) -> bool:
    """A token folder holds ``tokens.npy``, ``episodes.npy`` and ``meta.json`` (``sb3_pvdr.video.tokens``)."""
    from sb3_pvdr.video.tokens import TOKEN_FILES

    return path.is_dir() and all((path / name).is_file() for name in TOKEN_FILES)


def read_token_meta(folder: Path) -> dict[str, Any]:
    """``meta.json`` of a token folder."""
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {folder / 'meta.json'}: {exc}; re-run python -m sb3_pvdr.tokenizer.tokenize") from exc


def check_tokens_match(folder: Path, tokenizer: Any) -> None:
    """Token files must come from a tokenizer with the same codebook size and grid as ``tokenizer``."""
    meta = read_token_meta(folder)
    grid, k = meta.get("grid"), meta.get("codebook_size")
    if grid is not None and tuple(grid) != tuple(tokenizer.grid_size):
        raise DataError(
            f"tokens in {folder} have grid {tuple(grid)} but the tokenizer has {tuple(tokenizer.grid_size)}: "
            "re-tokenize the videos with this tokenizer"
        )
    if k is not None and int(k) != int(tokenizer.codebook_size):
        raise DataError(
            f"tokens in {folder} use {k} codes but the tokenizer has {tokenizer.codebook_size}: "
            "re-tokenize the videos with this tokenizer"
        )


@dataclass(frozen=True)
class DataSource:
    """A checked ``--data`` / ``--val-data``: the token folder to read (``tokenize``: to fill first from the
    videos in ``path``) and its number of ``m + l`` clips."""

    path: Path
    folder: Path
    tokenize: bool
    num_clips: int


def check_data_source(data: Union[str, Path], tokenizer: Any, cache_dir: Path, m: int, l: int,  # noqa: E741
                      flag: str = "--data") -> DataSource:
    """Check ``data`` without writing anything: a token folder of ``tokenizer``'s codebook and grid (or the
    ``cache_dir`` an earlier run tokenized it into), or videos long enough for ``m + l`` frame clips.

    :raises DataError: the path does not exist, holds neither tokens nor videos, tokens of another
        tokenizer, a bad video file, or no episode of ``m + l`` frames
    """
    from sb3_pvdr.video import TokenClipDataset, VideoClipDataset, find_video_files

    data = Path(data)
    if not data.exists():
        raise DataError(f"{flag} {data} does not exist: give a token folder or a folder of videos")
    # the folder itself, else the tokens an earlier run (or rank 0 of this one) cached
    for folder in (data, cache_dir):
        if is_token_folder(folder):
            check_tokens_match(folder, tokenizer)
            return DataSource(data, folder, False, len(TokenClipDataset(folder, m, l)))
    if not find_video_files(data):
        raise DataError(
            f"{flag} {data} holds neither tokens (tokens.npy, episodes.npy, meta.json) nor videos "
            "(video files, .npy/.npz, .h5, BAIR .tfrecord)"
        )
    # the index tokenize() reads too (cached in the data folder): bad files fail here, before OUT is touched
    lengths = [ref.n_frames for ref in VideoClipDataset(data, m=1, l=0, image_size=tokenizer.image_size,
                                                        cache_episodes=0).episodes]
    num_clips = sum(max(0, n - (m + l) + 1) for n in lengths)
    if num_clips == 0:
        raise DataError(f"{flag} {data}: no episode has the m + l = {m + l} frames a clip needs")
    return DataSource(data, cache_dir, True, num_clips)


def resolve_token_folder(source: DataSource, tokenizer_path: Union[str, Path], is_main: bool) -> Path:
    """The token folder of a checked ``source``, filled once by tokenizing its videos if needed (rank 0
    tokenizes, the other ranks wait at a barrier: every rank reaches it, whatever its own check found)."""
    if is_main and source.tokenize and not is_token_folder(source.folder):
        from sb3_pvdr.tokenizer.tokenize import main as tokenize

        print(f"tokenizing the videos in {source.path} into {source.folder} (once; later runs reuse it)", flush=True)
        tokenize(["--tokenizer", str(tokenizer_path), "--data", str(source.path), "--out", str(source.folder),
                  "--no-progress"])
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return source.folder


def check_enough_clips(num_clips: int, batch_size: int, world_size: int = 1) -> None:
    """At least one batch per process (DistributedSampler drops the remainder: ``num_clips // world_size``)."""
    if (num_clips // world_size) // batch_size == 0:
        raise DataError(
            f"only {num_clips} clips for batch size {batch_size} x {world_size} process(es): "
            "record more data or lower --batch-size"
        )


class ClipBatches:
    """Endless iterator of ``(x (b,m,h,w), y (b,l,h,w))`` batches, sharded across DDP processes with a
    :class:`DistributedSampler` (reshuffled every epoch) and resumable at any step.

    :param dataset: a map-style dataset of ``(x, y)`` token clips (``TokenClipDataset``)
    :param batch_size: clips per batch on this process
    :param rank: this process' rank
    :param world_size: number of processes
    :param seed: seed of the shuffling (identical on all ranks, as DistributedSampler needs)
    :param num_workers: DataLoader workers
    """

    def __init__(self, dataset: Dataset, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 num_workers: int = 0) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.batches_per_epoch = len(self.sampler) // batch_size
        check_enough_clips(len(dataset), batch_size, world_size)  # type: ignore[arg-type]

    def iterate(self, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches from optimizer step ``start_step`` on (so that ``--resume`` sees the same data order)."""
        epoch, skip = divmod(start_step, self.batches_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            indices = list(self.sampler)[skip * self.batch_size : self.batches_per_epoch * self.batch_size]
            loader = DataLoader(
                self.dataset,
                batch_sampler=BatchSampler(indices, self.batch_size, drop_last=True),  # type: ignore[arg-type]
                num_workers=self.num_workers,
                # its own generator: creating a loader must not draw from the global RNG (--resume exactness)
                generator=torch.Generator().manual_seed(self.sampler.seed + epoch),
            )
            yield from loader
            epoch, skip = epoch + 1, 0


def fixed_batch(dataset: Dataset, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clips spread evenly over ``dataset`` (for image grids and evaluation)."""
    size = len(dataset)  # type: ignore[arg-type]
    indices = np.linspace(0, size - 1, num=min(n, size)).round().astype(int)
    xs, ys = zip(*(dataset[int(i)] for i in indices))
    return torch.stack(xs), torch.stack(ys)


# ----------------------------------------------------------------------------------------------
# Image grids: context | true future | predicted futures, decoded by the tokenizer
# ----------------------------------------------------------------------------------------------


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
def prediction_grid(model: nn.Module, tokenizer: Any, x: torch.Tensor, y: torch.Tensor, n_prior: int = 2,
                    use_posterior: bool = True) -> np.ndarray:
    """Image grid for each clip of ``x``/``y``: context | true future, then (optionally) the future generated
    with the posterior mean of z, then futures generated from ``n_prior`` samples of the prior.
    """
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    preds: list[torch.Tensor] = []
    if use_posterior:
        preds.append(model.generate(x, model.posterior(x, y).mode()))
    prior = model.prior(x)
    preds += [model.generate(x, prior.sample()) for _ in range(n_prior)]
    ctx, fut = decode_clip_tokens(tokenizer, x), decode_clip_tokens(tokenizer, y)
    pred_frames = [decode_clip_tokens(tokenizer, p) for p in preds]
    clips = [prediction_rows(ctx[i], fut[i], [p[i] for p in pred_frames]) for i in range(x.shape[0])]
    return tile_frames(torch.cat(clips, dim=0))


# ----------------------------------------------------------------------------------------------
# Distributed helpers
# ----------------------------------------------------------------------------------------------


@dataclass
class DistInfo:
    """Where this process sits in the (possibly 1-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` (nccl on
    GPU, gloo on CPU); a plain ``python -m`` run is a 1-process job.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dev = get_device(device)
    if world_size <= 1:
        return DistInfo(device=dev)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalars over processes (for logging)."""
    if not info.distributed:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


class LossModule(nn.Module):
    """``forward(x, y)`` -> eq. (1) loss and its breakdown, so ``DistributedDataParallel`` (which hooks
    ``forward``) synchronises the gradients of ``VisualDynamicsModel.loss``.
    """

    def __init__(self, model: nn.Module, lambda_1: float) -> None:
        super().__init__()
        self.model = model
        self.lambda_1 = lambda_1

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return self.model.loss(x, y, lambda_1=self.lambda_1)


# ----------------------------------------------------------------------------------------------
# Training state
# ----------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states (for an exact ``--resume`` of a 1-process run), as plain data that
    ``load_checkpoint`` reads back with ``weights_only=True`` (numpy's uint32 key array as a list of ints)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached_gaussian)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (also the numpy tuple with an ndarray that sb3_pvdr <= 0.1.0 saved)."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def warmup_lambda(warmup_steps: int):  # noqa: ANN201 - a LambdaLR factor
    """Linear warm-up over ``warmup_steps`` steps, then constant (the paper trains with a constant Adam lr)."""
    return lambda step: min(1.0, (step + 1) / max(1, warmup_steps))


def save_training_state(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler, step: int, cfg: PretrainConfig,
                        tokenizer_path: str) -> None:
    """Atomically write ``OUT/last.pt`` (everything ``--resume`` needs) and ``OUT/dynamics.pt`` (the model)."""
    save_checkpoint(
        out / "last.pt",
        PRETRAIN_STATE,
        config=asdict(cfg),
        model_config=asdict(model.config),
        state_dict=model.state_dict(),
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        step=step,
        rng=rng_state(),
        tokenizer=str(tokenizer_path),
    )
    model.save(out / "dynamics.pt")


def load_tokenizer(path: Union[str, Path], device: torch.device) -> Any:
    """``VQTokenizer.load`` in eval mode with frozen weights."""
    from sb3_pvdr.tokenizer import VQTokenizer

    tokenizer = VQTokenizer.load(path, map_location="cpu").to(device).eval()
    tokenizer.requires_grad_(False)
    return tokenizer


def build_model(cfg: PretrainConfig, tokenizer: Any, model_config: Optional[dict[str, Any]] = None) -> nn.Module:
    """The dynamics model of ``cfg`` (or of a saved ``model_config``), checked against ``tokenizer``."""
    from sb3_pvdr.dynamics import DynamicsConfig, VisualDynamicsModel

    dyn_cfg = DynamicsConfig.from_dict(model_config) if model_config is not None else cfg.dynamics_config()
    model = VisualDynamicsModel(dyn_cfg)
    model.check_tokenizer(tokenizer)  # CheckpointError on a codebook-size / grid mismatch
    return model


# ----------------------------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    """What :func:`pretrain` hands back (for tests and scripts)."""

    model: nn.Module
    step: int
    last_metrics: dict[str, float]


def pretrain(
    data: Union[str, Path],
    tokenizer_path: Union[str, Path],
    out: Union[str, Path],
    cfg: PretrainConfig,
    resume: bool = False,
    device: str = "auto",
    val_data: Optional[Union[str, Path]] = None,
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
    last_path = out / "last.pt"

    state: Optional[dict[str, Any]] = None
    if resume and last_path.is_file():
        state = load_checkpoint(last_path, PRETRAIN_STATE)
        schedule = {k: getattr(cfg, k) for k in ("steps", "log_every", "save_every", "image_every", "val_every")}
        cfg = PretrainConfig.from_dict({**state["config"], **schedule})
    elif resume:
        if info.is_main:
            print(f"--resume: no {last_path} yet, starting from step 0", flush=True)
    elif last_path.is_file():
        raise ConfigError(f"{out} already holds a run ({last_path}): pass --resume to continue it or pick another --out")

    tokenizer = load_tokenizer(tokenizer_path, info.device)
    # Same seed on every rank: identical initial weights (DDP also broadcasts them from rank 0).
    seed_everything(cfg.seed)
    model = build_model(cfg, tokenizer, state["model_config"] if state else None)

    # Everything is checked before anything is written into OUT (a refused run leaves OUT as it was).
    m, l = model.config.m, model.config.l
    source = check_data_source(data, tokenizer, out / "tokens", m, l, "--data")
    check_enough_clips(source.num_clips, cfg.batch_size, info.world_size)
    val_source = None
    if val_data is not None:
        val_source = check_data_source(val_data, tokenizer, out / "val_tokens", m, l, "--val-data")

    model.to(info.device)
    try:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
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
    dataset = TokenClipDataset(resolve_token_folder(source, tokenizer_path, info.is_main), m, l)
    val_set = None
    if val_source is not None:
        val_set = TokenClipDataset(resolve_token_folder(val_source, tokenizer_path, info.is_main), m, l)
    # Different dropout masks and z samples on each rank; a 1-process --resume restores the exact RNG.
    seed_everything(cfg.seed + 1000 * info.rank + 7919 * step)
    if state is not None and info.is_main:
        set_rng_state(state["rng"])

    loss_module: nn.Module = LossModule(model, cfg.lambda_1)
    if info.distributed:
        loss_module = DistributedDataParallel(loss_module, device_ids=[info.device.index] if info.device.type == "cuda" else None)

    batches = ClipBatches(dataset, cfg.batch_size, info.rank, info.world_size, cfg.seed, cfg.num_workers)
    writer = None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_run_files(out, cfg, model, info.world_size, run_args)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
        writer.add_text("config", "```\n" + (out / "config.yml").read_text() + "```", step)
        grid_set = val_set if val_set is not None else dataset
        grid_x, grid_y = fixed_batch(grid_set, 4)

    autocast = torch.autocast(device_type=info.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    tokens_per_clip = (m + l) * model.config.grid[0] * model.config.grid[1]
    bar = None
    if info.is_main and progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="pretrain", dynamic_ncols=True, file=sys.stdout)

    fork_devices = [info.device] if info.device.type == "cuda" else []
    sums: dict[str, float] = {}
    n_sum, t_log = 0, time.perf_counter()
    last_metrics: dict[str, float] = {}
    data_iter = batches.iterate(start_step=step)
    model.train()
    try:
        while step < cfg.steps:
            x, y = next(data_iter)
            x, y = x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)
            with autocast:
                total, breakdown = loss_module(x, y)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            optimizer.step()
            scheduler.step()
            step += 1

            terms = {"loss/total": total, "grad_norm": grad_norm, **{f"loss/{k}": v for k, v in breakdown._asdict().items()}}
            terms["accuracy"] = terms.pop("loss/accuracy")
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
            n_sum += 1
            if bar is not None:
                bar.update(1)

            if step % cfg.log_every == 0 or step == cfg.steps:
                metrics = all_reduce_mean({k: v / n_sum for k, v in sums.items()}, info)
                elapsed = time.perf_counter() - t_log
                metrics["tokens_per_s"] = n_sum * x.shape[0] * info.world_size * tokens_per_clip / elapsed
                metrics["lr"] = scheduler.get_last_lr()[0]
                last_metrics = metrics
                if writer is not None:
                    for k, v in metrics.items():
                        writer.add_scalar(k, v, step)
                if bar is not None:
                    bar.set_postfix(loss=f"{metrics['loss/total']:.3f}", acc=f"{metrics['accuracy']:.3f}")
                elif info.is_main:  # log files (--no-progress): one line per log step
                    print(f"step {step}/{cfg.steps} " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
                sums, n_sum, t_log = {}, 0, time.perf_counter()

            # Validation and image grids draw their z samples from a forked RNG, so that they leave the
            # training's random stream (and thus --resume) untouched.
            if val_set is not None and cfg.val_every > 0 and (step % cfg.val_every == 0 or step == cfg.steps):
                with torch.random.fork_rng(devices=fork_devices):
                    torch.manual_seed(cfg.seed)
                    val = all_reduce_mean(evaluate_loss(model, val_set, cfg, info), info)
                if writer is not None:
                    for k, v in val.items():
                        writer.add_scalar(f"val/{k}", v, step)
                    if bar is None:
                        print(f"step {step} val " + " ".join(f"{k}={v:.4g}" for k, v in val.items()), flush=True)
            if writer is not None and cfg.image_every > 0 and (step % cfg.image_every == 0 or step == cfg.steps):
                model.eval()
                with torch.random.fork_rng(devices=fork_devices):
                    torch.manual_seed(cfg.seed)
                    grid = prediction_grid(model, tokenizer, grid_x, grid_y)
                writer.add_image("predictions", grid, step, dataformats="HWC")
                model.train()
            if info.is_main and (step % cfg.save_every == 0 or step == cfg.steps):
                save_training_state(out, model, optimizer, scheduler, step, cfg, str(tokenizer_path))
    except KeyboardInterrupt:
        if info.is_main and step > 0:
            save_training_state(out, model, optimizer, scheduler, step, cfg, str(tokenizer_path))
            print(f"\ninterrupted: saved step {step} to {last_path} (continue with --resume)", flush=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    return PretrainResult(model=model, step=step, last_metrics=last_metrics)


@torch.no_grad()
def evaluate_loss(model: nn.Module, dataset: Dataset, cfg: PretrainConfig, info: DistInfo) -> dict[str, float]:
    """Mean eq. (1) terms and teacher-forced token accuracy over ``cfg.val_batches`` fixed batches."""
    model.eval()
    n = min(len(dataset), cfg.val_batches * cfg.batch_size)  # type: ignore[arg-type]
    x_all, y_all = fixed_batch(dataset, n)
    sums: dict[str, float] = {}
    chunks = list(zip(x_all.split(cfg.batch_size), y_all.split(cfg.batch_size)))
    autocast = torch.autocast(device_type=info.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    for x, y in chunks:
        with autocast:
            total, breakdown = model.loss(x.to(info.device), y.to(info.device), lambda_1=cfg.lambda_1)
        for k, v in {"total": total, **breakdown._asdict()}.items():
            sums[k] = sums.get(k, 0.0) + float(v) / len(chunks)
    model.train()
    return sums


def write_run_files(out: Path, cfg: PretrainConfig, model: nn.Module, world_size: int = 1,
                    run_args: Optional[dict[str, Any]] = None) -> None:
    """``config.yml`` (training + full model config), ``args.yml`` (the command-line arguments, when given)
    and ``command.txt`` (rl-zoo's convention)."""
    config = {**asdict(cfg), "betas": list(cfg.betas), "model": _plain(asdict(model.config))}
    atomic_write_bytes(out / "config.yml", yaml.safe_dump(config, sort_keys=False).encode())
    if run_args is not None:
        atomic_write_bytes(out / "args.yml", yaml.safe_dump(run_args, sort_keys=False).encode())
    launcher = ["torchrun", f"--nproc_per_node={world_size}"] if world_size > 1 else ["python"]
    command = " ".join([*launcher, "-m", "sb3_pvdr.pretrain", *sys.argv[1:]])
    atomic_write_bytes(out / "command.txt", (command + "\n").encode())


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (yaml.safe_dump writes plain lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_pvdr.pretrain",
        description="Pre-train the PVDR visual dynamics model (CVAE over token clips, eq. (1) of the paper). "
        "Distributed: torchrun --nproc_per_node N -m sb3_pvdr.pretrain ...",
    )
    parser.add_argument("--data", required=True, help="token folder (from sb3_pvdr.tokenizer.tokenize) or folder of videos")
    parser.add_argument("--tokenizer", required=True, help="trained VQTokenizer checkpoint (tokenizer.pt)")
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
    parser.add_argument("--resume", action="store_true", help="continue OUT/last.pt (model, optimizer, step)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (1 is often fastest on a busy shared CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar (log files)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """``--config`` profile or file, then the explicit command-line overrides."""
    cfg = PretrainConfig.load(args.config)
    overrides = {
        key: getattr(args, key)
        for key in ("steps", "batch_size", "lr", "bf16", "num_workers", "seed", "log_every", "save_every",
                    "image_every", "val_every")
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


if __name__ == "__main__":
    main()
