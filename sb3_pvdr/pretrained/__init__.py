"""Pre-trained models shipped inside the package, by name (``tokenizer: metaworld-64`` wherever a path goes).

Each model is a folder ``sb3_pvdr/pretrained/<name>/`` holding ``tokenizer.pt`` and ``dynamics.pt`` (weights and
configs only) and ``card.json`` (the data, steps and held-out metrics it was made with, and the command that made
it). A model pre-trained on another shipped model's tokens names it in its card (``"tokenizer_of": "metaworld-64"``)
instead of holding a copy of that tokenizer. ``python -m sb3_pvdr.pretrained list`` prints them; ``python -m sb3_pvdr.pretrained add NAME --tokenizer T
--dynamics D`` ships a new one (``scripts/pretrain_reference.sh`` re-creates the reference models).

    >>> from sb3_pvdr import pretrained
    >>> pretrained.resolve("metaworld-64", "tokenizer")   # -> .../sb3_pvdr/pretrained/metaworld-64/tokenizer.pt
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from sb3_pvdr.common.errors import CheckpointError

PRETRAINED_DIR = Path(__file__).resolve().parent
PARTS = ("tokenizer", "dynamics")


@dataclass(frozen=True)
class PretrainedModel:
    """One shipped model: a tokenizer and the visual dynamics model pre-trained on its tokens.

    :param name: registry name, e.g. ``"metaworld-64"``
    :param folder: the folder holding ``tokenizer.pt``, ``dynamics.pt`` and ``card.json``
    :param card: what ``card.json`` says (data, steps, metrics, command)
    """

    name: str
    folder: Path
    card: dict[str, Any] = field(default_factory=dict)

    def path(self, part: str) -> Path:
        """:param part: ``"tokenizer"`` or ``"dynamics"`` :return: the checkpoint file of that part (a shared
        tokenizer: the file of the model named by ``tokenizer_of``)"""
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        if part == "tokenizer" and self.card.get("tokenizer_of"):
            return self.folder.parent / str(self.card["tokenizer_of"]) / "tokenizer.pt"
        return self.folder / f"{part}.pt"


def available(root: Union[str, Path] = PRETRAINED_DIR) -> dict[str, PretrainedModel]:
    """The shipped models, name -> :class:`PretrainedModel` (folders with a card and both checkpoints, the
    tokenizer possibly another model's)."""
    models = {}
    for folder in sorted(Path(root).iterdir()):
        card = folder / "card.json"
        if folder.is_dir() and card.is_file():
            model = PretrainedModel(folder.name, folder, json.loads(card.read_text()))
            if all(model.path(part).is_file() for part in PARTS):
                models[folder.name] = model
    return models


def get(name: str, root: Union[str, Path] = PRETRAINED_DIR) -> PretrainedModel:
    """:raises CheckpointError: no shipped model of that name (the message lists them)"""
    models = available(root)
    if name not in models:
        raise CheckpointError(f"no pre-trained model named {name!r}; shipped: {', '.join(models) or 'none'}")
    return models[name]


def resolve(spec: Union[str, os.PathLike], part: str, root: Union[str, Path] = PRETRAINED_DIR) -> str:
    """A checkpoint path from a shipped model's name or a path (``~`` expanded).

    :param spec: ``"metaworld-64"`` (a name) or a path to a checkpoint file
    :param part: ``"tokenizer"`` or ``"dynamics"``
    :return: the file to load (existence is checked by the loader)
    """
    text = os.fspath(spec)
    if os.sep not in text and not text.endswith(".pt") and text in available(root):
        return str(get(text, root).path(part))
    return os.path.expanduser(text)


__all__ = ["PARTS", "PRETRAINED_DIR", "PretrainedModel", "available", "get", "resolve"]
