"""Clip datasets over action-free videos: windows of ``m + l`` consecutive frames (paper §3.2).

A window starting at frame ``s`` of an episode holds the ``m`` context frames ``X_t`` followed by the
``l`` future frames ``Y_t``. Windows never cross episode (file / record) boundaries, so a clip is
never stitched from two videos.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from sb3_pvdr.common.checkpoint import atomic_write_bytes
from sb3_pvdr.common.errors import ConfigError, DataError
from sb3_pvdr.video.readers import EpisodeRef, file_format, probe_file, read_episode, read_frames

PathLike = Union[str, os.PathLike]
ImageSize = Union[int, tuple[int, int], None]

INDEX_CACHE_NAME = ".sb3_pvdr_index.json"
INDEX_CACHE_VERSION = 1
# formats whose frames can only be had by decoding the whole episode: those are kept in an LRU cache
WHOLE_EPISODE_FORMATS = ("npz", "video", "tfrecord")


def find_video_files(source: Union[PathLike, Sequence[PathLike]]) -> list[Path]:
    """The supported files under ``source`` (a file, a folder searched recursively, or a list of both).

    Hidden files (names starting with ``.``, e.g. half-written temporary files) are ignored.
    """
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files: list[Path] = []
    for item in sources:
        path = Path(item).expanduser()
        if path.is_dir():
            found = [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and file_format(p) is not None
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]
            files.extend(found)
        elif path.is_file():
            if file_format(path) is None:
                raise DataError(f"{path}: unsupported file type (videos, .npy/.npz, .h5/.hdf5 or BAIR .tfrecord)")
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return files


def _parse_image_size(image_size: ImageSize) -> Optional[tuple[int, int]]:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = tuple(int(s) for s in image_size)  # type: ignore[assignment]
    if len(size) != 2 or min(size) <= 0:
        raise ConfigError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return size  # type: ignore[return-value]


def resize_frames(frames: np.ndarray, size: Optional[tuple[int, int]], center_crop: bool = True) -> np.ndarray:
    """Resize ``uint8 (T, H, W, 3)`` frames to ``size = (height, width)``.

    :param frames: the frames
    :param size: target ``(height, width)``; ``None`` keeps the frames as they are
    :param center_crop: first crop the centre to the target aspect ratio (no distortion); otherwise stretch
    """
    if size is None or frames.shape[1:3] == tuple(size):
        return frames
    import cv2

    height, width = size
    h, w = frames.shape[1:3]
    if center_crop and h * width != w * height:
        if h * width > w * height:  # too tall: crop rows
            new_h = max(1, round(w * height / width))
            top = (h - new_h) // 2
            frames = frames[:, top : top + new_h]
        else:  # too wide: crop columns
            new_w = max(1, round(h * width / height))
            left = (w - new_w) // 2
            frames = frames[:, :, left : left + new_w]
        h, w = frames.shape[1:3]
    # area averaging when shrinking avoids aliasing; linear when enlarging
    interpolation = cv2.INTER_AREA if height <= h and width <= w else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=interpolation) for f in frames])


class VideoClipDataset(Dataset):
    """Windows of ``m + l`` consecutive frames from action-free videos, for video pre-training.

    Paper: PVDR, Luo, Zhou, Lu, ECCV 2024, §3.2 (context frames ``X_t``, future frames ``Y_t``).

    Each item is a ``torch.uint8`` tensor of shape ``(m + l, H, W, 3)`` (channels-last, the layout the
    tokenizer's ``encode`` takes): ``clip[:m]`` are the context frames, ``clip[m:]`` the future frames.

    The index (episodes and their lengths) is built at construction: array files are checked through
    their headers, videos and BAIR TFRecords are decoded / parsed once, and the result is cached in
    ``<folder>/.sb3_pvdr_index.json`` (keyed by file size and modification time) so that the next
    construction decodes nothing. Frames are read lazily in ``__getitem__``; whole-episode formats
    (videos, npz, TFRecord) keep the last ``cache_episodes`` decoded episodes per worker. Works with
    a ``torch.utils.data.DataLoader`` with workers (file handles are opened per read).

    :param source: a folder (searched recursively), a file, or a list of them. Videos (mp4, gif,
        webm, avi, mov, mkv), ``.npy``/``.npz`` arrays ``uint8 (T, H, W, 3)`` (or ``(N, T, H, W, 3)``
        for N episodes), HDF5 files with such a dataset, BAIR robot-pushing TFRecords.
    :param m: number of context frames (paper: 2)
    :param l: number of future frames (paper: 6)
    :param image_size: output frame size, an int (square) or ``(height, width)``; ``None`` keeps the
        native size (then all episodes must share it to be batched)
    :param stride: step between the first frames of two consecutive windows of an episode
    :param frame_step: temporal subsampling inside a window (take every ``frame_step``-th frame), for
        videos recorded at a higher rate than the agent's control step
    :param center_crop: crop the centre to the output aspect ratio before resizing (else stretch)
    :param array_key: array name in ``.npz`` files
    :param hdf5_key: dataset path in HDF5 files (``None``: searched, see ``readers.HDF5_DEFAULT_KEYS``)
    :param bair_camera: camera of the BAIR records (``"{t}/<camera>/encoded"``)
    :param bair_image_size: side of the raw BAIR frames (64 in softmotion30_44k)
    :param skip_bad: warn and skip unreadable, corrupt, wrongly shaped or too-short episodes instead
        of raising :class:`~sb3_pvdr.common.errors.DataError`
    :param full_check: decode every array file at construction (catches corrupt payloads early)
    :param cache_index: read/write the index cache file in the source folder (when it is a folder)
    :param cache_episodes: decoded episodes kept in memory per worker for whole-episode formats
        (``None``: keep every episode once decoded, for small datasets read many times)
    """

    def __init__(
        self,
        source: Union[PathLike, Sequence[PathLike]],
        m: int = 2,
        l: int = 6,  # noqa: E741 (the paper's name)
        image_size: ImageSize = 64,
        *,
        stride: int = 1,
        frame_step: int = 1,
        center_crop: bool = True,
        array_key: str = "frames",
        hdf5_key: Optional[str] = None,
        bair_camera: str = "image_aux1",
        bair_image_size: int = 64,
        skip_bad: bool = False,
        full_check: bool = False,
        cache_index: bool = True,
        cache_episodes: Optional[int] = 4,
    ) -> None:
        if m < 1 or l < 0:
            raise ConfigError(f"need m >= 1 context frames and l >= 0 future frames, got m={m}, l={l}")
        if stride < 1 or frame_step < 1:
            raise ConfigError(f"stride and frame_step must be >= 1, got stride={stride}, frame_step={frame_step}")
        self.m = m
        self.l = l
        self.image_size = _parse_image_size(image_size)
        self.stride = stride
        self.frame_step = frame_step
        self.center_crop = center_crop
        self.bair_image_size = bair_image_size
        self.skip_bad = skip_bad
        self.cache_episodes = cache_episodes
        self._probe_options = dict(
            array_key=array_key,
            hdf5_key=hdf5_key,
            bair_camera=bair_camera,
            bair_image_size=bair_image_size,
            full_check=full_check,
        )
        self.source = source
        self.skipped: list[str] = []  # "<file>: <reason>" for every episode skipped with skip_bad

        files = find_video_files(source)
        if not files:
            raise DataError(f"{source}: no video files found (videos, .npy/.npz, .h5/.hdf5 or BAIR .tfrecord)")
        root = Path(source).expanduser() if isinstance(source, (str, os.PathLike)) else None
        cache_root = root if cache_index and root is not None and root.is_dir() else None
        self.episodes: list[EpisodeRef] = []
        for ref in self._index(files, cache_root):
            if ref.n_frames < self.span:
                self._bad(
                    f"{ref.name}: too short, {ref.n_frames} frames < {self.span} needed for a window of "
                    f"m + l = {m + l} frames (frame_step={frame_step})",
                )
                continue
            self.episodes.append(ref)
        if not self.episodes:
            raise DataError(f"{source}: no episode with at least {self.span} frames ({len(self.skipped)} skipped)")
        counts = np.array([(ref.n_frames - self.span) // stride + 1 for ref in self.episodes], dtype=np.int64)
        self._window_starts = np.concatenate([[0], np.cumsum(counts)])
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    # -----------------------------------------------------------------------------------------
    # index
    # -----------------------------------------------------------------------------------------

    @property
    def span(self) -> int:
        """Number of raw frames one window covers."""
        return (self.m + self.l - 1) * self.frame_step + 1

    def _bad(self, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message)
        warnings.warn(f"skipping {message}", stacklevel=3)
        self.skipped.append(message)

    def _index(self, files: list[Path], cache_root: Optional[Path]) -> list[EpisodeRef]:
        cache_path = cache_root / INDEX_CACHE_NAME if cache_root is not None else None
        cached = self._read_index_cache(cache_path)
        new_entries: dict[str, Any] = {}
        refs: list[EpisodeRef] = []
        for path in files:
            stat = path.stat()
            rel = str(path.relative_to(cache_root)) if cache_root is not None else str(path)
            entry = cached.get(rel)
            if entry is not None and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
                file_refs = [EpisodeRef(path=str(path), **e) for e in entry["episodes"]]
            else:
                try:
                    file_refs = probe_file(path, **self._probe_options)
                except DataError as exc:
                    self._bad(str(exc))
                    continue
            new_entries[rel] = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "episodes": [{k: v for k, v in r.to_dict().items() if k != "path"} for r in file_refs],
            }
            refs.extend(file_refs)
        if cache_path is not None and new_entries != cached:
            payload = {"version": INDEX_CACHE_VERSION, "options": self._probe_options, "files": new_entries}
            try:
                atomic_write_bytes(cache_path, json.dumps(payload).encode())
            except OSError:  # read-only dataset folder: index again next time
                pass
        return refs

    def _read_index_cache(self, cache_path: Optional[Path]) -> dict[str, Any]:
        if cache_path is None or not cache_path.is_file():
            return {}
        try:
            payload = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            return {}
        if payload.get("version") != INDEX_CACHE_VERSION or payload.get("options") != self._probe_options:
            return {}
        return payload.get("files", {})

    # -----------------------------------------------------------------------------------------
    # reading
    # -----------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        """Total number of (native) frames over the indexed episodes."""
        return int(sum(ref.n_frames for ref in self.episodes))

    def __len__(self) -> int:
        return int(self._window_starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """``(episode index, first frame)`` of window ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range [0, {len(self)})")
        episode = int(np.searchsorted(self._window_starts, index, side="right")) - 1
        return episode, int(index - self._window_starts[episode]) * self.stride

    def _raw_frames(self, episode: int, start: int, stop: int) -> np.ndarray:
        ref = self.episodes[episode]
        if ref.fmt not in WHOLE_EPISODE_FORMATS:
            return read_frames(ref, start, stop, bair_image_size=self.bair_image_size)
        frames = self._cache.get(episode)
        if frames is None:
            frames = read_episode(ref, bair_image_size=self.bair_image_size)
            if self.cache_episodes is None or self.cache_episodes > 0:
                self._cache[episode] = frames
                while self.cache_episodes is not None and len(self._cache) > self.cache_episodes:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(episode)
        return frames[start:stop]

    def __getitem__(self, index: int) -> torch.Tensor:
        episode, start = self.locate(index)
        frames = self._raw_frames(episode, start, start + self.span)[:: self.frame_step]
        frames = np.ascontiguousarray(resize_frames(frames, self.image_size, self.center_crop))
        if not frames.flags.writeable:  # a memory-mapped .npy slice: torch wants its own memory
            frames = frames.copy()
        return torch.from_numpy(frames)

    def read_episode(self, episode: int) -> np.ndarray:
        """All frames of one episode, resized: ``uint8 (T, H, W, 3)`` (for the ``tokenize`` command)."""
        ref = self.episodes[episode]
        frames = read_episode(ref, bair_image_size=self.bair_image_size)
        return resize_frames(frames, self.image_size, self.center_crop)

    def iter_episodes(self) -> Iterator[np.ndarray]:
        """Every episode in index order, resized (see :meth:`read_episode`)."""
        for episode in range(len(self.episodes)):
            yield self.read_episode(episode)

    def __getstate__(self) -> dict[str, Any]:
        # workers start with an empty cache instead of a pickled copy of decoded videos
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state

    def __repr__(self) -> str:
        size = "native" if self.image_size is None else f"{self.image_size[0]}x{self.image_size[1]}"
        return (
            f"{type(self).__name__}(source={self.source!r}, episodes={len(self.episodes)}, frames={self.num_frames}, "
            f"windows={len(self)}, m={self.m}, l={self.l}, image_size={size}, skipped={len(self.skipped)})"
        )


__all__ = ["VideoClipDataset", "find_video_files", "resize_frames"]
