"""``python -m sb3_pvdr.pretrained list|add``: the pre-trained models shipped inside the package.

    python -m sb3_pvdr.pretrained list
    python -m sb3_pvdr.pretrained add metaworld-64 --tokenizer T.pt --dynamics D.pt --card metrics.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from sb3_pvdr.common.errors import ConfigError, cli_entry
from sb3_pvdr.pretrained import PRETRAINED_DIR, available


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sb3_pvdr.pretrained", description="shipped pre-trained models")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="name, files and metrics of every shipped model")
    add = sub.add_parser("add", help="ship a tokenizer + dynamics model under a name (weights and configs only)")
    add.add_argument("name", help="registry name, e.g. metaworld-64")
    add.add_argument("--tokenizer", required=True,
                     help="VQTokenizer checkpoint, or a shipped model's name to share its tokenizer (no copy)")
    add.add_argument("--dynamics", required=True, help="VisualDynamicsModel checkpoint pre-trained on its tokens")
    add.add_argument("--card", default=None, help="json file of facts to record (data, steps, metrics, command)")
    add.add_argument("--root", default=str(PRETRAINED_DIR), help=argparse.SUPPRESS)
    add.add_argument("--overwrite", action="store_true", help="replace a shipped model of that name")
    return parser.parse_args(argv)


def add_model(name: str, tokenizer_path: str, dynamics_path: str, card: dict, root: Path, overwrite: bool = False) -> Path:
    """Validate both checkpoints (load them, check they match), then write ``root/name/`` in one rename."""
    from sb3_pvdr.dynamics import VisualDynamicsModel
    from sb3_pvdr.tokenizer import VQTokenizer

    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"model name {name!r} must be a plain folder name")
    target = root / name
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} exists: pass --overwrite to replace it")
    shared = available(root).get(tokenizer_path)  # a shipped model's name: share its tokenizer file
    if shared is not None and shared.name == name:
        raise ConfigError(f"model {name!r} cannot share its own tokenizer")
    tokenizer = VQTokenizer.load(shared.path("tokenizer") if shared is not None else tokenizer_path)
    dynamics = VisualDynamicsModel.load(dynamics_path)
    dynamics.check_tokenizer(tokenizer)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        if shared is None:
            tokenizer.save(staging / "tokenizer.pt")  # weights + config only: no optimizer, no training state
        dynamics.save(staging / "dynamics.pt")
        card = {"name": name, "added": time.strftime("%Y-%m-%d"), "image_size": tokenizer.image_size,
                "grid": list(tokenizer.grid_size), "codebook_size": tokenizer.codebook_size,
                "dynamics_parameters": sum(p.numel() for p in dynamics.parameters()), **card}
        if shared is not None:
            card["tokenizer_of"] = shared.name
        (staging / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        # mkdtemp makes a private (0700) folder: package data must stay readable by every user of the install
        staging.chmod(0o755)
        for file in staging.iterdir():
            file.chmod(0o644)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.command == "list":
        models = available()
        if not models:
            print("no pre-trained models shipped in this install (scripts/pretrain_reference.sh makes them)")
        for name, model in models.items():
            size = sum(file.stat().st_size for file in model.folder.glob("*.pt")) / 2**20
            shared = f", tokenizer of {model.card['tokenizer_of']}" if model.card.get("tokenizer_of") else ""
            print(f"{name}: {model.folder} ({size:.1f} MiB{shared})")
            for key, value in model.card.items():
                print(f"  {key}: {json.dumps(value)}")
        return 0
    card = {}
    if args.card:
        try:
            card = json.loads(Path(args.card).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--card {args.card}: not a readable json file ({exc})") from exc
    target = add_model(args.name, args.tokenizer, args.dynamics, card, Path(args.root), args.overwrite)
    print(f"shipped {args.name} in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
