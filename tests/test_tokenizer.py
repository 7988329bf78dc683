"""VQ frame tokenizer: API shapes, soft decoding, save/load, learning on one batch, the training and
tokenize CLIs, and the errors of bad inputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sb3_pvdr.common.checkpoint import load_checkpoint, save_checkpoint
from sb3_pvdr.common.errors import CheckpointError, ConfigError, DataError
from sb3_pvdr.tokenizer import TokenizerConfig, VQTokenizer
from sb3_pvdr.tokenizer import evaluate as evaluate_cli
from sb3_pvdr.tokenizer import tokenize as tokenize_cli
from sb3_pvdr.tokenizer import train as train_cli
from sb3_pvdr.video import read_token_folder

TINY = dict(
    image_size=16,
    channels=8,
    channel_mult=(1, 2, 2),  # 16 px -> 4x4 tokens
    num_res_blocks=1,
    z_channels=8,
    code_dim=8,
    codebook_size=16,
    threshold_ema_dead_code=0.0,
    batch_size=8,
    steps=4,
    log_every=1,
    eval_every=2,
    warmup_steps=0,
)


def tiny_tokenizer(**overrides) -> VQTokenizer:
    """A tiny tokenizer whose codebook went through its k-means initialisation (else it is all zeros)."""
    torch.manual_seed(0)
    model = VQTokenizer(TokenizerConfig(**{**TINY, **overrides})).train()
    size = model.image_size
    model(torch.from_numpy(smooth_frames(8, size)).permute(0, 3, 1, 2).float() / 255.0)
    return model.eval()


def random_frames(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def smooth_frames(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Frames of a moving coloured square on a gradient (something a tiny model can learn)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    frames = np.zeros((n, size, size, 3), dtype=np.float32)
    frames[..., 0] = ramp[None, :, None]
    frames[..., 2] = ramp[None, None, :]
    for i in range(n):
        y, x = rng.integers(0, size - 5, 2)
        frames[i, y : y + 5, x : x + 5] = rng.integers(100, 256, 3)
    return frames.astype(np.uint8)


def write_episodes(folder: Path, n_episodes: int = 2, length: int = 6, size: int = 16) -> Path:
    for e in range(n_episodes):
        path = folder / "task" / f"ep_{e:05d}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, frames=smooth_frames(length, size, seed=e))
    return folder


# ------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------


def test_profiles_and_strict_config(tmp_path):
    cpu = TokenizerConfig.profile("cpu")
    assert cpu == TokenizerConfig()
    assert (cpu.image_size, cpu.grid_size, cpu.codebook_size) == (64, (8, 8), 256)
    paper = TokenizerConfig.profile("paper")
    assert (paper.image_size, paper.grid_size, paper.codebook_size, paper.code_dim) == (128, (16, 16), 256, 1024)
    assert paper.channel_mult == (1, 2, 2, 4) and paper.num_res_blocks == 2 and paper.downsample_factor == 8

    with pytest.raises(ConfigError, match="unknown tokenizer config keys.*codebok_size"):
        TokenizerConfig.from_dict({"codebok_size": 128})
    with pytest.raises(ConfigError, match="not divisible"):
        TokenizerConfig(image_size=60)
    with pytest.raises(ConfigError, match="perceptual_weight"):
        TokenizerConfig(perceptual_weight=-1.0)
    with pytest.raises(ConfigError, match="unknown tokenizer profile"):
        TokenizerConfig.profile("gpu")

    path = tmp_path / "tok.yml"
    path.write_text(yaml.safe_dump({"profile": "paper", "codebook_size": 512}))
    loaded = TokenizerConfig.resolve(str(path))
    assert loaded.codebook_size == 512 and loaded.image_size == 128
    assert TokenizerConfig.from_dict(loaded.to_dict()) == loaded


# ------------------------------------------------------------------------------------------------
# model API
# ------------------------------------------------------------------------------------------------


def test_encode_decode_shapes():
    model = tiny_tokenizer()
    assert model.image_size == 16 and model.grid_size == (4, 4) and model.codebook_size == 16
    assert model.codebook.shape == (16, 8)
    tokens = model.encode(random_frames(3))
    assert tokens.dtype == torch.long and tokens.shape == (3, 4, 4)
    assert 0 <= int(tokens.min()) and int(tokens.max()) < 16
    frames = model.decode(tokens)
    assert frames.shape == (3, 16, 16, 3) and frames.dtype == torch.float32
    assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0
    # a tensor input gives the same tokens as the ndarray
    assert torch.equal(model.encode(torch.from_numpy(random_frames(3))), tokens)


def test_patch_size_replaces_first_downsampling():
    config = TokenizerConfig(**{**TINY, "patch_size": 2})
    assert config.grid_size == (4, 4)  # the space-to-depth stem stands in for a strided convolution
    assert [config.level_resolution(i) for i in range(3)] == [8, 8, 4]
    model = tiny_tokenizer(patch_size=2)
    assert model.encode(random_frames(2)).shape == (2, 4, 4)
    assert model.decode(model.encode(random_frames(2))).shape == (2, 16, 16, 3)


def test_decode_soft_one_hot_equals_decode():
    model = tiny_tokenizer()
    tokens = model.encode(random_frames(2))
    probs = torch.nn.functional.one_hot(tokens, model.codebook_size).float()
    torch.testing.assert_close(model.decode_soft(probs), model.decode(tokens), atol=1e-5, rtol=1e-5)


def test_decode_soft_gradient_reaches_probs():
    model = tiny_tokenizer()
    logits = torch.randn(2, 4, 4, model.codebook_size, requires_grad=True)
    goal = torch.rand(2, 16, 16, 3)
    loss = (model.decode_soft(logits.softmax(-1)) - goal).abs().mean()
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_bad_inputs_raise_data_error():
    model = tiny_tokenizer()
    with pytest.raises(DataError, match="shape"):
        model.encode(random_frames(2, size=32))
    with pytest.raises(DataError, match="uint8"):
        model.encode(random_frames(2).astype(np.float32))
    with pytest.raises(DataError, match="shape"):
        model.decode(torch.zeros(2, 5, 5, dtype=torch.long))
    with pytest.raises(DataError, match=r"\[0, 16\)"):
        model.decode(torch.full((1, 4, 4), 16, dtype=torch.long))
    with pytest.raises(DataError, match="probs"):
        model.decode_soft(torch.rand(1, 4, 4, 7))


def test_loss_falls_on_one_batch():
    from sb3_pvdr.tokenizer.losses import TokenizerLoss

    model = tiny_tokenizer().train()
    loss_fn = TokenizerLoss(model.config)
    images = torch.from_numpy(smooth_frames(8)).permute(0, 3, 1, 2).float() / 255.0
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(15):
        out = model(images)
        total, breakdown = loss_fn(images, out, step, model.decoder.last_layer)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(float(breakdown.l1))
    assert losses[-1] < 0.6 * losses[0], losses


def test_adversarial_term_switches_on_at_disc_start():
    from sb3_pvdr.tokenizer.losses import TokenizerLoss

    model = tiny_tokenizer(disc_weight=0.8, disc_start=1, disc_channels=8, disc_layers=1).train()
    loss_fn = TokenizerLoss(model.config)
    images = torch.rand(4, 3, 16, 16)
    _, before = loss_fn(images, model(images), 0, model.decoder.last_layer)
    total, after = loss_fn(images, model(images), 1, model.decoder.last_layer)
    assert float(before.generator) == 0.0 and float(after.adaptive_weight) > 0.0
    assert torch.isfinite(loss_fn.discriminator_loss(images, model(images).recon))


def test_save_load_round_trip(tmp_path):
    model = tiny_tokenizer()  # k-means init + one EMA update of the codebook (buffers must round-trip too)
    frames = random_frames(4, seed=1)
    tokens = model.encode(frames)
    model.save(tmp_path / "tok.pt")
    loaded = VQTokenizer.load(tmp_path / "tok.pt")
    assert loaded.config == model.config
    assert torch.equal(loaded.encode(frames), tokens)
    torch.testing.assert_close(loaded.decode(tokens), model.decode(tokens))


def test_conv_weights_are_channels_last_after_load_and_give_the_same_tokens(tmp_path):
    """The frames go through the convs channels-last; the weights are kept so too (a speed layout, not a new
    model): a loaded tokenizer's weights keep it, and an NCHW copy encodes and decodes the same."""
    import copy

    model = tiny_tokenizer()
    model.save(tmp_path / "tok.pt")
    loaded = VQTokenizer.load(tmp_path / "tok.pt")
    convs = [m.weight for m in loaded.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    nchw = copy.deepcopy(loaded).to(memory_format=torch.contiguous_format)
    assert not nchw.encoder.net[1].weight.is_contiguous(memory_format=torch.channels_last)
    frames = random_frames(6, seed=3)
    tokens = loaded.encode(frames)
    assert torch.equal(nchw.encode(frames), tokens)
    torch.testing.assert_close(nchw.decode(tokens), loaded.decode(tokens), atol=1e-5, rtol=1e-5)


def test_load_rejects_other_kind_and_corrupt_files(tmp_path):
    save_checkpoint(tmp_path / "dyn.pt", "visual_dynamics", config={}, state_dict={})
    with pytest.raises(CheckpointError, match="visual_dynamics"):
        VQTokenizer.load(tmp_path / "dyn.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        VQTokenizer.load(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not found"):
        VQTokenizer.load(tmp_path / "missing.pt")
    model = tiny_tokenizer()
    save_checkpoint(tmp_path / "mismatch.pt", "vq_tokenizer", config={**model.config.to_dict(), "channels": 16}, state_dict=model.state_dict())
    with pytest.raises(CheckpointError, match="do not match"):
        VQTokenizer.load(tmp_path / "mismatch.pt")


# ------------------------------------------------------------------------------------------------
# CLIs
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}))
    return path


