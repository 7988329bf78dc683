"""Pre-training data: ``--data`` / ``--val-data`` checked against the tokenizer (token folders, or videos
tokenized once into the run folder), and endless resumable DDP-sharded batches of token clips."""

# b - batch, m context frames, l future frames, h w - token grid

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from sb3_pvdr.common.errors import DataError


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
                      flag: str = "--data", frame_step: int = 1) -> DataSource:
    """Check ``data`` without writing anything: a token folder of ``tokenizer``'s codebook and grid (or the
    ``cache_dir`` an earlier run tokenized it into), or videos long enough for ``m + l`` frame clips
    (every ``frame_step``-th frame).

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
            return DataSource(data, folder, False, len(TokenClipDataset(folder, m, l, frame_step=frame_step)))
    if not find_video_files(data):
        raise DataError(
            f"{flag} {data} holds neither tokens (tokens.npy, episodes.npy, meta.json) nor videos "
            "(video files, .npy/.npz, .h5, BAIR .tfrecord)"
        )
    # the index tokenize() reads too (cached in the data folder): bad files fail here, before OUT is touched
    lengths = [ref.n_frames for ref in VideoClipDataset(data, m=1, l=0, image_size=tokenizer.image_size,
                                                        cache_episodes=0).episodes]
    span = (m + l - 1) * frame_step + 1
    num_clips = sum(max(0, n - span + 1) for n in lengths)
    if num_clips == 0:
        every = f" (every {frame_step}th frame: {span} frames of an episode)" if frame_step > 1 else ""
        raise DataError(f"{flag} {data}: no episode has the m + l = {m + l} frames a clip needs{every}")
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

    def iterate(self, start_step: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
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


def fixed_batch(dataset: Dataset, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``n`` clips spread evenly over ``dataset`` (for image grids and evaluation): ``(x, y)``, or ``(x, y, g)``
    from a dataset with goals."""
    size = len(dataset)  # type: ignore[arg-type]
    indices = np.linspace(0, size - 1, num=min(n, size)).round().astype(int)
    return tuple(torch.stack(parts) for parts in zip(*(dataset[int(i)] for i in indices)))


__all__ = [
    "ClipBatches",
    "DataSource",
    "check_data_source",
    "check_enough_clips",
    "check_tokens_match",
    "fixed_batch",
    "is_token_folder",
    "read_token_meta",
    "resolve_token_folder",
]
