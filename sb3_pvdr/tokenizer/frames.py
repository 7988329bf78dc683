"""Single frames for tokenizer training, read through :mod:`sb3_pvdr.video`'s readers (video files,
npz/npy arrays, HDF5, BAIR TFRecords) and held in memory as one ``uint8 (N, H, W, 3)`` array."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from sb3_pvdr.common.errors import DataError
from sb3_pvdr.video import VideoClipDataset


def load_frames(
    source: Union[str, os.PathLike],
    image_size: int,
    *,
    frame_step: int = 1,
    max_frames: Optional[int] = None,
    seed: int = 0,
) -> np.ndarray:
    """Every ``frame_step``-th frame of every episode under ``source``, resized to ``image_size``.

    :param source: a folder (searched recursively) or a file in any format :class:`VideoClipDataset` reads
    :param image_size: output side in pixels
    :param frame_step: keep every ``frame_step``-th frame of each episode (neighbouring frames are near-duplicates)
    :param max_frames: keep at most this many frames, drawn uniformly at random (``None``: all)
    :param seed: seed of that draw
    :return: ``uint8 (N, image_size, image_size, 3)``
    :raises DataError: missing folder, no readable video, corrupt file, wrong frame shapes
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data not found: {path}; pass a folder of videos / .npz episodes (e.g. from sb3_pvdr.video.record)")
    dataset = VideoClipDataset(path, m=1, l=0, image_size=image_size, cache_episodes=0)
    frames = np.concatenate([episode[::frame_step] for episode in dataset.iter_episodes()])
    if max_frames is not None and len(frames) > max_frames:
        keep = np.sort(np.random.default_rng(seed).choice(len(frames), size=max_frames, replace=False))
        frames = frames[keep]
    if len(frames) == 0:
        raise DataError(f"{path}: no frames")
    return np.ascontiguousarray(frames)