def test_train_cli_writes_checkpoints_and_resumes(tmp_path, tiny_config):
    data = write_episodes(tmp_path / "data", n_episodes=2)
    val = write_episodes(tmp_path / "val", n_episodes=1)
    out = tmp_path / "run"
    common = ["--data", str(data), "--out", str(out), "--val-data", str(val), "--threads", "1", "--no-progress"]
    metrics = train_cli.main([*common, "--config", str(tiny_config), "--steps", "2"])
    assert metrics["step"] == 2 and 0.0 < metrics["val/codebook_usage"] <= 1.0 and metrics["val/psnr"] > 0
    for name in ("last.pt", "tokenizer.pt", "config.yml", "args.yml", "command.txt", "metrics.json"):
        assert (out / name).is_file(), name
    assert list((out / "tb").iterdir())
    assert load_checkpoint(out / "last.pt", train_cli.TRAIN_STATE_KIND)["step"] == 2
    VQTokenizer.load(out / "tokenizer.pt")

    # a second run into the same folder without --resume is refused
    with pytest.raises(SystemExit) as exc:
        train_cli.main([*common, "--config", str(tiny_config)])
    assert exc.value.code == 2

    metrics = train_cli.main([*common, "--resume", "--steps", "5"])
    assert metrics["step"] == 5
    state = load_checkpoint(out / "last.pt", train_cli.TRAIN_STATE_KIND)
    assert state["step"] == 5 and state["optimizer"]["state"]
    assert json.loads((out / "metrics.json").read_text())["step"] == 5


