"""Checkpoints are data, never code: every kind loads with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import random
import sys

import numpy as np
import pytest
import torch

from sb3_pvdr.common.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from sb3_pvdr.common.errors import CheckpointError
from sb3_pvdr.pretrain import PRETRAIN_STATE, rng_state, set_rng_state


class CreatesMarker:
    """Unpickling this runs a shell command (harmless here: it creates a marker file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_torch_zip(path, marker) -> None:
    torch.save({"kind": "vq_tokenizer", "state_dict": {}, "config": CreatesMarker(str(marker))}, path)


def write_plain_pickle(path, marker) -> None:
    with open(path, "wb") as f:
        pickle.dump({"kind": "vq_tokenizer", "payload": CreatesMarker(str(marker))}, f, protocol=2)


@pytest.mark.skipif(sys.platform == "win32", reason="uses `touch`")
@pytest.mark.parametrize("write", [write_torch_zip, write_plain_pickle], ids=["torch-save-zip", "plain-pickle"])
def test_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, write):
    path, marker = tmp_path / "evil.pt", tmp_path / "MARKER"
    write(path, marker)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, "vq_tokenizer")
    message = str(exc.value)
    assert "\n" not in message and str(path) in message
    assert "posix.system" in message or "os.system" in message or "never as code" in message
    assert not marker.exists(), "loading a checkpoint executed code"


def test_every_payload_kind_round_trips_as_data(tmp_path):
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([weight], betas=(0.9, 0.99))
    weight.sum().backward()
    optimizer.step()  # creates moments: tensors in the state dict
    payload = dict(config={"betas": (0.9, 0.99), "grid": [4, 4], "name": "cpu", "dropout": None}, step=7,
                   state_dict={"w": torch.arange(3.0)}, optimizer=optimizer.state_dict(), rng=rng_state(),
                   numpy_rng=np.random.default_rng(0).bit_generator.state, torch_rng=torch.get_rng_state())
    save_checkpoint(tmp_path / "last.pt", PRETRAIN_STATE, **payload)
    data = load_checkpoint(tmp_path / "last.pt", PRETRAIN_STATE)
    assert data["step"] == 7 and data["config"]["betas"] == (0.9, 0.99)
    assert torch.equal(data["state_dict"]["w"], torch.arange(3.0)) and data["optimizer"]["state"]
    assert isinstance(data["rng"]["numpy"][1], list)  # numpy's key array saved as plain ints
    assert read_checkpoint(tmp_path / "last.pt")["kind"] == PRETRAIN_STATE


def test_legacy_numpy_rng_state_still_loads_and_restores(tmp_path):
    """pretrain_state files written before issue 13 hold np.random.get_state() (a uint32 ndarray)."""
    np.random.seed(5)
    legacy = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    expected = np.random.normal(size=3)
    save_checkpoint(tmp_path / "old.pt", PRETRAIN_STATE, rng=legacy, step=1)
    np.random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "old.pt", PRETRAIN_STATE)["rng"])
    np.testing.assert_array_equal(np.random.normal(size=3), expected)


def test_other_numpy_objects_are_still_refused(tmp_path):
    """Only the uint32 array globals are allowed, not numpy objects in general."""
    torch.save({"kind": "vq_tokenizer", "x": np.arange(3, dtype=np.float64)}, tmp_path / "f64.pt")
    with pytest.raises(CheckpointError, match="holds more than tensors and plain data"):
        load_checkpoint(tmp_path / "f64.pt", "vq_tokenizer")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_atomic_writes_get_the_umask_mode_not_mkstemp_private_one(tmp_path):
    """``mkstemp`` makes 0600 files; what is renamed into place gets the mode a plain ``open()`` would."""
    from sb3_pvdr.common.checkpoint import atomic_torch_save, atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_torch_save({"x": 1}, tmp_path / "b.pt")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "c.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "c.bin").stat().st_mode & 0o777 == 0o600
