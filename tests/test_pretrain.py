"""Pre-training CLI (``python -m sb3_pvdr.pretrain``): checkpoints, --resume, DDP, user errors.

Everything runs on a tiny tokenizer (16x16 frames -> 4x4 tokens, K = 16) and a tiny dynamics model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from sb3_pvdr.common.checkpoint import load_checkpoint
from sb3_pvdr.dynamics import VisualDynamicsModel
from sb3_pvdr.pretrain import PretrainConfig, main, parse_args, pretrain
from sb3_pvdr.pretrained import get as get_pretrained
from sb3_pvdr.tokenizer import TokenizerConfig, VQTokenizer
from sb3_pvdr.video import write_token_folder

K, GRID = 16, (4, 4)
TINY_MODEL = dict(codebook_size=K, grid=list(GRID), m=2, l=2, z_dim=4, dim=32, ff_dim=64, heads=2,
                  depth_encoder=1, depth_prior=1, depth_decoder=1, window=[2, 2], dropout=0.0)
TINY_TRAIN = dict(profile="cpu", model=TINY_MODEL, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1,
                  save_every=2, image_every=2, val_every=2, val_batches=1)


def tiny_tokenizer(path: Path, codebook_size: int = K) -> Path:
    torch.manual_seed(0)
    cfg = TokenizerConfig(image_size=16, channels=8, channel_mult=(1, 2, 2), z_channels=8, code_dim=8,
                          codebook_size=codebook_size, kmeans_init=False)
    assert cfg.grid_size == GRID
    VQTokenizer(cfg).save(path)
    return path


def token_folder(path: Path, episodes: int = 3, length: int = 12, seed: int = 0) -> Path:
    """Episodes whose tokens shift by one code per frame (learnable dynamics)."""
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(episodes):
        first = rng.integers(0, K, size=GRID)
        eps.append(np.stack([(first + t) % K for t in range(length)]))
    return write_token_folder(path, eps, {"codebook_size": K, "image_size": 16})


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    config = tmp_path / "tiny.yml"
    config.write_text(yaml.safe_dump(TINY_TRAIN))
    return {
        "tokenizer": tiny_tokenizer(tmp_path / "tokenizer.pt"),
        "data": token_folder(tmp_path / "tokens"),
        "val": token_folder(tmp_path / "val_tokens", episodes=1, seed=1),
        "config": config,
        "out": tmp_path / "run",
    }


def cli(setup: dict[str, Path], *extra: str) -> list[str]:
    return ["--data", str(setup["data"]), "--tokenizer", str(setup["tokenizer"]), "--out", str(setup["out"]),
            "--config", str(setup["config"]), "--device", "cpu", "--no-progress", *extra]


def test_cli_takes_shipped_model_names_for_tokenizer_and_init_from(tmp_path: Path) -> None:
    args = parse_args(["--data", "d", "--tokenizer", "metaworld-64", "--out", "o", "--init-from", "metaworld-64-fwd"])
    assert Path(args.tokenizer) == get_pretrained("metaworld-64").path("tokenizer")
    assert Path(args.init_from) == get_pretrained("metaworld-64-fwd").path("dynamics")
    assert Path(args.tokenizer).is_file() and Path(args.init_from).is_file()
    own = tmp_path / "tokenizer.pt"
    assert parse_args(["--data", "d", "--tokenizer", str(own), "--out", "o"]).tokenizer == str(own)
    assert parse_args(["--data", "d", "--tokenizer", str(own), "--out", "o"]).init_from is None


def test_tiny_run_writes_checkpoints_and_resume_continues(setup: dict[str, Path]) -> None:
    main(cli(setup, "--steps", "3", "--val-data", str(setup["val"])))
    out = setup["out"]
    state = load_checkpoint(out / "last.pt", "pretrain_state")
    assert state["step"] == 3
    assert state["optimizer"]["state"], "optimizer moments must be saved for --resume"
    model = VisualDynamicsModel.load(out / "dynamics.pt")
    assert model.config.dim == TINY_MODEL["dim"]
    assert (out / "config.yml").is_file() and (out / "command.txt").is_file()
    assert any((out / "tb").glob("events.out.tfevents.*"))

    main(cli(setup, "--steps", "5", "--resume"))
    assert load_checkpoint(out / "last.pt", "pretrain_state")["step"] == 5


def test_resume_equals_uninterrupted_run(setup: dict[str, Path], tmp_path: Path) -> None:
    """2 steps + --resume 2 steps gives the same weights as 4 steps in one go (data order, RNG, Adam)."""
    cfg = PretrainConfig.from_dict({**TINY_TRAIN, "steps": 4, "image_every": 0})
    straight = pretrain(setup["data"], setup["tokenizer"], tmp_path / "straight", cfg, device="cpu", progress=False)
    pretrain(setup["data"], setup["tokenizer"], tmp_path / "split", PretrainConfig.from_dict({**TINY_TRAIN, "steps": 2}),
             device="cpu", progress=False)
    resumed = pretrain(setup["data"], setup["tokenizer"], tmp_path / "split", cfg, resume=True, device="cpu", progress=False)
    assert resumed.step == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"{name} differs after --resume")


def test_existing_run_needs_resume(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    main(cli(setup, "--steps", "1"))
    with pytest.raises(SystemExit) as exc:
        main(cli(setup, "--steps", "2"))
    assert exc.value.code == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("codebook_size", [32])
def test_tokenizer_mismatch_is_one_line_error(setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture,
                                              codebook_size: int) -> None:
    setup["tokenizer"] = tiny_tokenizer(tmp_path / "other.pt", codebook_size=codebook_size)
    with pytest.raises(SystemExit) as exc:
        main(cli(setup, "--steps", "1"))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "codebook 32" in err and "does not match" in err
    assert not (setup["out"] / "last.pt").exists()


def test_tokens_from_another_tokenizer_are_refused(setup: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """Model and tokenizer agree (K=32) but the token folder was made with K=16."""
    setup["tokenizer"] = tiny_tokenizer(tmp_path / "k32.pt", codebook_size=32)
    setup["config"].write_text(yaml.safe_dump({**TINY_TRAIN, "model": {**TINY_MODEL, "codebook_size": 32}}))
    with pytest.raises(SystemExit):
        main(cli(setup, "--steps", "1"))
    assert "re-tokenize" in capsys.readouterr().err
    assert not setup["out"].exists(), "a refused run must not create OUT (args.yml, config.yml...)"


def _short_videos(setup: dict[str, Path], tmp_path: Path) -> list[str]:
    videos = tmp_path / "short_videos"
    videos.mkdir()
    np.save(videos / "ep0.npy", np.zeros((3, 16, 16, 3), dtype=np.uint8))  # < m + l = 4 frames
    return ["--data", str(videos)]


def _other_codebook_val(setup: dict[str, Path], tmp_path: Path) -> list[str]:
    other = write_token_folder(tmp_path / "k32_tokens", [np.zeros((6, *GRID), dtype=np.int64)],
                               {"codebook_size": 32, "image_size": 16})
    return ["--val-data", str(other)]


@pytest.mark.parametrize("case, message", [
    (lambda setup, tmp_path: ["--val-data", str(tmp_path / "nowhere")], "--val-data"),
    (_other_codebook_val, "re-tokenize"),
    (lambda setup, tmp_path: ["--batch-size", "1000"], "lower --batch-size"),
    (lambda setup, tmp_path: ["--lr", "-1"], "lr must be a positive number"),
    (_short_videos, "no episode has the m + l = 4 frames"),
], ids=["missing-val-data", "val-tokens-of-another-codebook", "too-few-clips", "bad-lr", "too-short-videos"])
def test_refused_run_writes_nothing(setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture,
                                    case, message: str) -> None:
    """Every check runs before OUT is created: no args.yml, config.yml or tokens/ from a refused run."""
    args = cli(setup, "--steps", "1")
    extra = case(setup, tmp_path)
    if extra[0] == "--data":
        args[1] = extra[1]
    else:
        args += extra
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not setup["out"].exists()


def test_missing_data_path_cli(setup: dict[str, Path], tmp_path: Path) -> None:
    args = cli(setup, "--steps", "1")
    args[1] = str(tmp_path / "nowhere")
    proc = subprocess.run([sys.executable, "-m", "sb3_pvdr.pretrain", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: --data {tmp_path / 'nowhere'} does not exist: "
                                                "give a token folder or a folder of videos"]


def test_unknown_config_key(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    setup["config"].write_text(yaml.safe_dump({**TINY_TRAIN, "batchsize": 3}))
    with pytest.raises(SystemExit):
        main(cli(setup, "--steps", "1"))
    assert "unknown pre-training config keys ['batchsize']" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Distributed data parallel: 2 CPU processes, gloo
# ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, paths: dict[str, str]) -> None:
    # the environment torchrun gives each process; pretrain() joins the gloo group from it
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    try:
        cfg = PretrainConfig.from_dict({**TINY_TRAIN, "steps": 3, "image_every": 0})
        result = pretrain(paths["data"], paths["tokenizer"], paths["out"], cfg, device="cpu", progress=False)
        assert dist.get_world_size() == world_size and dist.get_backend() == "gloo"
        torch.save({"state_dict": result.model.state_dict(), "step": result.step}, Path(paths["out"]) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_keeps_ranks_identical(setup: dict[str, Path]) -> None:
    paths = {k: str(v) for k, v in setup.items()}
    mp.spawn(_ddp_worker, args=(2, _free_port(), paths), nprocs=2, join=True)
    out = setup["out"]
    r0, r1 = (torch.load(out / f"rank{r}.pt") for r in range(2))
    assert r0["step"] == r1["step"] == 3
    torch.manual_seed(TINY_TRAIN.get("seed", 0))
    initial = VisualDynamicsModel(PretrainConfig.from_dict(TINY_TRAIN).dynamics_config()).state_dict()
    moved = 0
    for name, a in r0["state_dict"].items():
        torch.testing.assert_close(a, r1["state_dict"][name], rtol=0, atol=0, msg=f"{name} differs between ranks")
        moved += int(not torch.equal(a, initial[name]))
    assert moved > 0, "training changed no parameter"
    # only rank 0 saves: one checkpoint, written at step 3
    assert load_checkpoint(out / "last.pt", "pretrain_state")["step"] == 3


def test_video_folder_is_tokenized_once_into_out(setup: dict[str, Path], tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for e in range(2):
        np.save(videos / f"ep{e}.npy", rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8))
    setup["data"] = videos
    main(cli(setup, "--steps", "1"))
    tokens = setup["out"] / "tokens"
    meta = json.loads((tokens / "meta.json").read_text())
    assert (meta["num_episodes"], meta["num_frames"], meta["grid"]) == (2, 20, list(GRID))
    stamp = (tokens / "tokens.npy").stat().st_mtime_ns
    main(cli(setup, "--steps", "2", "--resume"))
    assert (tokens / "tokens.npy").stat().st_mtime_ns == stamp, "the cached token folder must be reused"


def test_eval_dynamics_script(setup: dict[str, Path], tmp_path: Path) -> None:
    """python -m sb3_pvdr.evaluate_dynamics --data: accuracies for posterior / prior / zero z and the PNG grid layout."""
    import imageio.v3 as iio

    from sb3_pvdr import evaluate_dynamics

    main(cli(setup, "--steps", "2"))
    png, out = tmp_path / "grid.png", tmp_path / "eval.json"
    evaluate_dynamics.main(["--model", str(setup["out"] / "dynamics.pt"), "--tokenizer", str(setup["tokenizer"]),
                        "--data", str(setup["val"]), "--clips", "5", "--prior-samples", "3", "--grid-clips", "2",
                        "--png", str(png), "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["step"] == 2 and result["clips"] == 5
    for key in ("posterior", "prior", "prior_mean", "zero"):
        assert 0.0 <= result[f"{key}/generated"] <= 1.0 and len(result["per_frame_generated"][key]) == TINY_MODEL["l"]
    assert result["prior/best_of_samples"] >= result["prior/generated"] - 1e-6
    image = iio.imread(png, mode="RGB")
    frames, rows, side = TINY_MODEL["m"] + TINY_MODEL["l"], 2 * (2 + 3), 16 + 2  # clips x (true, post., 3 prior)
    assert image.shape == (rows * side, 56 + frames * side, 3)


def test_evaluate_dynamics_task_report(tmp_path: Path) -> None:
    """python -m sb3_pvdr.evaluate_dynamics --task: accuracy, plan diversity and plan gain on held-out env variants."""
    from test_planning import tiny_models

    from sb3_pvdr import evaluate_dynamics

    tokenizer, dynamics = tiny_models(l=2)
    tokenizer.save(tmp_path / "tok.pt")
    dynamics.save(tmp_path / "dyn.pt")
    out = tmp_path / "report.json"
    evaluate_dynamics.main(["--model", str(tmp_path / "dyn.pt"), "--tokenizer", str(tmp_path / "tok.pt"), "--task", "reach-v2",
                            "--variants", "2", "--candidates", "2,4", "--json", str(out)])
    r = json.loads(out.read_text())["reach-v2"]
    assert r["variants"] == 2 and r["context_start"] == 0
    for key in ("posterior/generated", "prior_mean/generated", "zero/generated", "diversity", "real_change"):
        assert 0.0 <= r[key] <= 1.0
    # more candidates can only bring the chosen plan closer to the goal (nested candidate sets)
    assert r["goal_distance/chosen@4"] <= r["goal_distance/chosen@2"] + 1e-9
    assert set(r) >= {"plan_gain@2", "plan_gain@4", "goal_distance/expert", "goal_distance/real", "goal_distance/context"}
    assert 0.0 <= r["goal_distance/real"] <= 1.0 and 0.0 <= r["goal_distance/context"] <= 1.0
    with pytest.raises(SystemExit):
        evaluate_dynamics.main(["--model", str(tmp_path / "dyn.pt"), "--tokenizer", str(tmp_path / "tok.pt")])
    with pytest.raises(SystemExit):  # a negative context start
        evaluate_dynamics.main(["--model", str(tmp_path / "dyn.pt"), "--tokenizer", str(tmp_path / "tok.pt"),
                                "--task", "reach-v2", "--context-start", "-1"])
    later = tmp_path / "later.json"  # planning from 3 expert steps after reset
    evaluate_dynamics.main(["--model", str(tmp_path / "dyn.pt"), "--tokenizer", str(tmp_path / "tok.pt"), "--task", "reach-v2",
                            "--variants", "1", "--candidates", "2", "--context-start", "3", "--json", str(later)])
    assert json.loads(later.read_text())["reach-v2"]["context_start"] == 3


def test_evaluate_dynamics_recorded_variants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--recorded-variants SEED: the gates on the variants the recorder used (pre-training's own), not held-out ones."""
    from test_planning import tiny_models

    from sb3_pvdr import evaluate_dynamics
    from sb3_pvdr.video.record import episode_seed

    tokenizer, dynamics = tiny_models(l=2)
    tokenizer.save(tmp_path / "tok.pt")
    dynamics.save(tmp_path / "dyn.pt")
    seeds: list[int] = []
    real_clip = evaluate_dynamics.expert_clip

    def spy(task: str, seed: int, *args: Any, **kwargs: Any) -> Any:
        seeds.append(seed)
        return real_clip(task, seed, *args, **kwargs)

    monkeypatch.setattr(evaluate_dynamics, "expert_clip", spy)
    base = ["--model", str(tmp_path / "dyn.pt"), "--tokenizer", str(tmp_path / "tok.pt"), "--task", "reach-v2",
            "--variants", "2", "--candidates", "2"]
    evaluate_dynamics.main(base + ["--recorded-variants", "0", "--json", str(tmp_path / "r.json")])
    assert seeds == [episode_seed(0, "reach-v2", 0), episode_seed(0, "reach-v2", 1)]
    assert json.loads((tmp_path / "r.json").read_text())["reach-v2"]["recorded_seed"] == 0
    seeds.clear()
    evaluate_dynamics.main(base + ["--seed-base", "7"])  # held-out by default
    assert seeds == [7, 8]
    with pytest.raises(SystemExit):  # a negative recorder seed: one-line error, nothing evaluated
        evaluate_dynamics.main(base + ["--recorded-variants", "-1"])


