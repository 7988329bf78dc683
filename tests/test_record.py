"""The Meta-World recorder CLI: a tiny run, resume, the domain-gap task list, bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.video import VideoClipDataset
from sb3_pvdr.video.record import episode_seed, main, resolve_tasks


def test_record_tiny_run_and_resume(tmp_path, capsys):
    out = tmp_path / "videos"
    common = ["--tasks", "reach-v2", "--out", str(out), "--image-size", "32", "--max-steps", "6", "--no-progress"]
    common += ["--goal-cache-dir", str(tmp_path / "goals")]
    meta = main(["--episodes", "1", *common])
    episode = out / "reach-v3" / "ep_00000.npz"
    with np.load(episode) as data:
        frames, actions, success = data["frames"], data["actions"], data["success"]
        variant = int(data["variant"])
    # one frame per agent step, plus the reset frame
    assert frames.dtype == np.uint8 and frames.shape == (7, 32, 32, 3)
    assert actions.shape == (6, 4) and actions.dtype == np.float32 and np.abs(actions).max() <= 1.0
    assert success.shape == (6,) and 0 <= variant < 50
    assert frames.std() > 0 and np.abs(np.diff(frames.astype(int), axis=0)).sum() > 0  # the arm moves
    assert meta["total_frames"] == 7 and meta["summary"]["reach-v3"]["episodes"] == 1
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk["image_size"] == 32 and on_disk["tasks"] == ["reach-v3"]

    # resume: episode 0 is kept as it is (not re-recorded), only episode 1 is new
    mtime = episode.stat().st_mtime_ns
    stale = out / "reach-v3" / ".ep_00001.npz.x1y2.tmp"  # left by a run killed while writing
    stale.write_bytes(b"half an episode")
    meta = main(["--episodes", "2", *common])
    assert not stale.exists()
    assert episode.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in (out / "reach-v3").iterdir()) == ["ep_00000.npz", "ep_00001.npz"]
    assert meta["last_run"]["new_episodes"] == 1 and meta["total_frames"] == 14
    assert "recorded 1 new episodes" in capsys.readouterr().out

    # the recording is a clip dataset as it is (actions/success keys are not read)
    ds = VideoClipDataset(out, m=2, l=2, image_size=32)
    assert len(ds.episodes) == 2 and len(ds) == 2 * (7 - 4 + 1)

    # resuming with other settings would mix incompatible episodes: refused
    with pytest.raises(SystemExit) as info:
        main(["--episodes", "2", *common, "--noise", "0.5"])
    assert info.value.code == 2
    assert "noise: 0.3 -> 0.5" in capsys.readouterr().err


def test_episode_seeds_are_stable_and_distinct():
    assert episode_seed(0, "reach-v3", 3) == episode_seed(0, "reach-v3", 3)
    seeds = {episode_seed(s, t, e) for s in (0, 1) for t in ("reach-v3", "push-v3") for e in range(5)}
    assert len(seeds) == 20


def test_resolve_tasks():
    from sb3_pvdr.envs import METAWORLD_TASKS, PAPER_TASKS

    assert resolve_tasks("reach-v2, plate-slide", False) == ["reach-v3", "plate-slide-v3"]
    assert len(resolve_tasks(None, False)) == 12
    gap = resolve_tasks(None, True)
    assert len(gap) == len(METAWORLD_TASKS) - len(PAPER_TASKS)
    assert not {f"{t}-v3" for t in PAPER_TASKS} & set(gap) and "push-v3" in gap
    with pytest.raises(ConfigError, match="unknown Meta-World task"):
        resolve_tasks("reach-v9", False)
    with pytest.raises(ConfigError, match="twice"):
        resolve_tasks("reach-v2,reach-v3", False)
    with pytest.raises(ConfigError, match="domain-gap"):
        resolve_tasks("reach-v2", True)


def test_cli_bad_arguments(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sb3_pvdr.video.record", "--tasks", "nope", "--episodes", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown Meta-World task 'nope'") and "Traceback" not in result.stderr
    with pytest.raises(SystemExit):
        main(["--episodes", "0", "--out", str(tmp_path)])


@pytest.mark.parametrize("bad", [["--camera", "front"], ["--image-size", "30"], ["--tasks", "door-opn-v2"]])
def test_refused_run_creates_no_out_folder(tmp_path, capsys, bad):
    out = tmp_path / "videos"
    with pytest.raises(SystemExit) as info:
        main(["--tasks", "reach-v2", "--episodes", "1", "--out", str(out), "--no-progress", *bad])
    assert info.value.code == 2 and capsys.readouterr().err.startswith("error: ")
    assert not out.exists()  # not even meta.json
