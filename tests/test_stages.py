"""scripts/stages.sh: the cached stages and the dynamics model's four training stages shared by
scripts/pretrain_reference.sh and scripts/pretrain_domain_gap.sh, checked with stand-ins for torchrun and python on
PATH that log their arguments (nothing is trained)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = REPO / "scripts" / "stages.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run_dynamics_stages(tmp_path: Path, nproc: int = 1) -> list[list[str]]:
    """Run ``dynamics_stages`` with logging stand-ins; return the logged command lines (argv after the program)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for tool in ("torchrun", "python"):
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
        path.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    command = f'STAGE_DIR="{work}"; source "{STAGES}"; dynamics_stages "{work}" TOK.pt 30 14 1 {nproc}'
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run([shutil.which("bash"), "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_four_stages_chain_their_weights(tmp_path):
    calls = run_dynamics_stages(tmp_path, nproc=2)
    work = tmp_path / "work"
    names = ("pretrain", "prior_forward", "prior_forward_long", "prior_decode")
    assert [option(c, "--out") for c in calls] == [str(work / n) for n in names]
    pretrain, prior, prior_long, prior_decode = calls
    assert pretrain[0] == "torchrun" and option(pretrain, "--nproc_per_node") == "2"
    assert option(pretrain, "--steps") == "30" and option(pretrain, "--config") == "configs/pretrain_reference.yml"
    assert option(prior, "--init-from") == str(work / "pretrain" / "dynamics.pt")
    assert option(prior_long, "--init-from") == str(work / "prior_forward" / "dynamics.pt")
    assert option(prior_long, "--steps") == "14" and "--steps" not in prior  # the 600-step re-fit is the config's
    assert option(prior_decode, "--init-from") == str(work / "prior_forward_long" / "dynamics.pt")
    assert option(prior_decode, "--config") == "configs/prior_decode.yml" and "--steps" not in prior_decode
    for argv in calls:
        assert option(argv, "--data") == str(work / "tokens") and option(argv, "--val-data") == str(work / "tokens_val")
        assert option(argv, "--tokenizer") == "TOK.pt" and "--resume" not in argv
    for name in names:
        assert (work / f".{name}.done").exists()


def test_done_stages_are_skipped_and_interrupted_ones_resume(tmp_path):
    work = tmp_path / "work"
    (work / "prior_forward_long").mkdir(parents=True)
    (work / "prior_forward_long" / "last.pt").write_bytes(b"")  # an interrupted run's checkpoint
    for name in ("pretrain", "prior_forward"):
        (work / f".{name}.done").touch()
    calls = run_dynamics_stages(tmp_path)
    assert len(calls) == 2 and option(calls[0], "--out") == str(work / "prior_forward_long")
    assert "--resume" in calls[0]
    assert option(calls[1], "--out") == str(work / "prior_decode") and "--resume" not in calls[1]