def test_evaluate_dynamics_goal_probe(tmp_path: Path) -> None:
    """--goal-probe: held-out R^2 of the goal from each latent (oracle, planned z*, prior mean, posterior)."""
    from test_planning import tiny_models

    from sb3_pvdr import evaluate_dynamics

    tokenizer, dynamics = tiny_models(l=2)
    tokenizer.save(tmp_path / "tok.pt")
    dynamics.save(tmp_path / "dyn.pt")
    out = tmp_path / "report.json"
    base = ["--model", str(tmp_path / "dyn.pt"), "--tokenizer", str(tmp_path / "tok.pt"), "--task", "reach-v2", "--variants", "1"]
    evaluate_dynamics.main([*base, "--goal-probe", "6", "--probe-steps", "8", "--probe-candidates", "1,2",
                            "--hand-candidates", "3", "--json", str(out)])
    report = json.loads(out.read_text())["reach-v2"]
    probe, hand = report["goal_probe"], report["hand_probe"]
    assert hand["locator_r2"] <= 1.0 and hand["candidate_spread"] >= 0.0 and hand["real_motion"] > 0.0
    assert set(hand) >= {"rank_corr", "expert_hand_to_goal", "hand_to_goal/chosen@2", "hand_to_goal/average@2", "hand_gain@2",
                         "rank_corr/last_frame", "hand_gain@2/last_frame_changed_pixels",
                         "hand_gain@2/last_frame_blurred", "hand_gain@2/best"}
    # choosing by the true hand-to-goal distance is the upper bound of every plan-to-goal distance's choice (the gain's
    # denominator, average - expert, may be negative with a random tiny model: then the bound is a lower one)
    sign = np.sign(hand["hand_to_goal/average@2"] - hand["expert_hand_to_goal"])
    for name in ("", "/last_frame", "/last_frame_changed_pixels", "/last_frame_blurred"):
        assert sign * hand["hand_gain@2/best"] >= sign * hand[f"hand_gain@2{name}"] - 1e-3
    assert probe["episodes"] == 6 and probe["windows"] == 6 * 2  # windows at t = 0 and 6 (t + l <= 8)
    assert set(probe["probes"]) == {"oracle", "plan@1", "plan@2", "prior_mean", "posterior"}
    for latent, row in probe["probes"].items():
        assert row["goal"] <= 1.0 and -1.0 <= row["cos_centred"] <= 1.0
        assert ("motion" in row) == (latent == "posterior")
    for bad in (["--goal-probe", "3"], ["--goal-probe", "-1"], ["--threads", "0"], ["--goal-probe", "6", "--hand-candidates", "-1"]):  # fewer episodes than folds; negative
        with pytest.raises(SystemExit):
            evaluate_dynamics.main([*base, *bad])


