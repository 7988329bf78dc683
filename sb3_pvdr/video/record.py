"""Record action-free Meta-World videos with the scripted policies (the in-domain pre-training data).

Paper: PVDR, Appendix B.2 ("Meta-World Dataset": trajectories collected in Meta-World). Each episode
runs metaworld's scripted policy with Gaussian exploration noise on a random variant of a task, in
the *online* environment (:func:`sb3_pvdr.envs.make_metaworld_env`: same camera, frame size and
action repeat), and keeps one frame per agent step, so pre-training clips have the online stage's
time step.

Usage::

    python -m sb3_pvdr.video.record --tasks reach-v2,plate-slide-v2 --episodes 20 --out DIR
    python -m sb3_pvdr.video.record --domain-gap --episodes 5 --out DIR   # every task but the 12 downstream ones

Output (readable by :class:`sb3_pvdr.video.VideoClipDataset`)::

    DIR/meta.json                  recording settings + a summary (episodes, frames, success rate)
    DIR/<task>/ep_00012.npz        frames uint8 (T, H, W, 3); actions float32 (T-1, 4), success bool (T-1,),
                                   variant, seed -- actions/success are for analysis only, pre-training
                                   reads ``frames``

Re-running the same command resumes: episodes already written are skipped, and each episode is
seeded from ``(seed, task, episode)``, so an interrupted run ends with the same files as an
uninterrupted one. Episode files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import warnings
import zlib
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from sb3_pvdr.common.checkpoint import atomic_write_bytes
from sb3_pvdr.common.errors import ConfigError, cli_entry

META_NAME = "meta.json"
FORMAT = "sb3_pvdr.video.record/1"
# settings that must match between a resumed run and the files already in the folder
RESUME_KEYS = ("image_size", "camera", "action_repeat", "noise", "seed", "max_steps", "terminate_on_success")


def episode_path(out: Path, task: str, episode: int) -> Path:
    """Where episode ``episode`` of ``task`` is stored."""
    return out / task / f"ep_{episode:05d}.npz"


def episode_seed(seed: int, task: str, episode: int) -> int:
    """A seed that depends only on ``(seed, task, episode)``: resumed runs record the same episodes."""
    return int(np.random.SeedSequence([seed, zlib.crc32(task.encode()), episode]).generate_state(1)[0])


def resolve_tasks(tasks: Optional[str], domain_gap: bool) -> list[str]:
    """The metaworld task ids (``<name>-v3``) to record.

    :param tasks: comma-separated task names (``reach-v2``, ``reach-v3`` or ``reach``); ``None``: the
        paper's 12 downstream tasks
    :param domain_gap: every Meta-World task except the 12 downstream ones
    """
    from sb3_pvdr.envs import PAPER_TASKS
    from sb3_pvdr.envs.tasks import METAWORLD_TASKS, resolve_task

    if domain_gap:
        if tasks:
            raise ConfigError("--domain-gap records every task except the paper's 12; don't also pass --tasks")
        downstream = {resolve_task(t).name for t in PAPER_TASKS}
        return [resolve_task(t).metaworld_name for t in METAWORLD_TASKS if t not in downstream]
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else list(PAPER_TASKS)
    resolved = [resolve_task(t).metaworld_name for t in names]
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"--tasks lists a task twice: {names}")
    return resolved


def record_episode(env: Any, policy: Any, rng: np.random.Generator, seed: int, noise: float, max_steps: Optional[int]) -> dict[str, Any]:
    """Run one noisy scripted episode and collect its frames.

    :param env: online env (``make_metaworld_env``); frames are ``obs["observation"]``
    :param policy: metaworld scripted policy (``get_action(state)``)
    :param rng: exploration-noise generator
    :param seed: ``env.reset`` seed (picks the random task variant)
    :param noise: std of the Gaussian noise added to the scripted action (actions are clipped to [-1, 1])
    :param max_steps: stop after this many agent steps (``None``: the env's episode limit)
    :return: frames ``uint8 (T, H, W, 3)``, actions ``float32 (T-1, A)``, success ``bool (T-1,)``, variant
    """
    obs, info = env.reset(seed=seed)
    low, high = env.action_space.low, env.action_space.high
    frames, actions, successes = [obs["observation"]], [], []
    step = 0
    with warnings.catch_warnings():
        # metaworld's scripted `move` warns on every clipped action
        warnings.simplefilter("ignore")
        while max_steps is None or step < max_steps:
            action = policy.get_action(env.unwrapped.state_observation())
            action = np.clip(action + noise * rng.standard_normal(action.shape), low, high).astype(np.float32)
            obs, _, terminated, truncated, info = env.step(action)
            frames.append(obs["observation"])
            actions.append(action)
            successes.append(bool(info.get("is_success", False)))
            step += 1
            if terminated or truncated:
                break
    return {
        "frames": np.stack(frames).astype(np.uint8, copy=False),
        "actions": np.stack(actions) if actions else np.zeros((0,) + env.action_space.shape, np.float32),
        "success": np.asarray(successes, dtype=bool),
        "variant": int(info.get("variant", -1)),
    }


def save_episode(path: Path, episode: dict[str, Any], seed: int) -> None:
    """Write one episode as a compressed ``.npz``, atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        frames=episode["frames"],
        actions=episode["actions"],
        success=episode["success"],
        variant=np.int64(episode["variant"]),
        seed=np.uint64(seed),
    )
    atomic_write_bytes(path, buffer.getvalue())


