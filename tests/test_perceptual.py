"""The tokenizer's LPIPS-style perceptual loss: VGG16 weights from a file or torchvision's cache, else a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.tokenizer import TokenizerConfig, VQTokenizer
from sb3_pvdr.tokenizer.losses import TokenizerLoss
from sb3_pvdr.tokenizer.perceptual import TAP_CHANNELS, VGG16_FILE, PerceptualLoss, vgg16_features
from sb3_pvdr.tokenizer.train import main as train_main

# torchvision's vgg16().state_dict() key names of the layers used (the file also holds the classifier)
TORCHVISION_FEATURE_KEYS = [f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) for p in ("weight", "bias")]


def fake_vgg16_file(path: Path) -> Path:
    """A randomly initialised VGG16 state dict laid out like torchvision's file (nothing downloaded)."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    return fake_vgg16_file(tmp_path_factory.mktemp("vgg") / VGG16_FILE)


def test_vgg16_features_have_torchvisions_parameter_names():
    assert list(vgg16_features().state_dict()) == [k.removeprefix("features.") for k in TORCHVISION_FEATURE_KEYS]


def test_perceptual_loss_is_positive_differentiable_and_zero_for_identical_images(vgg_file, tmp_path):
    loss = PerceptualLoss(vgg_file)
    assert not any(p.requires_grad for p in loss.parameters())
    torch.manual_seed(1)
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    targets = torch.rand(2, 3, 32, 32)
    distance = loss(images, targets)
    assert distance.shape == (2,) and (distance > 0).all()
    distance.sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert loss(targets, targets).abs().max() == 0
    assert loss(targets, (targets + 0.02).clamp(0, 1)).mean() < distance.mean()  # closer images, smaller distance
    # learned linear heads (lpips' layout) weight the channels
    heads = tmp_path / "vgg.pth"
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(TAP_CHANNELS)}, heads)
    weighted = PerceptualLoss(vgg_file, heads)
    assert weighted.learned_heads and not torch.allclose(weighted(images, targets), distance)
    assert weighted(targets, targets).abs().max() == 0


def test_tokenizer_loss_adds_the_perceptual_term_with_weights_from_torchvisions_cache(vgg_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = TokenizerConfig.profile("cpu", image_size=16, channels=8, channel_mult=(1, 2, 2), z_channels=8, code_dim=8, codebook_size=16,
                                     kmeans_init=False, perceptual_weight=1.0)  # fmt: skip
    with pytest.raises(ConfigError) as error:
        TokenizerLoss(config)
    message = str(error.value)
    assert "\n" not in message and VGG16_FILE in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "perceptual_vgg" in message
    fake_vgg16_file(tmp_path / "torch" / "hub" / "checkpoints" / VGG16_FILE)
    model = VQTokenizer(config)
    images = torch.rand(2, 3, 16, 16)
    out = model(images)
    total, breakdown = TokenizerLoss(config)(images, out, 0, model.decoder.last_layer)
    plain, _ = TokenizerLoss(config.replace(perceptual_weight=0.0))(images, out, 0, model.decoder.last_layer)
    assert breakdown.perceptual > 0 and torch.isclose(total, plain + breakdown.perceptual)
    assert not any("features" in key for key in TokenizerLoss(config).state_dict())  # the metric is not checkpointed
    # an explicit file wins over the cache; a missing one is named
    assert TokenizerLoss(config.replace(perceptual_vgg=str(vgg_file))).perceptual is not None
    with pytest.raises(ConfigError, match="perceptual_vgg: .*nope.pth not found"):
        TokenizerLoss(config.replace(perceptual_vgg=str(tmp_path / "nope.pth")))


def test_training_cli_refuses_perceptual_weight_without_weights_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "tok.yml").write_text("profile: cpu\nperceptual_weight: 1.0\n")
    with pytest.raises(SystemExit) as exit_:
        train_main(["--data", str(tmp_path / "videos"), "--out", str(tmp_path / "out"), "--config", str(tmp_path / "tok.yml")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: perceptual_weight > 0 needs ImageNet VGG16 weights") and "\n" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="perceptual_weight"):
        TokenizerConfig(perceptual_weight=-1.0)
