"""scripts/setup.sh: which index torch comes from, checked with stand-ins for pip, nvidia-smi, python and
ldconfig on PATH (no network, nothing installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def fake_bin(tmp_path: Path, *, gpu: bool | None, cpu_index_reachable: bool = True, torch_installed: bool = True) -> Path:
    """Stand-ins: ``pip`` logs its arguments (and fails for the CPU index when it is unreachable),
    ``nvidia-smi`` works or fails (``gpu=None``: absent), ``python -c 'import torch'`` succeeds or fails,
    ``ldconfig`` reports libEGL. PATH holds only this folder (a real nvidia-smi or apt-get is never found)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "grep"):  # the real ones, linked
        (bin_dir / tool).symlink_to(shutil.which(tool))
    scripts = {
        "pip": f'echo "$*" >> "{tmp_path / "pip.log"}"\n'
               + ('' if cpu_index_reachable else 'case "$*" in *--index-url*) exit 1;; esac\n') + "exit 0\n",
        "python": f"exit {0 if torch_installed else 1}\n",
        "ldconfig": 'echo "libEGL.so.1 (libc6,x86-64) => /usr/lib/libEGL.so.1"\n',
    }
    if gpu is not None:
        scripts["nvidia-smi"] = f"exit {0 if gpu else 9}\n"
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    return bin_dir


def run_setup(tmp_path: Path, bin_dir: Path, lib_only: bool) -> list[str]:
    bash = shutil.which("bash")
    env = {**os.environ, "PATH": str(bin_dir), "TORCH_VERSION": "2.13.0"}
    env.pop("TORCH_CPU_INDEX", None)
    command = f'SB3_PVDR_SETUP_LIB=1 source "{SETUP}" && install_torch' if lib_only else f'"{bash}" "{SETUP}"'
    result = subprocess.run([bash, "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    log = tmp_path / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_gpu_gets_the_default_index(tmp_path):
    assert run_setup(tmp_path, fake_bin(tmp_path, gpu=True), lib_only=True) == ["install torch==2.13.0"]


@pytest.mark.parametrize("gpu", [False, None], ids=["nvidia-smi-fails", "no-nvidia-smi"])
def test_no_gpu_gets_the_cpu_index_with_a_short_timeout(tmp_path, gpu):
    calls = run_setup(tmp_path, fake_bin(tmp_path, gpu=gpu), lib_only=True)
    assert calls == [f"install --timeout 10 --retries 0 --index-url {CPU_INDEX} torch==2.13.0"]


def test_unreachable_cpu_index_falls_back_to_the_default_index(tmp_path):
    calls = run_setup(tmp_path, fake_bin(tmp_path, gpu=False, cpu_index_reachable=False), lib_only=True)
    assert calls == [f"install --timeout 10 --retries 0 --index-url {CPU_INDEX} torch==2.13.0", "install torch==2.13.0"]


@pytest.mark.parametrize("torch_installed", [True, False])
def test_whole_script_keeps_an_importable_torch(tmp_path, torch_installed):
    calls = run_setup(tmp_path, fake_bin(tmp_path, gpu=None, torch_installed=torch_installed), lib_only=False)
    torch_calls = [] if torch_installed else [f"install --timeout 10 --retries 0 --index-url {CPU_INDEX} torch==2.13.0"]
    assert calls == [*torch_calls, "install -e .[test]"]
