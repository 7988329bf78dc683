"""Write the goal images of the paper's 12 Meta-World tasks as one labelled PNG strip.

    python scripts/make_goal_strip.py                         # assets/goal_strip.png, 128 px tiles
    python scripts/make_goal_strip.py --size 64 --variant 3 --out /tmp/goals.png

Each tile is the goal frame that :func:`sb3_pvdr.envs.make_metaworld_env` gives the agent for that
variant (default camera of the task, goal markers hidden), labelled with the paper's task name, its
Table-3 task set and the camera. Goal images come from (and go to) the goal-image cache.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from sb3_pvdr.common.errors import ConfigError, cli_entry  # noqa: E402
from sb3_pvdr.envs import PAPER_TASKS, TASK_SETS, make_metaworld_env  # noqa: E402

LABEL_HEIGHT = 26
COLUMNS = 6


def goal_tile(task: str, size: int, variant: int, goal_cache_dir: str | None) -> tuple[np.ndarray, str]:
    """The goal frame of ``task`` at the first variant >= ``variant`` that has one, and its label."""
    env = make_metaworld_env(task, image_size=size, goal_cache_dir=goal_cache_dir)
    try:
        for k in list(range(variant, env.n_variants)) + list(range(variant)):
            try:
                image = env.goal_image_of(k)
            except ConfigError:
                continue
            return image, f"{task}-v2 (set {TASK_SETS[task]})|variant {k}, {env.camera}"
        raise ConfigError(f"no variant of {task} has a goal image")
    finally:
        env.close()


def label(tile: np.ndarray, text: str) -> np.ndarray:
    """Put two lines of text (``first|second``) in a white band above the tile."""
    import cv2

    band = np.full((LABEL_HEIGHT, tile.shape[1], 3), 255, np.uint8)
    for row, line in enumerate(text.split("|")):
        width = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.36, 1)[0][0]
        scale = min(0.36, 0.36 * (tile.shape[1] - 4) / max(1, width))  # shrink long names to fit
        cv2.putText(band, line, (2, 10 + 12 * row), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile], axis=0)


def make_strip(size: int, variant: int, goal_cache_dir: str | None, gap: int = 4) -> np.ndarray:
    """The labelled grid (2 rows of 6 tiles) of the 12 paper tasks' goal images."""
    tiles = []
    for task in PAPER_TASKS:
        image, text = goal_tile(task, size, variant, goal_cache_dir)
        tiles.append(label(image, text))
        print(f"{task}: {text.replace('|', ', ')}", flush=True)
    height, width = tiles[0].shape[:2]
    rows = []
    for start in range(0, len(tiles), COLUMNS):
        row = tiles[start : start + COLUMNS]
        padded = []
        for tile in row:
            padded += [tile, np.full((height, gap, 3), 255, np.uint8)]
        rows += [np.concatenate(padded[:-1], axis=1), np.full((gap, (width + gap) * len(row) - gap, 3), 255, np.uint8)]
    return np.concatenate(rows[:-1], axis=0)


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("assets/goal_strip.png"), help="PNG to write")
    parser.add_argument("--size", type=int, default=128, help="tile size in pixels (the env's image_size)")
    parser.add_argument("--variant", type=int, default=0, help="MT1 variant to show (next working one if it fails)")
    parser.add_argument("--goal-cache-dir", default=None, help="goal-image cache (default: ~/.cache/sb3_pvdr/goals)")
    args = parser.parse_args(argv)
    import imageio.v3 as iio

    strip = make_strip(args.size, args.variant, args.goal_cache_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, strip, extension=".png", optimize=True)
    print(f"wrote {args.out} ({strip.shape[1]}x{strip.shape[0]} px, {args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
