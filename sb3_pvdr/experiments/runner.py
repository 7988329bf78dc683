"""Run an experiment matrix through ``train.py``, several runs at once, resumable.

Each run is ``python train.py --algo A --env E --seed S -n N --eval-freq F --save-freq F -f RUN_DIR ...``: the same
code path as a user's command, rl-zoo's log layout, one torch thread. A run interrupted by anything (Ctrl-C, a
kill, a reboot, a time limit) continues from its last checkpoint (``-i rl_model_<steps>_steps.zip``; ``train.py``
keeps the step counter) when the same ``run`` command is issued again; finished runs are skipped.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional

from sb3_pvdr.experiments.results import (
    DONE_FILE,
    SEGMENTS_FILE,
    latest_checkpoint,
    read_curve,
    read_json,
    segments,
    steps_done,
    write_json_atomic,
)
from sb3_pvdr.experiments.spec import ExperimentSpec, RunSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
PID_FILE = "train.pid"


def train_entry() -> list[str]:
    """How to call ``train.py``: the repository's file when present (an editable install), else the same main()."""
    script = REPO_ROOT / "train.py"
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "from sb3_pvdr.zoo import main; main()"]


def format_params(params: dict[str, Any]) -> list[str]:
    """``-params`` items as rl-zoo reads them (``key:<python literal>``)."""
    return [f"{key}:{value!r}" for key, value in params.items()]


def next_segment(run_dir: Path, run: RunSpec) -> str:
    """The folder rl-zoo will create for the next launch: ``<algo>/<env>_<latest id + 1>``."""
    algo_dir = run_dir / run.algo
    pattern = re.compile(rf"^{re.escape(run.env)}_(\d+)$")
    ids = [int(m.group(1)) for p in (algo_dir.iterdir() if algo_dir.is_dir() else []) if (m := pattern.match(p.name))]
    return f"{run.algo}/{run.env}_{max(ids, default=0) + 1}"


def train_command(run: RunSpec, run_dir: Path, checkpoint: Optional[Path] = None) -> list[str]:
    """The ``train.py`` command of a run (continuing ``checkpoint`` when given)."""
    cmd = [*train_entry(), "--algo", run.algo, "--env", run.env, "--seed", str(run.seed), "-n", str(run.n_timesteps),
           "--eval-freq", str(run.eval_freq), "--eval-episodes", str(run.eval_episodes), "--save-freq", str(run.eval_freq),
           "-f", str(run_dir), "--num-threads", str(run.threads)]
    if run.vec_env != "dummy":
        cmd += ["--vec-env", run.vec_env]
    if run.conf_file:
        cmd += ["--conf-file", run.conf_file]
    if checkpoint is not None:
        cmd += ["-i", str(checkpoint)]
    if run.params:
        cmd += ["-params", *format_params(run.params)]
    return cmd


def is_done(run: RunSpec, run_dir: Path) -> bool:
    return (run_dir / DONE_FILE).is_file()


