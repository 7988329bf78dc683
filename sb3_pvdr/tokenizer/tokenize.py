"""Encode a whole video dataset once into a token folder for the dynamics model.

    python -m sb3_pvdr.tokenizer.tokenize --tokenizer PATH --data DIR --out DIR [--batch-size B] [--overwrite]

The token folder (``tokens.npy`` memmap ``(N_frames, h, w)``, ``episodes.npy``, ``meta.json``; see
``docs/DESIGN.md``) is written by :func:`sb3_pvdr.video.write_token_folder` and read by
:class:`sb3_pvdr.video.TokenClipDataset`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from sb3_pvdr.common.errors import ConfigError, DataError, cli_entry
from sb3_pvdr.common.utils import get_device
from sb3_pvdr.pretrained import resolve as resolve_pretrained
from sb3_pvdr.tokenizer.model import VQTokenizer
from sb3_pvdr.video import VideoClipDataset, write_token_folder


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def encode_episodes(tokenizer: VQTokenizer, dataset: VideoClipDataset, batch_size: int, progress: bool = True) -> Iterator[np.ndarray]:
    """Token grids ``(T, h, w)`` of every episode of ``dataset``, in index order."""
    for episode in tqdm(range(len(dataset.episodes)), desc="tokenize", disable=not progress, dynamic_ncols=True):
        frames = dataset.read_episode(episode)
        tokens = [tokenizer.encode(frames[s : s + batch_size]).cpu() for s in range(0, len(frames), batch_size)]
        yield torch.cat(tokens).numpy()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sb3_pvdr.tokenizer.tokenize", description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", required=True, help="tokenizer checkpoint (OUT/tokenizer.pt of the training CLI) or shipped name (metaworld-64)")
    parser.add_argument("--data", required=True, nargs="+",
                        help="folders (or files) of videos / .npz episodes; several are tokenized into one token folder")
    parser.add_argument("--out", required=True, help="token folder to write")
    parser.add_argument("--batch-size", type=int, default=256, help="frames encoded at a time")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing token folder")
    parser.add_argument("--skip-bad", action="store_true", help="warn and skip unreadable / too-short episodes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    return args


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Tokenize a dataset; returns the token folder's ``meta.json`` contents."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tokenizer_path = Path(resolve_pretrained(args.tokenizer, "tokenizer"))
    tokenizer = VQTokenizer.load(tokenizer_path, map_location=get_device(args.device))
    data = [Path(item).expanduser() for item in args.data]
    for item in data:
        if not item.exists():
            raise DataError(f"data not found: {item}")
    dataset = VideoClipDataset(data, m=1, l=0, image_size=tokenizer.image_size, skip_bad=args.skip_bad, cache_episodes=0)
    meta = {
        "codebook_size": tokenizer.codebook_size,
        "image_size": tokenizer.image_size,
        "tokenizer": str(tokenizer_path.resolve()),
        "tokenizer_sha256": file_sha256(tokenizer_path),
        "source": str(data[0].resolve()) if len(data) == 1 else [str(item.resolve()) for item in data],
        "episode_files": [ref.name for ref in dataset.episodes],
    }
    out = write_token_folder(args.out, encode_episodes(tokenizer, dataset, args.batch_size, not args.no_progress), meta, overwrite=args.overwrite)
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {meta['num_frames']} frames of {meta['num_episodes']} episodes as {tuple(meta['grid'])} token grids to {out}")
    return meta


if __name__ == "__main__":
    main()