def test_tokenize_cli_writes_token_folder(tmp_path):
    data = write_episodes(tmp_path / "data", n_episodes=2, length=6)
    model = tiny_tokenizer()
    model.save(tmp_path / "tok.pt")
    meta = tokenize_cli.main(["--tokenizer", str(tmp_path / "tok.pt"), "--data", str(data), "--out", str(tmp_path / "tokens"), "--no-progress"])
    tokens, episodes, stored = read_token_folder(tmp_path / "tokens")
    assert tokens.shape == (12, 4, 4) and tokens.dtype == np.uint8
    assert episodes.tolist() == [[0, 6], [6, 12]]
    assert stored["codebook_size"] == 16 and stored["image_size"] == 16 and meta["num_frames"] == 12
    first = np.load(data / "task" / "ep_00000.npz")["frames"]
    np.testing.assert_array_equal(tokens[:6], model.encode(first).numpy())

    # several sources into one token folder (the reference recipe's noise-0.5 + noise-0.1 clips)
    more = write_episodes(tmp_path / "more", n_episodes=1, length=5)
    meta = tokenize_cli.main(["--tokenizer", str(tmp_path / "tok.pt"), "--data", str(data), str(more),
                              "--out", str(tmp_path / "both"), "--no-progress"])
    both, episodes, stored = read_token_folder(tmp_path / "both")
    assert episodes.tolist() == [[0, 6], [6, 12], [12, 17]] and meta["num_episodes"] == 3
    np.testing.assert_array_equal(both[:12], tokens)
    assert stored["source"] == [str(data.resolve()), str(more.resolve())]
    with pytest.raises(SystemExit):  # a missing source: one-line error, nothing written
        tokenize_cli.main(["--tokenizer", str(tmp_path / "tok.pt"), "--data", str(data), str(tmp_path / "nope"),
                           "--out", str(tmp_path / "none"), "--no-progress"])
    assert not (tmp_path / "none").exists()


