"""Reading what runs have written (rl-zoo's layout), merged over resumed segments: curves, tables, machine info.

A run's folder ``runs/<label>/<env>/seed<k>/`` is ``train.py``'s ``-f`` log folder. Every launch of the run
(the first, and one per resume) is a *segment*: rl-zoo's ``<algo>/<env>_<i>/`` folder, listed with the step it
started from in ``segments.json``. Evaluations (``evaluations.npz``) of a segment count up to the start of the
next one; wall-clock time comes from the segments' ``*.monitor.csv`` (seconds since the segment started,
per finished episode), so ``wall_time_s`` adds up the time of the segments a curve point went through.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from sb3_pvdr.common.checkpoint import atomic_write_bytes
from sb3_pvdr.experiments.spec import ExperimentSpec, RunSpec

CURVE_COLUMNS = ("label", "algo", "env", "seed", "timesteps", "success_rate", "mean_reward", "wall_time_s", "train_success_rate")
SEGMENTS_FILE = "segments.json"
DONE_FILE = "done.json"
CHECKPOINT_RE = re.compile(r"rl_model_(\d+)_steps\.zip$")


@dataclass
class CurvePoint:
    """One evaluation of one run (``train_success_rate``: share of the training episodes that ended since the
    previous evaluation and reported ``is_success``; nan when none ended or the monitor has no ``is_success``)."""

    timesteps: int
    success_rate: float
    mean_reward: float
    wall_time_s: float
    train_success_rate: float = float("nan")


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as json, atomically (never a half-written file)."""
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def read_evaluations(path: Path, tries: int = 5, wait: float = 0.2) -> Optional[dict[str, np.ndarray]]:
    """The arrays of an ``evaluations.npz`` (``None``: missing or unreadable).

    SB3's ``EvalCallback`` rewrites the file in place (``np.savez``), so a reader running beside training can meet
    it half written, and a run killed mid-write leaves it truncated: a failed read is retried ``tries`` times,
    ``wait`` seconds apart, then counts as no evaluations (a resumed run restarts from an earlier checkpoint).
    """
    for attempt in range(tries):
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return {key: data[key] for key in data.files}
        except (EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError):
            if attempt + 1 < tries:
                time.sleep(wait)
    return None


def segments(run_dir: Path) -> list[dict[str, Any]]:
    """The run's launches in order: ``[{"folder": "<algo>/<env>_<i>", "start": step}, ...]``."""
    return read_json(run_dir / SEGMENTS_FILE, [])


def latest_checkpoint(run_dir: Path, evaluated: bool = False) -> tuple[int, Optional[Path]]:
    """``(steps, path)`` of the newest ``rl_model_<steps>_steps.zip`` of any segment (``(0, None)``: none).

    :param evaluated: only checkpoints whose step has its evaluation in the curve (a run killed between saving a
        checkpoint and evaluating at that step resumes one interval earlier, so that no curve point is missing)
    """
    limit = max((p.timesteps for p in read_curve(run_dir)), default=0) if evaluated else None
    best: tuple[int, Optional[Path]] = (0, None)
    for seg in segments(run_dir):
        for path in (run_dir / seg["folder"]).glob("rl_model_*_steps.zip"):
            match = CHECKPOINT_RE.search(path.name)
            steps = int(match.group(1)) if match else 0
            if match and steps > best[0] and (limit is None or steps <= limit):
                best = (steps, path)
    return best