def check_resume(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Previous meta.json of ``out`` (or ``{}``); refuse to mix episodes recorded with other settings."""
    path = out / META_NAME
    if not path.is_file():
        return {}
    try:
        previous = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path} is corrupt ({exc}); delete it to record into this folder") from exc
    changed = {k: (previous.get(k), settings[k]) for k in RESUME_KEYS if previous.get(k) != settings[k]}
    if changed:
        diff = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ConfigError(f"{out} holds episodes recorded with other settings ({diff}); use another --out")
    return previous


def summarize(out: Path, tasks: Sequence[str]) -> dict[str, Any]:
    """Episodes, frames and scripted-policy success rate per task, from the files in ``out``."""
    summary: dict[str, Any] = {}
    for task in tasks:
        files = sorted((out / task).glob("ep_*.npz"))
        frames, successes = 0, 0
        for file in files:
            with np.load(file) as data:
                frames += int(data["success"].shape[0]) + 1
                successes += bool(data["success"].any())
        summary[task] = {"episodes": len(files), "frames": frames, "success_rate": successes / max(len(files), 1)}
    return summary


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_pvdr.video.record",
        description="Record action-free Meta-World videos with scripted policies + Gaussian exploration noise.",
    )
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: the paper's 12), e.g. reach-v2,plate-slide-v2")
    parser.add_argument("--domain-gap", action="store_true", help="record every Meta-World task except the paper's 12")
    parser.add_argument("--episodes", type=int, required=True, help="episodes per task")
    parser.add_argument("--out", required=True, help="output folder (re-run the same command to resume)")
    parser.add_argument("--image-size", type=int, default=64, help="frame size in pixels (default 64)")
    parser.add_argument("--camera", default=None, help="camera (default: the online env's per-task camera)")
    parser.add_argument("--action-repeat", type=int, default=2, help="simulator steps per agent step (default 2, as online)")
    parser.add_argument("--noise", type=float, default=0.3, help="std of the Gaussian action noise (default 0.3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="agent steps per episode (default: the env's 250)")
    parser.add_argument(
        "--full-episodes",
        action="store_true",
        help="keep recording after success until the time limit (default: stop at success, as the online env does)",
    )
    parser.add_argument("--goal-cache-dir", default=None, help="goal-image cache of the env (default: its own)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    if args.noise < 0:
        raise ConfigError(f"--noise must be >= 0, got {args.noise}")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.action_repeat < 1:
        raise ConfigError(f"--action-repeat must be >= 1, got {args.action_repeat}")
    return args


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    from tqdm import tqdm

    from sb3_pvdr.envs import get_scripted_policy, make_metaworld_env
    from sb3_pvdr.envs.tasks import check_camera, check_image_size

    tasks = resolve_tasks(args.tasks, args.domain_gap)
    out = Path(args.out).expanduser()
    settings = {
        "format": FORMAT,
        "image_size": check_image_size(args.image_size),
        "camera": args.camera if args.camera is None else check_camera(args.camera),
        "action_repeat": args.action_repeat,
        "noise": args.noise,
        "seed": args.seed,
        "max_steps": args.max_steps,
        "terminate_on_success": not args.full_episodes,
    }
    previous = check_resume(out, settings)
    all_tasks = list(dict.fromkeys(list(previous.get("tasks", [])) + tasks))
    meta = {
        **settings,
        "tasks": all_tasks,
        "episodes_per_task": max(args.episodes, int(previous.get("episodes_per_task", 0))),
        "domain_gap": args.domain_gap,
        "layout": "<task>/ep_NNNNN.npz: frames uint8 (T,H,W,3); actions float32 (T-1,A) and success bool (T-1,) for analysis only",
        "command": " ".join([Path(sys.executable).name, "-m", "sb3_pvdr.video.record", *(argv if argv is not None else sys.argv[1:])]),
    }
    todo = [(t, e) for t in tasks for e in range(args.episodes) if not episode_path(out, t, e).is_file()]

    def open_env(task: str) -> tuple[Any, Any]:
        env = make_metaworld_env(
            task,
            image_size=args.image_size,
            camera=args.camera,
            action_repeat=args.action_repeat,
            seed=args.seed,
            terminate_on_success=not args.full_episodes,
            goal_cache_dir=args.goal_cache_dir,
        )
        return env, get_scripted_policy(task)

    total = len(tasks) * args.episodes
    env, env_task, bar = None, None, None
    try:
        # The first env is built before anything is written: what only the env checks (e.g. an unusable
        # --goal-cache-dir) refuses the run with --out as it was.
        if todo:
            env_task = todo[0][0]
            env, policy = open_env(env_task)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / META_NAME, json.dumps({**previous, **meta}, indent=2).encode())
        # temporary files of episodes a killed run was writing (atomic_write_bytes names them .<name>.*.tmp)
        for stale in out.glob("*/.ep_*.npz.*.tmp"):
            stale.unlink(missing_ok=True)
        start_time = time.time()
        new_frames = 0
        bar = tqdm(total=total, initial=total - len(todo), unit="ep", disable=args.no_progress, dynamic_ncols=True)
        for task, episode in todo:
            if task != env_task:
                if env is not None:
                    env.close()
                env, policy = open_env(task)
                env_task = task
            seed = episode_seed(args.seed, task, episode)
            data = record_episode(env, policy, np.random.default_rng(seed), seed, args.noise, args.max_steps)
            save_episode(episode_path(out, task, episode), data, seed)
            new_frames += len(data["frames"])
            bar.set_postfix(task=task, frames=new_frames, refresh=False)
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if env is not None:
            env.close()
    elapsed = time.time() - start_time
    summary = summarize(out, all_tasks)
    meta["summary"] = summary
    meta["total_episodes"] = sum(s["episodes"] for s in summary.values())
    meta["total_frames"] = sum(s["frames"] for s in summary.values())
    meta["last_run"] = {"new_episodes": len(todo), "new_frames": new_frames, "wall_time_s": round(elapsed, 1)}
    atomic_write_bytes(out / META_NAME, json.dumps(meta, indent=2).encode())
    print(
        f"recorded {len(todo)} new episodes ({new_frames} frames) in {elapsed:.0f} s; "
        f"{out} holds {meta['total_episodes']} episodes, {meta['total_frames']} frames"
    )
    return meta


if __name__ == "__main__":
    main()