def test_frame_step_model_trains_on_every_kth_frame_and_is_evaluated_so(tmp_path: Path, monkeypatch) -> None:
    """model frame_step k: pre-training clips, the held-out task clips and the goal probe take every k-th frame."""
    from test_planning import tiny_models

    from sb3_pvdr import evaluate_dynamics
    from sb3_pvdr.common.errors import ConfigError

    config = tmp_path / "k3.yml"
    config.write_text(yaml.safe_dump({**TINY_TRAIN, "model": {**TINY_MODEL, "frame_step": 3}, "image_every": 0}))
    seen = []
    from sb3_pvdr import video

    class Spy(video.TokenClipDataset):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.frame_step)

    monkeypatch.setattr(video, "TokenClipDataset", Spy)
    out = tmp_path / "run"
    data = token_folder(tmp_path / "tokens", length=12)  # span (2 + 2 - 1) * 3 + 1 = 10 frames: 3 clips an episode
    main(["--data", str(data), "--tokenizer", str(tiny_tokenizer(tmp_path / "tok.pt")), "--out", str(out),
          "--config", str(config), "--steps", "2", "--no-progress"])
    assert seen and set(seen) == {3}  # the training and the clip-count datasets
    assert VisualDynamicsModel.load(out / "dynamics.pt").config.frame_step == 3
    too_short = token_folder(tmp_path / "short", length=9)
    with pytest.raises(SystemExit):
        main(["--data", str(too_short), "--tokenizer", str(tmp_path / "tok.pt"), "--out", str(tmp_path / "run2"),
              "--config", str(config), "--steps", "1", "--no-progress"])
    assert not (tmp_path / "run2").exists()

    # expert clips: o_0, o_3, o_6, ... of the scripted policy's run
    full, _ = evaluate_dynamics.expert_clip("reach-v2", 100_000, 2, 2, 16, frame_step=1)
    every, goal = evaluate_dynamics.expert_clip("reach-v2", 100_000, 1, 3, 16, frame_step=3)
    assert every.shape == (4, 16, 16, 3) and goal.shape == (16, 16, 3)
    np.testing.assert_array_equal(every[1], evaluate_dynamics.expert_clip("reach-v2", 100_000, 2, 2, 16)[0][3])
    assert np.array_equal(every[0], full[0])
    later, _ = evaluate_dynamics.expert_clip("reach-v2", 100_000, 2, 2, 16, start=1)  # context starts one step later
    np.testing.assert_array_equal(later[:3], full[1:])

    tokenizer, dynamics = tiny_models(l=2)
    dynamics.config.frame_step = 3
    from sb3_pvdr.planning.goal_probe import collect_goal_windows

    windows = collect_goal_windows("reach-v2", tokenizer, dynamics, episodes=1, steps=12, stride=6, candidates=(1,))
    assert len(windows["goal"]) == 2  # windows at t = 0 and 6 (t + l * k <= 12)
    with pytest.raises(ConfigError):
        collect_goal_windows("reach-v2", tokenizer, dynamics, episodes=1, steps=6, candidates=(1,))  # 6 < l * k + 1


