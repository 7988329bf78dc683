"""Fill the goal-image cache ahead of training (otherwise each variant's goal is made at its first reset).

    python -m sb3_pvdr.envs                                   # the 12 paper tasks, 64 px, default cameras
    python -m sb3_pvdr.envs --tasks reach-v2,drawer-open-v2 --image-size 128

Prints, per task, how many of the 50 variants have a goal image and why the others were skipped.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from sb3_pvdr.common.errors import ConfigError, cli_entry


@cli_entry
def main(argv: Sequence[str] | None = None) -> dict[str, dict[int, str]]:
    parser = argparse.ArgumentParser(prog="python -m sb3_pvdr.envs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: the 12 paper tasks)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--camera", default=None, help="camera (default: each task's default camera)")
    parser.add_argument("--show-goal-markers", action="store_true", help="draw metaworld's goal marker sites")
    parser.add_argument(
        "--goal-cache-dir", default=None, help="default: $SB3_PVDR_GOAL_CACHE or ~/.cache/sb3_pvdr/goals"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from sb3_pvdr.envs import PAPER_TASKS, make_metaworld_env

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] or [f"{t}-v2" for t in PAPER_TASKS]
    failures: dict[str, dict[int, str]] = {}
    for task in tasks:
        env = make_metaworld_env(
            task,
            image_size=args.image_size,
            camera=args.camera,
            hide_goal_markers=not args.show_goal_markers,
            goal_cache_dir=args.goal_cache_dir,
        )
        try:
            failed: dict[int, str] = {}
            for variant in range(env.n_variants):
                try:
                    env.goal_image_of(variant)
                except ConfigError as exc:
                    failed[variant] = str(exc)
            failures[task] = failed
            print(f"{task}: {env.n_variants - len(failed)}/{env.n_variants} variants have a goal image "
                  f"({env.camera}, {args.image_size} px)" + (f"; skipped {sorted(failed)}" if failed else ""))
            for reason in sorted(set(failed.values())):
                print(f"  {reason}")
        finally:
            env.close()
    return failures


if __name__ == "__main__":
    main()
