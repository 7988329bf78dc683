"""Atomic checkpoints with a kind tag, so a crash never leaves a half-written file and a
checkpoint of the wrong kind (tokenizer vs dynamics model) is refused with a clear message.

A checkpoint is data, never code: every kind is read with ``torch.load(..., weights_only=True)``, whose
unpickler builds only tensors and plain containers (dict, list, tuple, str, numbers, None) and refuses any
other global (a pickle that would run ``os.system`` on load is a :class:`CheckpointError`, and nothing runs).
Payloads are saved as such plain data; the only other globals allowed are the three numpy ones that rebuild
a uint32 ``numpy.ndarray`` (``pretrain_state`` files of sb3_pvdr <= 0.1.0 stored numpy's RNG state as one).
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from sb3_pvdr.common.errors import CheckpointError, one_line

PathLike = Union[str, os.PathLike]

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

# Globals a uint32 numpy array pickles to (``ndarray.__reduce__`` + its dtype's class): exactly what the
# legacy numpy RNG state (``np.random.get_state()[1]``, uint32 keys) needs. Both module paths of
# ``_reconstruct``: numpy 1.x wrote ``numpy.core``, numpy 2.x writes ``numpy._core``.
NUMPY_ARRAY_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
    (_np_reconstruct, "numpy._core.multiarray._reconstruct"),
    (_np_reconstruct, "numpy.core.multiarray._reconstruct"),
]


def umask_mode(directory: bool = False) -> int:
    """The mode ``open()`` / ``mkdir()`` would give a new file (``0o666``) or folder (``0o777``) under the process's
    umask. ``mkstemp`` / ``mkdtemp`` create private ones (0600 / 0700): what is renamed into place gets this mode, so an
    atomic write leaves the same permissions as a plain one."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


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
        os.chmod(tmp, umask_mode())
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
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: PathLike, kind: str, **payload: Any) -> None:
    """Save ``payload`` (state dicts, configs as plain dicts, step counters) tagged with ``kind``.

    Only tensors and plain containers load back (:func:`read_checkpoint`): store numpy arrays as lists or
    tensors, objects as their plain state.
    """
    atomic_torch_save({"kind": kind, "format_version": 1, **payload}, path)


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` as data only (``weights_only=True``), any kind.

    :param path: file to read
    :param map_location: device for the tensors
    :raises CheckpointError: missing, corrupt, holding something other than data (objects whose unpickling
        would run code are refused before they are built), or without a ``kind`` tag
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(NUMPY_ARRAY_GLOBALS):
            data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL [\w.]+|but got (<class [^>]+>)", str(exc))
        if found is None:  # a garbled pickle, or not a torch file (the weights-only unpickler cannot parse it)
            raise CheckpointError(f"cannot read checkpoint {path}: not a torch checkpoint of tensors and plain data") from exc
        # the data-only unpickler met a global it does not build (a class, a function such as os.system)
        raise CheckpointError(
            f"{path} holds more than tensors and plain data ({found.group(1) or found.group(0)}): refused, a "
            "checkpoint is loaded as data, never as code; re-create it with sb3_pvdr"
        ) from exc
    except Exception as exc:  # corrupt zip, truncated file, not a torch file at all
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {one_line(str(exc))[:300]}") from exc
    if not isinstance(data, dict) or "kind" not in data:
        raise CheckpointError(f"{path} is not an sb3_pvdr checkpoint (no 'kind' tag)")
    return data


def load_checkpoint(path: PathLike, kind: str, map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (as data only, see :func:`read_checkpoint`) and
    check its kind.

    :param path: file to read
    :param kind: the expected kind tag (e.g. ``"vq_tokenizer"``, ``"visual_dynamics"``)
    :param map_location: device for the tensors
    :raises CheckpointError: missing, corrupt, not plain data, or of another kind
    """
    data = read_checkpoint(path, map_location)
    if data["kind"] != kind:
        raise CheckpointError(f"{path} holds a '{data['kind']}' checkpoint, expected '{kind}'")
    return data