def test_init_from_and_train_only_refit_the_prior_alone(setup: dict[str, Path], tmp_path: Path) -> None:
    """init_from + train_only: [prior] + prior_kl: forward changes P and leaves E and D as they were."""
    from sb3_pvdr.dynamics import VisualDynamicsModel

    main(cli(setup, "--steps", "2"))
    base = setup["out"] / "dynamics.pt"
    config = tmp_path / "refit.yml"
    config.write_text(yaml.safe_dump({"model": {**TINY_MODEL, "prior_kl": "forward"}, "init_from": str(base),
                                      "train_only": ["prior"], "batch_size": 2, "lr": 1e-2, "warmup_steps": 0,
                                      "image_every": 0, "val_every": 0}))
    out = tmp_path / "refit"
    main(["--data", str(setup["data"]), "--tokenizer", str(setup["tokenizer"]), "--out", str(out), "--config", str(config),
          "--steps", "3", "--threads", "1", "--no-progress"])
    before, after = VisualDynamicsModel.load(base), VisualDynamicsModel.load(out / "dynamics.pt")
    assert after.config.prior_kl == "forward"
    for group, params in before.parameter_groups().items():
        changed = any(not torch.equal(a, b) for a, b in zip(params, after.parameter_groups()[group]))
        assert changed == (group == "prior"), group
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"train_only": ["policy"]}))
    with pytest.raises(SystemExit):
        main(["--data", str(setup["data"]), "--tokenizer", str(setup["tokenizer"]), "--out", str(tmp_path / "bad"),
              "--config", str(bad), "--steps", "1"])
    assert not (tmp_path / "bad").exists()


