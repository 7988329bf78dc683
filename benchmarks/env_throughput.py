"""Throughput of the image-goal Meta-World env with rendering, next to raw metaworld's default
render settings measured in the same run.

    python benchmarks/env_throughput.py                      # reach-v2, 64 and 128 px, 1 and 2 envs
    python benchmarks/env_throughput.py --steps 500 --task drawer-open-v2

One env step is what PPO sees: ``action_repeat`` (2) simulator steps and one rendered frame, plus the
reward. "raw metaworld" is the same work done by metaworld's own env with ``render_mode="rgb_array"``
and its default render settings (4x multisampling, 4096-px shadow maps, reflections). The 2-env rows
run :class:`stable_baselines3.common.vec_env.SubprocVecEnv` and count the steps of both envs. On a
shared machine the wall-clock figures move with the load (the load average is printed with the
table); the single-process rows also give steps per CPU-second of this process (all its threads,
llvmpipe's included), which depends much less on what else runs.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from dataclasses import dataclass
from functools import partial

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


@dataclass
class Args:
    task: str = "reach-v2"
    """task to run (the rendering cost hardly depends on it)"""
    sizes: str = "64,128"
    """comma-separated frame sizes"""
    n_envs: str = "1,2"
    """comma-separated numbers of envs (1: in this process, more: SubprocVecEnv)"""
    steps: int = 300
    """timed env steps per configuration (per env)"""
    raw_steps: int = 40
    """timed steps of raw metaworld (it is slow: ~13 steps/s on an idle 2-core machine)"""
    warmup: int = 10
    """untimed steps first"""
    action_repeat: int = 2
    """simulator steps per env step"""
    raw: bool = True
    """also time raw metaworld with its default render settings (64 px)"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in vars(Args()).items():
        kind = (lambda s: s.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    return Args(**vars(parser.parse_args()))


# ---------------------------------------------------------------------------------------- timing
Rate = tuple[float, float | None]  # (env steps per wall-clock second, per CPU-second or None)


def _rates(steps: int, wall_start: float, cpu_start: float | None) -> Rate:
    wall = steps / (time.perf_counter() - wall_start)
    return wall, None if cpu_start is None else steps / (time.process_time() - cpu_start)


def time_raw_metaworld(task: str, size: int, steps: int, warmup: int, action_repeat: int) -> Rate:
    """Env steps/s of metaworld's own env, default render settings, same camera and frame size."""
    import metaworld

    from sb3_pvdr.envs import resolve_task

    spec = resolve_task(task)
    benchmark = metaworld.MT1(spec.metaworld_name, seed=0)
    env = benchmark.train_classes[spec.metaworld_name](
        render_mode="rgb_array", camera_name=spec.camera, width=size, height=size
    )
    env.set_task(benchmark.train_tasks[0])
    env.max_path_length = 10**9
    env.reset()
    rng = np.random.default_rng(0)
    try:
        for i in range(warmup + steps):
            if i == warmup:
                start, cpu_start = time.perf_counter(), time.process_time()
            action = rng.uniform(-1, 1, 4).astype(np.float32)
            for _ in range(action_repeat):
                env.step(action)
            frame = env.render()
            assert frame is not None and frame.shape == (size, size, 3)
        return _rates(steps, start, cpu_start)
    finally:
        env.close()


def time_ours(task: str, size: int, n_envs: int, steps: int, warmup: int, action_repeat: int) -> Rate:
    """Env steps/s (summed over envs) of :func:`sb3_pvdr.envs.make_metaworld_env`."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from sb3_pvdr.envs import make_metaworld_env

    # A fixed variant: the goal image is made (or read from the cache) once, outside the timing.
    make = partial(make_metaworld_env, task, image_size=size, action_repeat=action_repeat, variant=0)
    rng = np.random.default_rng(0)
    if n_envs == 1:
        env = make()
        try:
            env.reset()
            for i in range(warmup + steps):
                if i == warmup:
                    start, cpu_start = time.perf_counter(), time.process_time()
                _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
                if terminated or truncated:
                    env.reset()
            return _rates(steps, start, cpu_start)
        finally:
            env.close()
    vec = SubprocVecEnv([make] * n_envs)
    try:
        vec.reset()
        for i in range(warmup + steps):
            if i == warmup:
                start = time.perf_counter()
            vec.step(rng.uniform(-1, 1, (n_envs, 4)).astype(np.float32))
        return _rates(n_envs * steps, start, None)
    finally:
        vec.close()


# ---------------------------------------------------------------------------------------- main
def main() -> None:
    args = parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    env_counts = [int(n) for n in args.n_envs.split(",")]
    warnings.filterwarnings("ignore")
    rows: list[tuple[str, int, int, Rate]] = []
    load_before = os.getloadavg()
    if args.raw:
        rate = time_raw_metaworld(args.task, 64, args.raw_steps, 3, args.action_repeat)
        rows.append(("raw metaworld, default render", 64, 1, rate))
        print(f"done: raw metaworld 64 px: {rate[0]:.1f} env steps/s", flush=True)
    for size in sizes:
        for n_envs in env_counts:
            rate = time_ours(args.task, size, n_envs, args.steps, args.warmup, args.action_repeat)
            label = "sb3_pvdr" if n_envs == 1 else "sb3_pvdr, SubprocVecEnv"
            rows.append((label, size, n_envs, rate))
            print(f"done: {label} {size} px x{n_envs}: {rate[0]:.1f} env steps/s", flush=True)
    load_after = os.getloadavg()

    print()
    print(f"task {args.task}, action repeat {args.action_repeat}, {args.steps} timed steps per env "
          f"({args.raw_steps} for raw metaworld), "
          f"{os.cpu_count()} CPUs, MUJOCO_GL={os.environ.get('MUJOCO_GL')}")
    print(f"load average (1/5/15 min) before: {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
          f"after: {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}")
    header = (f"| {'env':<30} | {'px':>4} | {'envs':>4} | {'env steps/s':>11} | {'sim steps/s':>11} "
              f"| {'x raw':>6} | {'env steps/CPU-s':>15} |")
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    raw = rows[0][3][0] if args.raw else None
    for label, size, n_envs, (rate, cpu_rate) in rows:
        speedup = f"{rate / raw:6.1f}" if raw else f"{'-':>6}"
        cpu = f"{cpu_rate:>15.1f}" if cpu_rate is not None else f"{'-':>15}"
        print(f"| {label:<30} | {size:>4} | {n_envs:>4} | {rate:>11.1f} | {rate * args.action_repeat:>11.1f} "
              f"| {speedup} | {cpu} |")


if __name__ == "__main__":
    main()