def test_evaluate_cli_metrics_and_png(tmp_path):
    data = write_episodes(tmp_path / "data", n_episodes=2, length=6)
    model = tiny_tokenizer()
    model.save(tmp_path / "tok.pt")
    png = tmp_path / "recon.png"
    metrics = evaluate_cli.main(["--tokenizer", str(tmp_path / "tok.pt"), "--data", str(data), "--png", str(png), "--png-frames", "4"])
    frames = np.concatenate([np.load(p)["frames"] for p in sorted((data / "task").glob("*.npz"))])
    expected = evaluate_cli.psnr(model.decode(model.encode(frames)), torch.from_numpy(frames).float() / 255.0).mean()
    assert metrics["frames"] == 12 and abs(metrics["psnr"] - float(expected)) < 1e-4
    assert 1 <= metrics["codes_used"] <= 16 and metrics["codebook_usage"] == metrics["codes_used"] / 16
    import imageio.v3 as iio

    assert iio.imread(png).shape == (32, 64, 3)  # 4 originals over 4 reconstructions


def test_psnr_and_code_stats():
    target = torch.full((2, 4, 4, 3), 0.5)
    assert torch.allclose(evaluate_cli.psnr(target + 0.1, target), torch.tensor([20.0, 20.0]))
    usage, perplexity = evaluate_cli.code_stats(torch.tensor([5, 5, 0, 0]))
    assert usage == 0.5 and abs(perplexity - 2.0) < 1e-5


def test_decoder_only_training_keeps_every_token(tmp_path, tiny_config):
    """--init-from T --train-only decoder: the decoder learns, encoder and codebook (so every token) stay as in T."""
    data = write_episodes(tmp_path / "data", n_episodes=2)
    common = ["--data", str(data), "--threads", "1", "--no-progress"]
    train_cli.main([*common, "--out", str(tmp_path / "base"), "--config", str(tiny_config), "--steps", "3"])
    base = VQTokenizer.load(tmp_path / "base" / "tokenizer.pt")
    out = tmp_path / "dec"
    train_cli.main([*common, "--out", str(out), "--init-from", str(tmp_path / "base" / "tokenizer.pt"),
                    "--train-only", "decoder", "--steps", "4", "--lr", "0.01"])
    tuned = VQTokenizer.load(out / "tokenizer.pt")
    assert tuned.config.train_only == "decoder" and tuned.config.learning_rate == 0.01
    before, after = base.state_dict(), tuned.state_dict()
    frozen = [k for k in before if not k.startswith("decoder.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # encoder, codebook, EMA buffers
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    frames = random_frames(6)
    assert torch.equal(base.encode(frames), tuned.encode(frames))
    # resumable like any run: the same command with --resume continues last.pt
    metrics = train_cli.main([*common, "--out", str(out), "--init-from", str(tmp_path / "base" / "tokenizer.pt"),
                              "--train-only", "decoder", "--steps", "6", "--resume"])
    assert metrics["step"] == 6
    with pytest.raises(SystemExit) as exc:  # a decoder alone needs a trained codebook to start from
        train_cli.main([*common, "--out", str(tmp_path / "bad"), "--config", str(tiny_config), "--train-only", "decoder"])
    assert exc.value.code == 2 and not (tmp_path / "bad").exists()
    config = tmp_path / "decoder_only.yml"  # the same through a config file
    config.write_text(tiny_config.read_text() + "train_only: decoder\n")
    with pytest.raises(SystemExit) as exc:
        train_cli.main([*common, "--out", str(tmp_path / "bad"), "--config", str(config)])
    assert exc.value.code == 2 and not (tmp_path / "bad").exists()


def test_tokenize_and_evaluate_accept_a_shipped_name(tmp_path):
    data = write_episodes(tmp_path / "data", n_episodes=1, length=3)  # 16 px frames, resized to the model's 64
    meta = tokenize_cli.main(["--tokenizer", "metaworld-64", "--data", str(data), "--out", str(tmp_path / "tokens"), "--no-progress"])
    assert meta["tokenizer"].endswith("metaworld-64/tokenizer.pt") and meta["codebook_size"] == 256
    metrics = evaluate_cli.main(["--tokenizer", "metaworld-64", "--data", str(data)])
    assert metrics["frames"] == 3 and metrics["psnr"] > 0


def test_cli_bad_inputs_print_one_line_and_exit_2(tmp_path, capsys, tiny_config):
    cases = [
        (train_cli.main, ["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o1"), "--config", str(tiny_config)], "not found"),
        (train_cli.main, ["--data", str(tmp_path), "--out", str(tmp_path / "o2"), "--config", "nonexistent-profile"], "profile"),
        (train_cli.main, ["--data", str(tmp_path), "--out", str(tmp_path / "o3"), "--resume"], "no training checkpoint"),
    ]
    episodes = write_episodes(tmp_path / "episodes")
    cases.append((train_cli.main, ["--data", str(episodes), "--out", str(tmp_path / "o4"), "--config", str(tiny_config),
                                   "--val-data", str(tmp_path / "missing-val")], "not found"))
    save_checkpoint(tmp_path / "dyn.pt", "visual_dynamics", config={}, state_dict={})
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    data = write_episodes(tmp_path / "data")
    for ckpt, message in (("dyn.pt", "visual_dynamics"), ("corrupt.pt", "cannot read")):
        cases.append((tokenize_cli.main, ["--tokenizer", str(tmp_path / ckpt), "--data", str(data), "--out", str(tmp_path / "t")], message))
    model = tiny_tokenizer(image_size=32)  # frames are 16 px: resized by the reader, so this one must work
    model.save(tmp_path / "tok32.pt")
    cases.append((tokenize_cli.main, ["--tokenizer", str(tmp_path / "tok32.pt"), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "t")], "not found"))
    for main, argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and message in err, err
    # a refused run writes nothing: no --out folder (args.yml, config.yml, tokens...)
    assert not [p.name for p in tmp_path.iterdir() if p.name in ("o1", "o2", "o3", "o4", "t")]