def test_goal_conditioned_prior_refit_uses_the_episode_last_frame(setup: dict[str, Path], tmp_path: Path) -> None:
    """prior_goal: clips come with their episode's last frame as the goal; init_from a context-only model works."""
    from sb3_pvdr.video import TokenClipDataset

    data = TokenClipDataset(setup["data"], 2, 2, goal=True)
    x, y, g = data[len(data) - 1]
    episode, start = data.locate(len(data) - 1)
    last = data.tokens[int(data.episodes[episode, 1]) - 1]
    assert g.shape == GRID and np.array_equal(g.numpy(), last)
    assert np.array_equal(data[0][2].numpy(), data.tokens[int(data.episodes[0, 1]) - 1])
    main(cli(setup, "--steps", "2"))
    config = tmp_path / "goal.yml"
    config.write_text(yaml.safe_dump({"model": {**TINY_MODEL, "prior_kl": "forward", "prior_goal": True},
                                      "init_from": str(setup["out"] / "dynamics.pt"), "train_only": ["prior"],
                                      "batch_size": 2, "lr": 1e-2, "warmup_steps": 0, "image_every": 1, "val_every": 1,
                                      "val_batches": 1}))
    out = tmp_path / "goal"
    main(["--data", str(setup["data"]), "--val-data", str(setup["val"]), "--tokenizer", str(setup["tokenizer"]),
          "--out", str(out), "--config", str(config), "--steps", "2", "--threads", "1", "--no-progress"])
    model = VisualDynamicsModel.load(out / "dynamics.pt")
    assert model.config.prior_goal
    with pytest.raises(Exception, match="goal"):
        model.prior(torch.as_tensor(x[None]))
    assert model.prior(x[None], g[None]).mean.shape == (1, *model.z_shape)