def running_elsewhere(run_dir: Path) -> bool:
    """A ``train.py`` of this run is alive (launched by another ``run`` command on this machine)."""
    try:
        pid = int((run_dir / PID_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


@dataclass
class Job:
    """A launched run."""

    run: RunSpec
    run_dir: Path
    process: subprocess.Popen
    log: IO[str]
    started: float = field(default_factory=time.time)


class ExperimentRunner:
    """Runs the matrix of an :class:`ExperimentSpec` into ``<results>/<name>/runs/``.

    :param spec: the experiment
    :param results_dir: ``results/<name>`` (runs go to its ``runs/``)
    :param jobs: job slots (cores): runs at once, each taking its ``threads`` slots (default one)
    :param status_every: seconds between progress blocks (one line per run)
    :param finished: ``label/env/seed`` keys known to be finished elsewhere (from a committed ``curves.csv``)
    """

    def __init__(self, spec: ExperimentSpec, results_dir: Path, jobs: int = 2, status_every: float = 60.0,
                 finished: Optional[set[str]] = None) -> None:
        self.spec = spec
        self.results_dir = Path(results_dir)
        self.runs_dir = self.results_dir / "runs"
        self.jobs = max(1, int(jobs))
        self.status_every = status_every
        self.finished = finished or set()
        self.failed: dict[str, int] = {}

    def run_dir(self, run: RunSpec) -> Path:
        return self.runs_dir / run.relpath

    # ------------------------------------------------------------------ launching
    def fits(self, run: RunSpec, running: dict[str, Job]) -> bool:
        """Whether ``run`` can start now: the running runs' threads plus its own within ``jobs`` (a run wider than
        ``jobs`` starts alone)."""
        busy = sum(job.run.threads for job in running.values())
        return not running or busy + run.threads <= self.jobs

    def launch(self, run: RunSpec) -> Job:
        run_dir = self.run_dir(run)
        run_dir.mkdir(parents=True, exist_ok=True)
        steps, checkpoint = latest_checkpoint(run_dir, evaluated=True)
        segs = segments(run_dir)
        segs.append({"folder": next_segment(run_dir, run), "start": steps if checkpoint else 0})
        write_json_atomic(run_dir / SEGMENTS_FILE, segs)
        cmd = train_command(run, run_dir, checkpoint)
        log = (run_dir / "train.log").open("a")
        log.write(f"\n$ {shlex.join(cmd)}\n")
        log.flush()
        threads = str(run.threads)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env,
                                   start_new_session=True)
        (run_dir / PID_FILE).write_text(f"{process.pid}\n")  # lets `status` in another shell see it running
        return Job(run, run_dir, process, log)

    def finish(self, job: Job) -> None:
        job.log.close()
        (job.run_dir / PID_FILE).unlink(missing_ok=True)
        code = job.process.returncode
        steps = steps_done(job.run_dir)
        curve = read_curve(job.run_dir)
        final = max((p.timesteps for p in curve), default=0)
        if code == 0 and final >= job.run.n_timesteps:
            write_json_atomic(job.run_dir / DONE_FILE, {"timesteps": final, "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
            _, latest = latest_checkpoint(job.run_dir)
            for seg in segments(job.run_dir):  # keep the newest checkpoint only (models are not results)
                for path in (job.run_dir / seg["folder"]).glob("rl_model_*_steps.zip"):
                    if path != latest:
                        path.unlink()
        else:
            self.failed[job.run.key] = code
            print(f"[{job.run.key}] exited with code {code} at ~{steps} steps; see {job.run_dir / 'train.log'}", flush=True)

    # ------------------------------------------------------------------ progress
    def status_line(self, run: RunSpec, running: dict[str, Job]) -> str:
        run_dir = self.run_dir(run)
        if run.key in self.finished and not is_done(run, run_dir):
            return f"{run.key:<40} done (elsewhere)"
        curve = read_curve(run_dir) if run_dir.is_dir() else []
        last = f"success {100 * curve[-1].success_rate:.0f}% at {curve[-1].timesteps}" if curve else "no evaluation yet"
        steps = steps_done(run_dir) if run_dir.is_dir() else 0
        if is_done(run, run_dir):
            steps = read_json(run_dir / DONE_FILE, {}).get("timesteps", steps)
            state = "done"
        elif run.key in running:
            state = f"running {time.time() - running[run.key].started:.0f}s"
        elif running_elsewhere(run_dir):
            state = "running"
        elif run.key in self.failed:
            state = f"failed ({self.failed[run.key]})"
        else:
            state = "resumable" if steps else "queued"
        return f"{run.key:<40} {state:<14} {steps:>7}/{run.n_timesteps:<7} {last}"

    def print_status(self, runs: list[RunSpec], running: dict[str, Job]) -> None:
        print(f"== {self.spec.name} {time.strftime('%H:%M:%S')}", flush=True)
        for run in runs:
            print("  " + self.status_line(run, running), flush=True)

    # ------------------------------------------------------------------ the loop
    def run(self, runs: list[RunSpec]) -> int:
        """Run every unfinished run of ``runs``, ``jobs`` at once. :return: number of runs that failed"""
        todo = [r for r in runs if not is_done(r, self.run_dir(r)) and r.key not in self.finished]
        skipped = len(runs) - len(todo)
        if skipped:
            print(f"{skipped} run(s) already finished: skipped", flush=True)
        busy = [r for r in todo if running_elsewhere(self.run_dir(r))]
        if busy:  # two train.py writing into one run folder would mix their segments
            print(f"{len(busy)} run(s) running from another command: skipped ({', '.join(r.key for r in busy)})", flush=True)
            todo = [r for r in todo if r not in busy]
        running: dict[str, Job] = {}
        stop = {"signal": None}

        def on_signal(signum: int, frame: Any) -> None:  # noqa: ARG001
            stop["signal"] = signum

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        last_status = 0.0
        try:
            while (todo or running) and stop["signal"] is None:
                while todo and self.fits(todo[0], running):
                    run = todo.pop(0)
                    # checked again at launch: another command may have started or finished it meanwhile
                    if running_elsewhere(self.run_dir(run)) or is_done(run, self.run_dir(run)):
                        print(f"[{run.key}] started or finished by another command meanwhile: skipped", flush=True)
                        continue
                    job = self.launch(run)
                    running[job.run.key] = job
                for key, job in list(running.items()):
                    if job.process.poll() is not None:
                        self.finish(job)
                        del running[key]
                if time.time() - last_status >= self.status_every or not (todo or running):
                    self.print_status(runs, running)
                    last_status = time.time()
                time.sleep(0.5)
        finally:
            for job in running.values():  # interrupted: stop the children; they resume from their checkpoints
                if job.process.poll() is None:
                    os.killpg(job.process.pid, signal.SIGTERM)
                    try:
                        job.process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        os.killpg(job.process.pid, signal.SIGKILL)
                job.log.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        if stop["signal"] is not None:
            print(f"interrupted: re-issue the same command to continue from the last checkpoints", flush=True)
            return -1
        return len(self.failed)


def print_commands(spec: ExperimentSpec, experiment_file: Path, runs: list[RunSpec], results_root: Path) -> list[str]:
    """One self-contained command per run (resumable; writes into the same results folder), for any scheduler."""
    base = [sys.executable, "-m", "sb3_pvdr.experiments", "run", str(experiment_file), "--results", str(results_root),
            "--jobs", "1"]
    return [shlex.join([*base, "--only", run.key]) for run in runs]


__all__ = ["ExperimentRunner", "format_params", "print_commands", "train_command"]
