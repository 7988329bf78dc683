"""LPIPS-style perceptual loss on VGG16 features, for the tokenizer where ImageNet weights are available.

LPIPS (Zhang et al., CVPR 2018, https://arxiv.org/abs/1801.03924), as VQGAN uses it: both images go through
VGG16 (inputs scaled like LPIPS), the activations at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 are
unit-normalised along channels, their squared differences are weighted per channel by the linear heads,
summed over channels, averaged over positions and summed over the five layers.

Nothing is downloaded (this machine cannot, and the tokenizer must not depend on a hub at run time):

- the VGG16 backbone comes from ``perceptual_vgg: PATH`` in the tokenizer config, else from torchvision's cache,
  ``<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth`` (``~/.cache/torch/hub/checkpoints`` or
  ``$TORCH_HOME/hub/checkpoints``: where ``torchvision.models.vgg16(weights="IMAGENET1K_V1")`` leaves it on a machine
  that can download). The file is torchvision's ``vgg16`` state dict; only its ``features.*`` are used. The
  architecture is rebuilt here with torchvision's parameter names, so torchvision itself is not needed.
- the linear heads (LPIPS v0.1 for VGG, a 1x1 convolution per layer) come from ``perceptual_heads: PATH``, else
  from the ``lpips`` package's ``weights/v0.1/vgg.pth`` when that package is installed (its wheel ships them;
  ``pip install --no-deps lpips`` avoids pulling a second torchvision). Without heads every channel weighs the
  same: LPIPS's ``lpips=False`` variant, a plain distance of normalised VGG features (not the learned metric).

Without VGG16 weights, asking for ``perceptual_weight > 0`` is a one-line :class:`ConfigError` saying where
to put them.
"""

# b - batch, c - channels, H W - pixels

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn

from sb3_pvdr.common.errors import CheckpointError, ConfigError

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's IMAGENET1K_V1 weights
# torchvision's vgg16().features up to relu5_3 (conv widths, "M" = max-pool): same module indices
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in that Sequential
TAP_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS' ScalingLayer: inputs in [-1, 1] shifted and scaled like ImageNet-normalised images
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

PathLike = Union[str, Path]


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features[:30]`` (through relu5_3), untrained, with the same parameter names."""
    layers: list[nn.Module] = []
    channels = 3
    for width in VGG16_LAYERS:
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers += [nn.Conv2d(channels, int(width), 3, padding=1), nn.ReLU()]
        channels = int(width)
    return nn.Sequential(*layers)


def torch_hub_checkpoints() -> Path:
    """torchvision's download cache: ``<torch.hub.get_dir()>/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_vgg16_weights(path: Optional[PathLike] = None) -> Path:
    """
    :param path: an explicit weights file (``perceptual_vgg``), or ``None`` to look in torchvision's cache
    :return: the VGG16 weights file
    :raises ConfigError: (one line) when there is none, naming where to put it
    """
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise ConfigError(f"perceptual_vgg: {found} not found (torchvision's vgg16 state dict, {VGG16_FILE})")
        return found
    hub = torch_hub_checkpoints()
    for candidate in (hub / VGG16_FILE, *sorted(hub.glob("vgg16-*.pth"))):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"perceptual_weight > 0 needs ImageNet VGG16 weights, which are never downloaded here: put torchvision's "
        f"{VGG16_FILE} in {hub} or set perceptual_vgg: PATH in the tokenizer config (or use perceptual_weight: 0)"
    )


def lpips_heads_file() -> Optional[Path]:
    """The ``lpips`` package's VGG heads (``weights/v0.1/vgg.pth``) if the package is installed (not imported)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "vgg.pth"
    return found if found.is_file() else None


def _read_tensors(path: Path, what: str) -> dict[str, Tensor]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (any unreadable file: one line)
        raise CheckpointError(f"{what} {path}: not a readable torch state dict ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise CheckpointError(f"{what} {path}: expected a state dict of tensors")
    return data


def load_vgg16_features(path: PathLike) -> nn.Sequential:
    """:func:`vgg16_features` with the weights of a torchvision ``vgg16`` state dict (``features.*`` keys, or bare)."""
    state = _read_tensors(Path(path), "perceptual_vgg")
    features = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    network = vgg16_features()
    expected = network.state_dict()
    missing = sorted(set(expected) - set(features))
    wrong = sorted(k for k in expected if k in features and features[k].shape != expected[k].shape)
    if missing or wrong:
        raise CheckpointError(f"perceptual_vgg {path}: not VGG16 features (missing {missing[:3]}, wrong shapes {wrong[:3]})")
    network.load_state_dict({k: features[k] for k in expected})
    return network


def load_heads(path: PathLike) -> list[Tensor]:
    """LPIPS linear heads ``(1, c, 1, 1)`` per tapped layer from ``lin<k>.model.1.weight`` (lpips) or ``lin<k>.weight``."""
    state = _read_tensors(Path(path), "perceptual_heads")
    heads = []
    for k, channels in enumerate(TAP_CHANNELS):
        weight = state.get(f"lin{k}.model.1.weight", state.get(f"lin{k}.weight"))
        if weight is None or tuple(weight.shape) != (1, channels, 1, 1):
            raise CheckpointError(f"perceptual_heads {path}: no lin{k} weight of shape (1, {channels}, 1, 1)")
        heads.append(weight.float())
    return heads


class PerceptualLoss(nn.Module):
    """LPIPS-style distance (module docstring); frozen, in eval mode.

    :param vgg_weights: a torchvision ``vgg16`` state-dict file
    :param heads: LPIPS linear-head file; ``None``: the ``lpips`` package's if installed, else equal weights
    """

    def __init__(self, vgg_weights: PathLike, heads: Optional[PathLike] = None) -> None:
        super().__init__()
        self.features = load_vgg16_features(vgg_weights)
        heads = heads if heads is not None else lpips_heads_file()
        self.learned_heads = heads is not None
        weights = load_heads(heads) if heads is not None else [torch.ones(1, c, 1, 1) for c in TAP_CHANNELS]
        for k, weight in enumerate(weights):
            self.register_buffer(f"head{k}", weight, persistent=False)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_paths(cls, vgg: Optional[PathLike] = None, heads: Optional[PathLike] = None) -> "PerceptualLoss":
        """Find the VGG16 weights (:func:`find_vgg16_weights`) and build the loss."""
        return cls(find_vgg16_weights(vgg), heads)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        return super().train(False)  # always eval: a fixed metric

    def _taps(self, images: Tensor) -> list[Tensor]:
        x = ((images * 2.0 - 1.0) - self.shift) / self.scale
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                taps.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return taps

    def forward(self, images: Tensor, targets: Tensor) -> Tensor:
        """Distances ``(b,)`` between images ``(b, 3, H, W)`` in [0, 1] (0 for identical images)."""
        total = images.new_zeros(images.shape[0])
        for k, (a, b) in enumerate(zip(self._taps(images), self._taps(targets))):
            total = total + ((a - b).pow(2) * getattr(self, f"head{k}")).sum(dim=1).mean(dim=(1, 2))
        return total


__all__ = ["VGG16_FILE", "PerceptualLoss", "find_vgg16_weights", "lpips_heads_file", "torch_hub_checkpoints", "vgg16_features"]