def _episodes(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per finished training episode of a segment, all envs merged in time order: (env steps done, seconds since
    the segment started, success 1/0 or nan), each with a leading entry for the segment's start."""
    rows = []
    for path in folder.glob("*.monitor.csv"):
        with path.open() as f:
            f.readline()  # '#{"t_start": ..., "env_id": ...}'
            for r in csv.DictReader(f):
                success = r.get("is_success")
                flag = float("nan") if success in (None, "") else float(success.strip().lower() in ("true", "1", "1.0"))
                rows.append((float(r["t"]), int(r["l"]), flag))
    rows.sort()
    times = np.array([0.0] + [t for t, _, _ in rows])
    steps = np.cumsum([0] + [n for _, n, _ in rows])
    successes = np.array([np.nan] + [s for _, _, s in rows])
    return steps, times, successes


def _episode_clock(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(env steps done, seconds since the segment started) after each finished training episode, all envs merged."""
    steps, times, _ = _episodes(folder)
    return steps, times


@dataclass
class _SegmentLog:
    """One segment of a run: its folder, first step, the next segment's first step (``None``: last) and its
    training episodes as :func:`_episodes` returns them."""

    folder: Path
    start: int
    end: Optional[int]
    steps: np.ndarray
    times: np.ndarray
    successes: np.ndarray


def _segment_logs(run_dir: Path) -> list[_SegmentLog]:
    """The run's segments in order, each segment's monitor files read once."""
    segs = segments(run_dir)
    logs = []
    for i, seg in enumerate(segs):
        folder = run_dir / seg["folder"]
        end = int(segs[i + 1]["start"]) if i + 1 < len(segs) else None
        logs.append(_SegmentLog(folder, int(seg["start"]), end, *_episodes(folder)))
    return logs


def steps_done(run_dir: Path) -> int:
    """Env steps of the run so far: start of the last segment + its finished episodes."""
    segs = segments(run_dir)
    if not segs:
        return 0
    steps, _ = _episode_clock(run_dir / segs[-1]["folder"])
    return int(segs[-1]["start"] + steps[-1])


def read_curve(run_dir: Path) -> list[CurvePoint]:
    """Evaluations of a run, segments merged: a segment's evaluations count until the next segment's start, and
    its wall-clock continues from where the previous segment was at that step. Training episodes count towards
    the first evaluation at or after the step they ended at (``train_success_rate``)."""
    logs = _segment_logs(run_dir)
    points: list[CurvePoint] = []
    offset = 0.0  # wall-clock seconds at the current segment's start
    clock: Optional[tuple[int, np.ndarray, np.ndarray]] = None  # previous segment: start, steps, times
    for log in logs:
        start, end, steps, times = log.start, log.end, log.steps, log.times
        points = [p for p in points if p.timesteps <= start]
        if start == 0:
            offset = 0.0
        elif clock is not None:
            offset += float(np.interp(start - clock[0], clock[1], clock[2]))
        clock = (start, steps, times)
        data = read_evaluations(log.folder / "evaluations.npz")
        if data is None or "timesteps" not in data or "results" not in data:
            continue
        timesteps, results = data["timesteps"], data["results"]
        successes = data["successes"] if "successes" in data and len(data["successes"]) else None
        for j, t in enumerate(timesteps):
            if end is not None and t > end:
                break
            success = float(np.mean(successes[j])) if successes is not None and j < len(successes) else float("nan")
            wall = offset + float(np.interp(t - start, steps, times))
            points.append(CurvePoint(int(t), success, float(np.mean(results[j])), wall))
    episodes = _merged_episodes(logs)
    previous = 0
    for p in points:
        flags = [f for n, f in episodes if previous < n <= p.timesteps and not np.isnan(f)]
        p.train_success_rate = float(np.mean(flags)) if flags else float("nan")
        previous = p.timesteps
    return points


def _merged_episodes(logs: list[_SegmentLog]) -> list[tuple[int, float]]:
    """Episodes of the segments' logs in run steps, each segment's counted until the next segment's start."""
    episodes: list[tuple[int, float]] = []
    for log in logs:
        episodes = [e for e in episodes if e[0] <= log.start]
        episodes += [(log.start + int(n), float(f)) for n, f in zip(log.steps[1:], log.successes[1:])
                     if log.end is None or log.start + n <= log.end]
    return episodes


def training_episodes(run_dir: Path) -> list[tuple[int, float]]:
    """Finished training episodes of a run, segments merged: ``(env step at the episode's end, success 1/0/nan)``
    (a segment's episodes count until the next segment's start)."""
    return _merged_episodes(_segment_logs(run_dir))


def _first_success(episodes: list[tuple[int, float]]) -> Optional[int]:
    return next((n for n, f in episodes if f == 1.0), None)


def first_success_step(run_dir: Path) -> Optional[int]:
    """Env steps at the end of the run's first successful training episode (``None``: none yet)."""
    return _first_success(training_episodes(run_dir))


def run_scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar a run logged to tensorboard, by tag (e.g. ``train/approx_kl``), one value per logged step: where
    a resumed segment logged a step again, its value replaces the earlier one."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    by_tag: dict[str, dict[int, float]] = {}
    for path in sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*"), key=lambda f: f.stat().st_mtime):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags().get("scalars", []):
            by_tag.setdefault(tag, {}).update({int(e.step): float(e.value) for e in events.Scalars(tag)})
    return {tag: [by_step[k] for k in sorted(by_step)] for tag, by_step in by_tag.items()}


# What `python -m sb3_pvdr.experiments scalars` reports by default: how far each policy update moves the policy, L_act,
# the reward terms of eq. (6), what planning chooses (plan/choice_gain: goal distance of the average candidate minus
# the chosen one's; plan/spread: how much the candidates differ) and the fine-tuning losses of eqs. (3)-(4).
DIAGNOSTIC_TAGS = ("train/approx_kl", "train/clip_fraction", "train/std", "train/act_loss", "rollout/goal_term_std",
                   "rollout/plan_term_std", "plan/choice_gain", "plan/spread", "finetune/goal", "finetune/kl_prior")


def scalar_trend(values: list[float], parts: int = 4) -> Optional[tuple[float, float]]:
    """Medians of the first and of the last ``1 / parts`` of a run's logged values (``None``: nothing logged)."""
    if not values:
        return None
    k = max(1, len(values) // parts)
    return float(np.median(values[:k])), float(np.median(values[-k:]))


def scalars_table(spec: ExperimentSpec, runs_dir: Path, tags: Sequence[str] = DIAGNOSTIC_TAGS,
                  runs: Optional[Sequence[RunSpec]] = None) -> str:
    """Markdown table of how each diagnostic scalar moved over each run: per row and tag, each seed's median over
    the first quarter of its logged values -> over the last quarter (``?``: run folder not here, ``–``: not
    logged). A tag none of a row's runs logged (e.g. PVDR's ``plan/*`` for PPO) gets no line.

    :param runs: only these of ``spec``'s runs (default: all)
    """
    keys = {r.key for r in (spec.runs if runs is None else runs)}
    lines = ["| env | label | scalar | first quarter -> last quarter (medians), per seed |", "|---|---|---|---|"]
    for env in spec.envs:
        for label in spec.labels:
            row = [r for r in spec.runs if r.label == label and r.env == env and r.key in keys]
            logged = [run_scalars(runs_dir / r.relpath) if (runs_dir / r.relpath / SEGMENTS_FILE).is_file() else None
                      for r in row]
            for tag in tags:
                if not any(values and tag in values for values in logged):
                    continue
                cells = []
                for values in logged:
                    trend = None if values is None else scalar_trend(values.get(tag, []))
                    cells.append("?" if values is None else "–" if trend is None else f"{trend[0]:.3g} -> {trend[1]:.3g}")
                lines.append(f"| {env} | {label} | {tag} | {' / '.join(cells)} |")
    return "\n".join(lines) + "\n"


RUN_STATS_FILE = "run_stats.json"  # beside curves.csv: run_stats of every run, kept when its folder is gone
FIRST_SUCCESS_HEADER = "| env | label | first training success"  # how first_success_table's header starts


def run_stats(run_dir: Path) -> Optional[dict[str, Any]]:
    """What :func:`first_success_table` reports of one run, kept in ``run_stats.json`` beside ``curves.csv`` so that
    the table survives the run folder (``None``: no run folder here): first successful training episode (env steps,
    ``None``: none yet), successful and finished training episodes, every policy update's ``train/approx_kl`` and
    the last ``train/std``."""
    if not (run_dir / SEGMENTS_FILE).is_file():
        return None
    episodes = training_episodes(run_dir)
    scalars = run_scalars(run_dir)
    std = scalars.get("train/std", [])
    return {"first_success": _first_success(episodes), "successes": sum(1 for _, f in episodes if f == 1.0),
            "episodes": len(episodes), "approx_kl": [round(v, 6) for v in scalars.get("train/approx_kl", [])],
            "last_std": std[-1] if std else None}


def collect_run_stats(spec: ExperimentSpec, runs_dir: Path, previous: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """:func:`run_stats` of every run of ``spec`` whose folder is here, by ``run.key``; a run whose folder is not here
    keeps its entry from ``previous`` (the committed ``run_stats.json``), if any."""
    previous = previous or {}
    stats = {}
    for run in spec.runs:
        here = run_stats(runs_dir / run.relpath)
        if here is not None:
            stats[run.key] = here
        elif run.key in previous:
            stats[run.key] = previous[run.key]
    return stats


def first_success_table(spec: ExperimentSpec, runs_dir: Path, stats: Optional[dict[str, Any]] = None,
                        old_rows: Optional[dict[tuple[str, str], str]] = None) -> str:
    """Markdown table: per row, the env steps of each seed's first successful training episode (``–``: none within
    the steps it has run, ``?``: run folder not here and no stats kept), how many training episodes succeeded of
    those finished, and the median ``train/approx_kl`` of the row's policy updates (how far one update moves the
    policy; SB3's pixel PPO on reach: ~0.03) and the policy's action std at each seed's last update (``train/std``:
    how much of a training episode is exploration noise around the mean action that evaluation runs).

    :param stats: per-run :func:`run_stats` by ``run.key`` (default: those of the run folders in ``runs_dir``)
    :param old_rows: the lines of an earlier table by ``(env, label)``, kept for a row none of whose runs has stats
        (tables written before ``run_stats.json`` existed)
    """
    stats = collect_run_stats(spec, runs_dir) if stats is None else stats
    lines = [f"{FIRST_SUCCESS_HEADER} (k steps), per seed | successful / finished training episodes "
             "| median approx_kl per update | last policy std, per seed |",
             "|---|---|---|---|---|---|"]
    for env in spec.envs:
        for label in spec.labels:
            runs = [r for r in spec.runs if r.label == label and r.env == env]
            if not runs:
                continue
            if old_rows and (env, label) in old_rows and not any(run.key in stats for run in runs):
                lines.append(old_rows[(env, label)])
                continue
            firsts, wins, total, kls, stds = [], 0, 0, [], []
            for run in runs:
                st = stats.get(run.key)
                if st is None:
                    firsts.append("?")
                    stds.append("?")
                    continue
                first = st["first_success"]
                firsts.append("–" if first is None else f"{first / 1000:.1f}")
                wins += st["successes"]
                total += st["episodes"]
                kls += st["approx_kl"]
                stds.append("–" if st["last_std"] is None else f"{st['last_std']:.2f}")
            kl = f"{np.median(kls):.3f}" if kls else "–"
            lines.append(f"| {env} | {label} | {' / '.join(firsts)} | {wins} / {total} | {kl} | {' / '.join(stds)} |")
    return "\n".join(lines) + "\n"


EXACT_PERMUTATION_LIMIT = 200_000  # splits; beyond it the test samples (scipy enumerates and stores every split)


def permutation_p(a: Sequence[float], b: Sequence[float], resamples: int = 20_000) -> float:
    """Two-sided p-value of the difference of means of two small samples (permutation test; seeds are few, so no
    normality is assumed): exact over every split of the pooled values up to ``EXACT_PERMUTATION_LIMIT`` splits,
    else ``resamples`` seeded random splits (e.g. 35 runs split 15 / 20 have 3e9 splits: enumerating them took
    20 GB). ``nan`` if either sample has fewer than 2 values."""
    from math import comb

    from scipy.stats import permutation_test

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    exact = comb(len(a) + len(b), len(a)) <= EXACT_PERMUTATION_LIMIT
    result = permutation_test((np.asarray(a, float), np.asarray(b, float)), lambda x, y: np.mean(x) - np.mean(y),
                              permutation_type="independent", alternative="two-sided",
                              n_resamples=np.inf if exact else resamples, random_state=0)  # fmt: skip
    return float(result.pvalue)


def seed_success_shares(spec: ExperimentSpec, stats: dict[str, Any], env: str, label: str) -> dict[int, float]:
    """Share (%) of each seed's finished training episodes that succeeded, by seed (seeds with stats and episodes)."""
    shares = {}
    for run in spec.runs:
        st = stats.get(run.key)
        if run.env == env and run.label == label and st is not None and st["episodes"]:
            shares[run.seed] = 100.0 * st["successes"] / st["episodes"]
    return shares


def comparison_table(spec: ExperimentSpec, stats: dict[str, Any], reference: str) -> str:
    """Markdown table: each row's per-seed share of successful training episodes against the ``reference`` row's
    (difference of the means in points, two-sided exact permutation p over seeds): whether a change helps, with
    the uncertainty that a handful of seeds leaves."""
    lines = [f"| env | label | successful training episodes per seed (%) | mean | vs {reference}: difference (points) | p |",
             "|---|---|---|---|---|---|"]
    for env in spec.envs:
        ref = seed_success_shares(spec, stats, env, reference)
        for label in spec.labels:
            shares = seed_success_shares(spec, stats, env, label)
            if not shares:
                continue
            per_seed = " / ".join(f"{v:.0f}" for v in shares.values())
            mean = float(np.mean(list(shares.values())))
            if label == reference or not ref:
                diff, p = "–", "–"
            else:
                diff = f"{mean - float(np.mean(list(ref.values()))):+.1f}"
                value = permutation_p(list(shares.values()), list(ref.values()))
                p = "–" if np.isnan(value) else f"{value:.2f}"
            lines.append(f"| {env} | {label} | {per_seed} | {mean:.1f} | {diff} | {p} |")
    return "\n".join(lines) + "\n"


def table_rows(markdown: str, header_start: str) -> dict[tuple[str, str], str]:
    """The rows of the markdown table that follows the line starting with ``header_start``, by ``(env, label)``."""
    rows, inside = {}, False
    for line in markdown.splitlines():
        if line.startswith(header_start):
            inside = True
        elif inside and line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[(cells[0], cells[1])] = line
        elif inside and rows and not line.startswith("|"):
            break
    return rows


def collect_curves(spec: ExperimentSpec, runs_dir: Path) -> list[dict[str, Any]]:
    """One row per evaluation of every run that has evaluated (``CURVE_COLUMNS``)."""
    rows = []
    for run in spec.runs:
        for p in read_curve(runs_dir / run.relpath):
            rows.append(
                {"label": run.label, "algo": run.algo, "env": run.env, "seed": run.seed, "timesteps": p.timesteps,
                 "success_rate": round(p.success_rate, 4), "mean_reward": round(p.mean_reward, 4),
                 "wall_time_s": round(p.wall_time_s, 1), "train_success_rate": round(p.train_success_rate, 4)}
            )
    return rows


def write_curves_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def read_curves_csv(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["seed"], row["timesteps"] = int(row["seed"]), int(row["timesteps"])
        for key in ("success_rate", "mean_reward", "wall_time_s", "train_success_rate"):
            row[key] = float(row.get(key) or "nan")  # csvs written before train_success_rate existed: nan
    return rows


def value_at(points: list[dict[str, Any]], budget: int, key: str = "success_rate") -> Optional[float]:
    """The last evaluation at or before ``budget`` env steps (``None`` when the run has not reached it)."""
    reached = [p for p in points if p["timesteps"] <= budget]
    if not reached or max(p["timesteps"] for p in points) < budget:
        return None
    return max(reached, key=lambda p: p["timesteps"])[key]


def points_by_run(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    """Curve rows grouped by ``(label, env, seed)``, each run's points in order of env steps."""
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        runs.setdefault((row["label"], row["env"], row["seed"]), []).append(row)
    return {key: sorted(points, key=lambda r: r["timesteps"]) for key, points in runs.items()}


def success_table(spec: ExperimentSpec, rows: list[dict[str, Any]], key: str = "success_rate") -> str:
    """Markdown table: success rate (%) mean +- std over seeds at each budget, and wall-clock per 10k env steps.

    :param key: ``success_rate`` (evaluations) or ``train_success_rate`` (training episodes since the previous
        evaluation; seeds with no such episode are left out)
    """
    header = ["env", "label", *[f"{b // 1000}k" if b % 1000 == 0 else str(b) for b in spec.budgets], "s / 10k steps"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_run = points_by_run(rows)
    for env in spec.envs:
        for label in spec.labels:
            seeds = sorted({r.seed for r in spec.runs if r.label == label and r.env == env})
            if not seeds:
                continue
            cells = [env, label]
            for budget in spec.budgets:
                values = [value_at(by_run.get((label, env, s), []), budget, key) for s in seeds]
                values = [100 * v for v in values if v is not None and not np.isnan(v)]
                cells.append(f"{np.mean(values):.0f} ± {np.std(values):.0f} (n={len(values)})" if values else "–")
            speeds = []
            for s in seeds:
                pts = by_run.get((label, env, s), [])
                if pts and pts[-1]["timesteps"] > 0:
                    speeds.append(1e4 * pts[-1]["wall_time_s"] / pts[-1]["timesteps"])
            cells.append(f"{np.mean(speeds):.0f}" if speeds else "–")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def first_evaluation_table(spec: ExperimentSpec, rows: list[dict[str, Any]], threshold: float = 1.0) -> str:
    """Markdown table: per row, the env steps of each seed's first evaluation with a success rate of at least
    ``threshold`` (``–``: none in the evaluations it has, ``?``: no evaluation here) and how many seeds scored at
    least that at their last evaluation (whether it was held)."""
    lines = [f"| env | label | first evaluation at >= {100 * threshold:.0f}% (k steps), per seed | seeds at >= "
             f"{100 * threshold:.0f}% at their last evaluation |", "|---|---|---|---|"]
    by_run = points_by_run(rows)
    for env in spec.envs:
        for label in spec.labels:
            seeds = sorted({r.seed for r in spec.runs if r.label == label and r.env == env})
            if not seeds:
                continue
            firsts, held, evaluated = [], 0, 0
            for seed in seeds:
                points = by_run.get((label, env, seed), [])
                if not points:
                    firsts.append("?")
                    continue
                hits = [p["timesteps"] for p in points if p["success_rate"] >= threshold]
                firsts.append(f"{hits[0] / 1000:g}" if hits else "–")
                evaluated += 1
                held += int(points[-1]["success_rate"] >= threshold)
            lines.append(f"| {env} | {label} | {' / '.join(firsts)} | {held} of {evaluated} |")
    return "\n".join(lines) + "\n"


def machine_info() -> dict[str, Any]:
    """CPU model, instruction-set flags that matter for speed, cores, torch version, git commit."""
    info: dict[str, Any] = {"platform": platform.platform(), "cores": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
        flags = re.search(r"flags\s*:\s*(.*)", cpuinfo)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
        info["cpu_flags"] = [f for f in wanted if flags and f in flags.group(1).split()]
    except OSError:
        info["cpu"] = platform.processor()
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        root = Path(__file__).resolve().parents[2]
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                            check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["git_commit"] = None
    return info


__all__ = ["CURVE_COLUMNS", "DIAGNOSTIC_TAGS", "CurvePoint", "collect_curves", "first_success_step", "first_success_table", "latest_checkpoint",
           "machine_info", "read_curve", "read_evaluations", "read_curves_csv", "run_scalars", "scalar_trend", "scalars_table", "segments", "steps_done", "success_table", "value_at", "write_curves_csv",
           "write_json_atomic"]
