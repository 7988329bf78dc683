"""Token folders: a whole video dataset encoded once by the frame tokenizer, for the dynamics model.

Layout of a token folder (written atomically by :func:`write_token_folder`)::

    tokens.npy    uint8 (K <= 256) or uint16, (N_frames, h, w): every episode's token grids, concatenated
    episodes.npy  int64 (E, 2): [start, end) frame index of each episode in tokens.npy
    meta.json     codebook_size, grid, num_frames, num_episodes, dtype + what the writer passed
                  (image_size, tokenizer path and hash, source dataset, ...)

``tokens.npy`` is memory-mapped by :class:`TokenClipDataset`, so pre-training never loads it whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from sb3_pvdr.common.checkpoint import umask_mode
from sb3_pvdr.common.errors import ConfigError, DataError

PathLike = Union[str, os.PathLike]

TOKEN_FORMAT_VERSION = 1
TOKEN_FILES = ("tokens.npy", "episodes.npy", "meta.json")


def token_dtype(codebook_size: int) -> np.dtype:
    """Smallest unsigned dtype holding token ids ``0..codebook_size-1``."""
    if codebook_size <= 0 or codebook_size > 2**16:
        raise ConfigError(f"codebook_size must be in [1, 65536] for a token file, got {codebook_size}")
    return np.dtype(np.uint8) if codebook_size <= 256 else np.dtype(np.uint16)


def write_token_folder(
    out_dir: PathLike,
    episodes_tokens: Iterable[Any],
    meta: dict[str, Any],
    *,
    overwrite: bool = False,
    chunk_frames: int = 65536,
) -> Path:
    """Write the token grids of a dataset's episodes as a token folder, atomically.

    Episodes are streamed to disk (never all held in memory), written into a temporary folder
    beside ``out_dir`` and renamed into place at the end, so a crash leaves no half-written folder.

    :param out_dir: the token folder to create
    :param episodes_tokens: one integer array (or LongTensor) ``(T, h, w)`` per episode
    :param meta: JSON-serialisable metadata; must hold ``codebook_size`` (K); the tokenizer's
        ``image_size``, path and hash are expected too (stored as given)
    :param overwrite: replace an existing ``out_dir`` (else a DataError)
    :param chunk_frames: frames copied at a time when the final memmap is filled
    :return: ``out_dir``
    :raises DataError: bad token arrays (shape, grid mismatch between episodes, ids outside [0, K)),
        no episodes, or ``out_dir`` exists without ``overwrite``
    """
    out_dir = Path(out_dir)
    if "codebook_size" not in meta:
        raise ConfigError("write_token_folder: meta must hold 'codebook_size' (the tokenizer's K)")
    codebook_size = int(meta["codebook_size"])
    dtype = token_dtype(codebook_size)
    if out_dir.exists() and not overwrite:
        raise DataError(f"{out_dir} already exists; delete it or pass overwrite=True")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        raw_path = tmp_dir / "tokens.raw"
        bounds: list[tuple[int, int]] = []
        grid: Optional[tuple[int, int]] = None
        n_frames = 0
        with open(raw_path, "wb") as raw:
            for e, tokens in enumerate(episodes_tokens):
                if isinstance(tokens, torch.Tensor):
                    tokens = tokens.detach().cpu().numpy()
                tokens = np.asarray(tokens)
                if tokens.ndim != 3 or tokens.shape[0] == 0 or not np.issubdtype(tokens.dtype, np.integer):
                    raise DataError(f"episode {e}: tokens must be a non-empty integer array (T, h, w), got {tokens.dtype} {tokens.shape}")
                if grid is None:
                    grid = (int(tokens.shape[1]), int(tokens.shape[2]))
                elif tokens.shape[1:] != grid:
                    raise DataError(f"episode {e}: token grid {tuple(tokens.shape[1:])} differs from episode 0's {grid}")
                if tokens.min() < 0 or tokens.max() >= codebook_size:
                    raise DataError(
                        f"episode {e}: token ids in [{tokens.min()}, {tokens.max()}] outside [0, {codebook_size}) "
                        "(codebook_size in meta does not match the tokenizer?)"
                    )
                raw.write(np.ascontiguousarray(tokens, dtype=dtype).tobytes())
                bounds.append((n_frames, n_frames + len(tokens)))
                n_frames += len(tokens)
        if grid is None:
            raise DataError(f"{out_dir}: no episodes to write")

        # the .npy header needs the final frame count: fill a fresh memmap from the raw stream
        tokens_out = np.lib.format.open_memmap(tmp_dir / "tokens.npy", mode="w+", dtype=dtype, shape=(n_frames, *grid))
        per_frame = grid[0] * grid[1]
        with open(raw_path, "rb") as raw:
            for start in range(0, n_frames, chunk_frames):
                stop = min(start + chunk_frames, n_frames)
                chunk = np.fromfile(raw, dtype=dtype, count=(stop - start) * per_frame)
                tokens_out[start:stop] = chunk.reshape(stop - start, *grid)
        tokens_out.flush()
        del tokens_out
        raw_path.unlink()

        np.save(tmp_dir / "episodes.npy", np.asarray(bounds, dtype=np.int64).reshape(-1, 2))
        full_meta = {
            **meta,
            "format_version": TOKEN_FORMAT_VERSION,
            "codebook_size": codebook_size,
            "grid": list(grid),
            "num_frames": n_frames,
            "num_episodes": len(bounds),
            "dtype": dtype.name,
        }
        (tmp_dir / "meta.json").write_text(json.dumps(full_meta, indent=2, default=str))
        tmp_dir.chmod(umask_mode(directory=True))  # mkdtemp's folder is private (0700); a plain mkdir's is not

        if out_dir.exists():  # overwrite: swap the old folder out before the new one goes in
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
            os.replace(tmp_dir, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir


def read_token_folder(folder: PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Open a token folder: ``(tokens memmap (N, h, w), episodes int64 (E, 2), meta)``, all checked.

    :raises DataError: missing folder or file, corrupt or inconsistent contents
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: token folder not found (create it with the tokenizer's tokenize command)")
    for name in TOKEN_FILES:
        if not (folder / name).is_file():
            raise DataError(f"{folder}: missing {name} (incomplete token folder; run tokenize again)")
    try:
        meta = json.loads((folder / "meta.json").read_text())
        tokens = np.load(folder / "tokens.npy", mmap_mode="r", allow_pickle=False)
        episodes = np.load(folder / "episodes.npy", allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{folder}: corrupt token folder ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict) or not {"codebook_size", "grid", "num_frames"} <= set(meta):
        raise DataError(f"{folder}/meta.json: needs codebook_size, grid and num_frames")
    expected_shape = (int(meta["num_frames"]), *map(int, meta["grid"]))
    if tokens.shape != expected_shape or tokens.dtype != token_dtype(int(meta["codebook_size"])):
        raise DataError(
            f"{folder}/tokens.npy: {tokens.dtype} {tokens.shape} does not match meta.json "
            f"({token_dtype(int(meta['codebook_size']))} {expected_shape})"
        )
    if episodes.ndim != 2 or episodes.shape[1] != 2 or not np.issubdtype(episodes.dtype, np.integer):
        raise DataError(f"{folder}/episodes.npy: expected int (E, 2) [start, end) rows, got {episodes.dtype} {episodes.shape}")
    starts, ends = episodes[:, 0], episodes[:, 1]
    if len(episodes) and (
        starts[0] < 0 or ends[-1] > len(tokens) or np.any(ends <= starts) or np.any(starts[1:] < ends[:-1])
    ):
        raise DataError(f"{folder}/episodes.npy: episode bounds are not sorted, non-empty and inside [0, {len(tokens)}]")
    return tokens, episodes.astype(np.int64), meta


class TokenClipDataset(Dataset):
    """Windows of ``m + l`` consecutive token grids from a token folder (paper §3.2, eq. (1) inputs).

    Each item is ``(x, y)``: ``x`` LongTensor ``(m, h, w)``, the context frames' tokens, and ``y``
    LongTensor ``(l, h, w)``, the future frames' tokens. Windows never cross episode boundaries;
    episodes shorter than ``m + l`` frames give no window. ``tokens.npy`` is memory-mapped (opened
    lazily in each DataLoader worker).

    :param folder: token folder written by :func:`write_token_folder`
    :param m: number of context frames (paper: 2)
    :param l: number of future frames (paper: 6)
    :param stride: step between the first frames of consecutive windows
    :param frame_step: every ``frame_step``-th frame inside a window (``DynamicsConfig.frame_step``): a window
        spans ``(m + l - 1) * frame_step + 1`` frames of its episode
    :param goal: items are ``(x, y, g)`` with ``g`` LongTensor ``(h, w)``, the last frame of the window's episode
        (hindsight goal of a goal-conditioned prior, ``DynamicsConfig.prior_goal``)
    """

    def __init__(self, folder: PathLike, m: int = 2, l: int = 6, *, stride: int = 1, frame_step: int = 1,  # noqa: E741
                 goal: bool = False) -> None:  # fmt: skip
        if m < 1 or l < 0 or stride < 1 or frame_step < 1:
            raise ConfigError(f"need m >= 1, l >= 0, stride >= 1, frame_step >= 1, got m={m}, l={l}, stride={stride}, "
                              f"frame_step={frame_step}")
        self.folder = Path(folder)
        self.m, self.l, self.stride, self.frame_step, self.goal = m, l, stride, frame_step, bool(goal)
        _, episodes, self.meta = read_token_folder(self.folder)
        self.episodes = episodes
        lengths = episodes[:, 1] - episodes[:, 0]
        span = self.span
        counts = np.where(lengths >= span, (lengths - span) // stride + 1, 0)
        self.num_short_episodes = int((lengths < span).sum())
        if counts.sum() == 0:
            every = f" (every {frame_step}th frame: {span} frames of an episode)" if frame_step > 1 else ""
            raise DataError(f"{self.folder}: no episode has the m + l = {m + l} frames a window needs{every}")
        self._window_starts = np.concatenate([[0], np.cumsum(counts)])
        self._tokens: Optional[np.ndarray] = None

    @property
    def span(self) -> int:
        """Frames of its episode one window covers."""
        return (self.m + self.l - 1) * self.frame_step + 1

    @property
    def codebook_size(self) -> int:
        return int(self.meta["codebook_size"])

    @property
    def grid_size(self) -> tuple[int, int]:
        h, w = self.meta["grid"]
        return int(h), int(w)

    @property
    def tokens(self) -> np.ndarray:
        """The ``(N, h, w)`` memmap (opened on first use in each process)."""
        if self._tokens is None:
            self._tokens = np.load(self.folder / "tokens.npy", mmap_mode="r", allow_pickle=False)
        return self._tokens

    def __len__(self) -> int:
        return int(self._window_starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """``(episode index, first frame index in tokens.npy)`` of window ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range [0, {len(self)})")
        episode = int(np.searchsorted(self._window_starts, index, side="right")) - 1
        return episode, int(self.episodes[episode, 0] + (index - self._window_starts[episode]) * self.stride)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        episode, start = self.locate(index)
        window = torch.from_numpy(self.tokens[start : start + self.span : self.frame_step].astype(np.int64))
        if not self.goal:
            return window[: self.m], window[self.m :]
        last = torch.from_numpy(self.tokens[int(self.episodes[episode, 1]) - 1].astype(np.int64))
        return window[: self.m], window[self.m :], last

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tokens"] = None  # a memmap would be pickled as a full copy of the array
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(folder='{self.folder}', episodes={len(self.episodes)}, windows={len(self)}, "
            f"m={self.m}, l={self.l}, grid={self.grid_size}, K={self.codebook_size})"
        )


__all__ = ["write_token_folder", "read_token_folder", "TokenClipDataset", "token_dtype"]