def test_train_cli_with_fewer_frames_than_the_image_grid(tmp_path, tiny_config):
    """5 frames (the reconstruction grid shows 8 when there are that many): trains, no traceback."""
    data = write_episodes(tmp_path / "data", n_episodes=1, length=5)
    metrics = train_cli.main(["--data", str(data), "--out", str(tmp_path / "run"), "--config", str(tiny_config),
                              "--steps", "1", "--threads", "1", "--no-progress"])
    assert metrics["step"] == 1 and (tmp_path / "run" / "tokenizer.pt").is_file()


@pytest.mark.slow  # a fresh interpreter importing torch takes ~10-40 s on the shared CPU
def test_train_cli_subprocess_exit_code(tmp_path):
    """The real command: a missing data folder gives one line on stderr and exit status 2."""
    result = subprocess.run(
        [sys.executable, "-m", "sb3_pvdr.tokenizer.train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: data not found") and len(result.stderr.strip().splitlines()) == 1


def test_encoder_distill_probe_compares_student_tokens_with_the_teachers(tmp_path):
    """scripts/encoder_distill_probe.py: a student distilled onto a tiny teacher reports token agreement, PSNR of the
    teacher's decoder on both token sets and the teacher's own code ambiguity; a student with another grid is refused."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("encoder_distill_probe", Path(__file__).resolve().parent.parent / "scripts" / "encoder_distill_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    teacher = tiny_tokenizer()
    teacher.save(tmp_path / "tok.pt")
    data = write_episodes(tmp_path / "train", n_episodes=4, length=8)
    val = write_episodes(tmp_path / "val", n_episodes=1, length=8)
    common = ["--tokenizer", str(tmp_path / "tok.pt"), "--data", str(data), "--val-data", str(val), "--batch-size", "4",
              "--channels", "8", "--json", str(tmp_path / "r.json")]
    # patch 4, three levels at 4x4 (no downsampling left): 16 px -> 4x4 tokens, the teacher's grid
    short = probe.main(common + ["--patch-size", "4", "--channel-mult", "1,1,1", "--steps", "2", "--lr", "1e-6"])
    report = probe.main(common + ["--patch-size", "4", "--channel-mult", "1,1,1", "--steps", "150", "--lr", "3e-3"])
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert 0.0 <= report["token_agreement"] <= 1.0 and report["token_agreement"] > short["token_agreement"]
    assert report["final_loss"] < short["final_loss"]
    assert 0.0 <= report["teacher_ambiguity_5pct"] <= report["teacher_ambiguity_10pct"] <= 1.0
    assert np.isfinite(report["psnr_student_tokens"]) and np.isfinite(report["psnr_teacher_tokens"])  # tiny teacher: ~8 dB
    with pytest.raises(SystemExit, match="grid"):
        probe.main(common + ["--patch-size", "2", "--channel-mult", "1,1"])  # 2 px per token: 8x8 tokens
