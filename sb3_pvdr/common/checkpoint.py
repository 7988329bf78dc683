"""Atomic checkpoints with a kind tag, so a crash never leaves a half-written file and a
checkpoint of the wrong kind (tokenizer vs dynamics model) is refused with a clear message."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

from sb3_pvdr.common.errors import CheckpointError

PathLike = Union[str, os.PathLike]


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` to a temporary file, then atomically rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: PathLike, kind: str, **payload: Any) -> None:
    """Save ``payload`` (state dicts, configs as plain dicts, step counters) tagged with ``kind``."""
    atomic_torch_save({"kind": kind, "format_version": 1, **payload}, path)


def load_checkpoint(path: PathLike, kind: str, map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` and check its kind.

    :param path: file to read
    :param kind: the expected kind tag (e.g. ``"vq_tokenizer"``, ``"visual_dynamics"``)
    :param map_location: device for the tensors
    :raises CheckpointError: missing, corrupt, or of another kind
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupt zip, truncated file, not a torch file at all
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict) or "kind" not in data:
        raise CheckpointError(f"{path} is not an sb3_pvdr checkpoint (no 'kind' tag)")
    if data["kind"] != kind:
        raise CheckpointError(f"{path} holds a '{data['kind']}' checkpoint, expected '{kind}'")
    return data
