"""Experiment runner: a 2-run matrix of tiny train.py runs (finish, skip on re-run, resume after a kill), curves."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.experiments import ExperimentRunner, load_experiment, parse_experiment, read_curve
from sb3_pvdr.experiments.__main__ import main as experiments_main
from sb3_pvdr.experiments.results import CURVE_COLUMNS, latest_checkpoint, segments
from sb3_pvdr.experiments.runner import print_commands, train_command

TINY = {
    "name": "tiny",
    "n_timesteps": 200,
    "eval_freq": 100,
    "eval_episodes": 1,
    "seeds": [0],
    "envs": ["reach-v2"],
    "params": {"n_envs": 1, "n_steps": 50, "batch_size": 50, "n_epochs": 1},
    "env_kwargs": {"max_episode_steps": 40, "image_size": 64},
    "runs": [{"label": "ppo-a", "algo": "ppo"}, {"label": "ppo-b", "algo": "ppo", "params": {"learning_rate": 1e-3}}],
}


def write_experiment(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def test_spec_expands_runs_and_merges_params():
    spec = parse_experiment({**TINY, "seeds": [0, 1]})
    assert [r.key for r in spec.runs] == ["ppo-a/reach-v2/0", "ppo-a/reach-v2/1", "ppo-b/reach-v2/0", "ppo-b/reach-v2/1"]
    b = spec.runs[2]
    assert b.params["learning_rate"] == 1e-3 and b.params["n_steps"] == 50
    assert b.params["env_kwargs"] == {"max_episode_steps": 40, "image_size": 64}
    assert spec.budgets == (50, 100, 200)
    assert [r.key for r in spec.select(["ppo-b/reach-v2/1"])] == ["ppo-b/reach-v2/1"]
    cmd = train_command(b, Path("RUN"))
    assert cmd[cmd.index("--save-freq") + 1] == "100" and "learning_rate:0.001" in cmd


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bogus": 1}, "unknown experiment key"),
        ({"runs": [{"label": "a", "algo": "ppo"}, {"label": "a", "algo": "ppo"}]}, "used twice"),
        ({"runs": [{"label": "a"}]}, "needs both"),
        ({"n_timesteps": 0}, "positive integer"),
        ({"threads": 0}, "threads must be a positive integer"),
        ({"vec_env": "ray"}, "vec_env must be one of dummy, subproc"),
    ],
)
def test_spec_errors_are_one_line(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_experiment({**TINY, **change})


def test_threads_and_vec_env_reach_train_py_and_fill_the_job_slots(tmp_path):
    """A run's ``threads`` is its train.py --num-threads and the job slots it takes; ``vec_env`` its --vec-env."""
    from sb3_pvdr.experiments.runner import Job

    spec = parse_experiment({**TINY, "seeds": [0, 1], "threads": 2,
                             "runs": [{"label": "wide", "algo": "pvdr", "vec_env": "subproc"},
                                      {"label": "narrow", "algo": "ppo", "threads": 1}]})
    wide, narrow = spec.runs[0], spec.runs[2]
    assert (wide.threads, wide.vec_env, narrow.threads, narrow.vec_env) == (2, "subproc", 1, "dummy")
    cmd = train_command(wide, Path("RUN"))
    assert cmd[cmd.index("--num-threads") + 1] == "2" and cmd[cmd.index("--vec-env") + 1] == "subproc"
    cmd = train_command(narrow, Path("RUN"))
    assert cmd[cmd.index("--num-threads") + 1] == "1" and "--vec-env" not in cmd

    runner = ExperimentRunner(spec, tmp_path, jobs=2)
    job = lambda run: Job(run, tmp_path, process=None, log=None)  # noqa: E731
    assert runner.fits(wide, {})  # nothing running: a run starts
    assert not runner.fits(narrow, {"w": job(wide)})  # 2 + 1 > 2 slots
    assert runner.fits(narrow, {"n": job(spec.runs[3])}) and not runner.fits(wide, {"n": job(narrow)})
    assert ExperimentRunner(spec, tmp_path, jobs=1).fits(wide, {})  # wider than --jobs: starts alone


def test_select_unknown_pattern_is_refused():
    with pytest.raises(ConfigError, match="no run matches"):
        parse_experiment(TINY).select(["nope"])


def wait_for(predicate, timeout: float = 240.0) -> None:
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        time.sleep(0.2)


def test_matrix_runs_skips_finished_resumes_killed_and_plots(tmp_path, capsys):
    exp = write_experiment(tmp_path)
    results = tmp_path / "results"
    spec = load_experiment(exp)
    runner = ExperimentRunner(spec, results / "tiny", jobs=2, status_every=1000)

    # ppo-b is killed (SIGKILL) once its first checkpoint and evaluation exist
    run_b = spec.runs[1]
    job = runner.launch(run_b)
    run_dir = runner.run_dir(run_b)
    wait_for(lambda: latest_checkpoint(run_dir, evaluated=True)[0] >= 100 or job.process.poll() is not None)
    os.killpg(job.process.pid, signal.SIGKILL)
    job.process.wait()
    job.log.close()
    killed_at = latest_checkpoint(run_dir, evaluated=True)[0]
    assert 100 <= killed_at < 200

    assert runner.run(spec.runs) == 0  # ppo-a from scratch, ppo-b continued
    segs = segments(run_dir)
    assert [s["start"] for s in segs] == [0, killed_at]
    log = (run_dir / "train.log").read_text()
    assert f"Continuing from {killed_at} steps to 200" in log
    for run in spec.runs:
        curve = read_curve(runner.run_dir(run))
        assert [p.timesteps for p in curve] == [100, 200]  # nothing lost, nothing repeated
        assert all(np.isfinite(p.wall_time_s) and p.wall_time_s > 0 for p in curve)
        assert (runner.run_dir(run) / "done.json").is_file()

    # a re-run launches nothing
    before = [json.dumps(segments(runner.run_dir(r))) for r in spec.runs]
    capsys.readouterr()
    assert experiments_main(["run", str(exp), "--results", str(results), "--jobs", "2", "--status-every", "1000"]) == 0
    assert "2 run(s) already finished: skipped" in capsys.readouterr().out
    assert [json.dumps(segments(runner.run_dir(r))) for r in spec.runs] == before

    with (results / "tiny" / "curves.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CURVE_COLUMNS
    assert len(rows) == 4 and {r["label"] for r in rows} == {"ppo-a", "ppo-b"}
    for name in ("curves.png", "curves_wall.png", "table.md", "meta.json"):
        assert (results / "tiny" / name).stat().st_size > 0
    table = (results / "tiny" / "table.md").read_text()
    assert "| reach-v2 | ppo-a |" in table and "(n=1)" in table
    assert json.loads((results / "tiny" / "meta.json").read_text())["machine"]["cores"] >= 1


def test_print_commands_one_self_contained_command_per_run(tmp_path):
    exp = write_experiment(tmp_path, seeds=[0, 1])
    spec = load_experiment(exp)
    commands = print_commands(spec, exp, spec.runs, tmp_path / "results")
    assert len(commands) == 4
    assert all("--only" in c and str(exp) in c and "--jobs 1" in c for c in commands)
    assert commands[3].endswith("--only ppo-b/reach-v2/1")


def test_plot_keeps_committed_rows_of_runs_that_are_elsewhere(tmp_path):
    exp = write_experiment(tmp_path)
    out = tmp_path / "results" / "tiny"
    out.mkdir(parents=True)
    rows = [{"label": "ppo-a", "algo": "ppo", "env": "reach-v2", "seed": 0, "timesteps": t, "success_rate": s,
             "mean_reward": -1.0, "wall_time_s": 10.0 * t} for t, s in ((100, 0.0), (200, 1.0))]
    with (out / "curves.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    assert experiments_main(["plot", str(exp), "--results", str(tmp_path / "results")]) == 0
    table = (out / "table.md").read_text()
    assert "| reach-v2 | ppo-a | – | 0 ± 0 (n=1) | 100 ± 0 (n=1) |" in table
    # a finished run known only from the committed csv is not run again
    from sb3_pvdr.experiments.__main__ import finished_elsewhere

    assert finished_elsewhere(load_experiment(exp), out) == {"ppo-a/reach-v2/0"}
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:tiny -->\nold\n<!-- /results:tiny -->\nafter\n")
    assert experiments_main(["plot", str(exp), "--results", str(tmp_path / "results"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and "| reach-v2 | ppo-a |" in text and "results/tiny/curves.png" in text and text.endswith("after\n")
    with pytest.raises(SystemExit):
        experiments_main(["plot", str(exp), "--results", str(tmp_path / "results"), "--readme", str(exp)])


def test_a_run_alive_in_another_command_is_not_launched_twice(tmp_path, capsys):
    from sb3_pvdr.experiments.runner import PID_FILE, running_elsewhere

    spec = load_experiment(write_experiment(tmp_path))
    runner = ExperimentRunner(spec, tmp_path / "results" / "tiny", jobs=1, status_every=1000)
    run = spec.runs[0]
    run_dir = runner.run_dir(run)
    run_dir.mkdir(parents=True)
    (run_dir / PID_FILE).write_text(f"{os.getpid()}\n")  # "alive": this test process
    assert running_elsewhere(run_dir)
    assert runner.run([run]) == 0
    assert "running from another command: skipped (ppo-a/reach-v2/0)" in capsys.readouterr().out
    assert segments(run_dir) == []  # nothing launched
    assert "running" in runner.status_line(run, {})


def test_a_run_started_by_another_command_after_this_one_began_is_skipped_at_launch(tmp_path, capsys, monkeypatch):
    """Two `run` commands over one experiment: a run the other one launched while this one waited for a free
    job slot is not launched a second time (its pid file is checked again right before launching)."""
    from sb3_pvdr.experiments import runner as runner_module
    from sb3_pvdr.experiments.runner import PID_FILE

    spec = load_experiment(write_experiment(tmp_path))
    runner = ExperimentRunner(spec, tmp_path / "results" / "tiny", jobs=1, status_every=1000)
    run = spec.runs[0]
    run_dir = runner.run_dir(run)
    real_running_elsewhere = runner_module.running_elsewhere
    calls = {"n": 0}

    def other_command_starts_it_after_the_first_check(d):
        calls["n"] += 1
        if calls["n"] == 1:  # the check when the todo list is made: free; right after, the other command starts it
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / PID_FILE).write_text(f"{os.getpid()}\n")  # "alive": this test process
            return False
        return real_running_elsewhere(d)

    monkeypatch.setattr(runner_module, "running_elsewhere", other_command_starts_it_after_the_first_check)
    assert runner.run([run]) == 0
    assert "started or finished by another command meanwhile: skipped" in capsys.readouterr().out
    assert segments(run_dir) == []  # nothing launched


def _write_segment(folder, episodes, evals):
    """A fake rl-zoo segment: monitor rows (length, success) of one env and evaluations at the given steps."""
    folder.mkdir(parents=True)
    lines = ['#{"t_start": 0, "env_id": "x"}', "r,l,t,is_success"]
    lines += [f"-1.0,{n},{i + 1.0},{success}" for i, (n, success) in enumerate(episodes)]
    (folder / "0.monitor.csv").write_text("\n".join(lines) + "\n")
    np.savez(folder / "evaluations.npz", timesteps=np.array(evals), results=np.zeros((len(evals), 2)),
             successes=np.zeros((len(evals), 2)))


def test_curve_counts_training_successes_between_evaluations_across_a_resume(tmp_path):
    # segment 1: episodes end at 100 (success), 200 (fail), 300 (success; after the resume point, dropped);
    # segment 2 resumes at 200: episodes end at 300 (fail), 400 (fail)
    _write_segment(tmp_path / "ppo" / "r_1", [(100, True), (100, False), (100, True)], [100, 200, 300])
    _write_segment(tmp_path / "ppo" / "r_2", [(100, False), (100, False)], [300, 400])
    (tmp_path / "segments.json").write_text(json.dumps([{"folder": "ppo/r_1", "start": 0}, {"folder": "ppo/r_2", "start": 200}]))
    curve = read_curve(tmp_path)
    assert [p.timesteps for p in curve] == [100, 200, 300, 400]
    assert [p.train_success_rate for p in curve] == [1.0, 0.0, 0.0, 0.0]
    # no episode ended since the previous evaluation: nan, left out of the table
    _write_segment(tmp_path / "b" / "r_1", [(200, True)], [100, 200])
    (tmp_path / "segments.json").write_text(json.dumps([{"folder": "b/r_1", "start": 0}]))
    values = [p.train_success_rate for p in read_curve(tmp_path)]
    assert np.isnan(values[0]) and values[1] == 1.0


def test_a_half_written_evaluations_file_counts_as_no_evaluations(tmp_path):
    from sb3_pvdr.experiments.results import read_evaluations

    # EvalCallback rewrites evaluations.npz in place: a reader beside it (or after a kill mid-write) meets a prefix
    _write_segment(tmp_path / "ppo" / "r_1", [(100, True), (100, False)], [100, 200])
    (tmp_path / "segments.json").write_text(json.dumps([{"folder": "ppo/r_1", "start": 0}]))
    path = tmp_path / "ppo" / "r_1" / "evaluations.npz"
    whole = path.read_bytes()
    assert [p.timesteps for p in read_curve(tmp_path)] == [100, 200]
    for cut in (0, len(whole) // 2):
        path.write_bytes(whole[:cut])
        assert read_evaluations(path, tries=2, wait=0.0) is None
        assert read_curve(tmp_path) == [] and latest_checkpoint(tmp_path, evaluated=True) == (0, None)
    path.write_bytes(whole)
    assert list(read_evaluations(path)["timesteps"]) == [100, 200]


def test_first_success_table_reports_each_seeds_first_successful_training_episode(tmp_path):
    from sb3_pvdr.experiments.results import first_success_step, first_success_table

    spec = parse_experiment({**TINY, "seeds": [0, 1, 2]})
    runs_dir = tmp_path / "runs"
    for seed, episodes in ((0, [(100, False), (100, True), (100, True)]), (1, [(100, False)])):
        run_dir = runs_dir / spec.runs[seed].relpath
        _write_segment(run_dir / "ppo" / "r_1", episodes, [100])
        (run_dir / "segments.json").write_text(json.dumps([{"folder": "ppo/r_1", "start": 0}]))
    assert first_success_step(runs_dir / spec.runs[0].relpath) == 200
    assert first_success_step(runs_dir / spec.runs[1].relpath) is None
    table = first_success_table(spec, runs_dir)
    assert f"| reach-v2 | {spec.runs[0].label} | 0.2 / – / ? | 2 / 4 | – | – / – / ? |" in table  # nothing logged to tensorboard
    # the median of the policy updates' approx_kl over the row's seeds; a resumed segment's re-logged step replaces
    from torch.utils.tensorboard import SummaryWriter

    for seed, segments_kl in ((0, [[0.1, 0.2, 0.9], [0.3]]), (1, [[0.4]])):
        for i, values in enumerate(segments_kl):
            writer = SummaryWriter(str(runs_dir / spec.runs[seed].relpath / "tensorboard" / "reach-v2" / f"PPO_{i + 1}"))
            for step, value in enumerate(values, start=2 if i else 0):  # segment 2 re-logs step 2 (0.9 -> 0.3)
                writer.add_scalar("train/approx_kl", value, step)
                writer.add_scalar("train/std", 1.0 - value, step)
            writer.close()
            time.sleep(0.01)  # files in the order they were written
    table = first_success_table(spec, runs_dir)
    # median of 0.1, 0.2, 0.3, 0.4; the std each seed logged last (seed 0: step 2 re-logged by segment 2 -> 1 - 0.3)
    assert f"| reach-v2 | {spec.runs[0].label} | 0.2 / – / ? | 2 / 4 | 0.250 | 0.70 / 0.60 / ? |" in table


def test_plot_keeps_first_success_stats_of_run_folders_that_are_gone(tmp_path):
    """run_stats.json keeps what the run folders said: a fresh machine re-plotting loses none of the table."""
    import shutil

    exp = write_experiment(tmp_path)
    spec = load_experiment(exp)
    out = tmp_path / "results" / "tiny"
    run_dir = out / "runs" / spec.runs[0].relpath
    _write_segment(run_dir / "ppo" / "r_1", [(100, False), (100, True)], [100, 200])
    (run_dir / "segments.json").write_text(json.dumps([{"folder": "ppo/r_1", "start": 0}]))
    assert experiments_main(["plot", str(exp), "--results", str(tmp_path / "results")]) == 0
    line = f"| reach-v2 | {spec.runs[0].label} | 0.2 | 1 / 2 | – | – |"
    assert line in (out / "table.md").read_text()
    assert json.loads((out / "run_stats.json").read_text())[spec.runs[0].key]["successes"] == 1
    shutil.rmtree(out / "runs")
    assert experiments_main(["plot", str(exp), "--results", str(tmp_path / "results")]) == 0
    assert line in (out / "table.md").read_text()
    # a table written before run_stats.json existed: a row none of whose runs has stats keeps its old line
    (out / "run_stats.json").unlink()
    assert experiments_main(["plot", str(exp), "--results", str(tmp_path / "results")]) == 0
    assert line in (out / "table.md").read_text()
    (out / "table.md").unlink()
    (out / "run_stats.json").unlink()
    assert experiments_main(["plot", str(exp), "--results", str(tmp_path / "results")]) == 0
    assert f"| reach-v2 | {spec.runs[0].label} | ? | 0 / 0 | – | ? |" in (out / "table.md").read_text()


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "experiments").glob("*.yml")), ids=lambda p: p.name)
def test_committed_experiments_use_keys_their_algorithms_take(path):
    """A typo in a committed experiment's params would only fail when its run starts, maybe hours into the queue."""
    from rl_zoo3.utils import ALGOS

    from sb3_pvdr.zoo import check_hyperparams, register_algorithms

    register_algorithms()
    spec = load_experiment(path)
    assert spec.runs
    for run in spec.runs:
        check_hyperparams(run.algo, ALGOS[run.algo], {"policy": "MultiInputPolicy", **run.params}, source=run.key)
    with pytest.raises(ConfigError, match="did you mean lambda_2"):
        check_hyperparams("pvdr", ALGOS["pvdr"], {"policy": "PVDRPolicy", "lambda2": 0.0})


def test_closed_stdout_ends_the_cli_quietly():
    """`... --print-commands | head`: the reader is gone before the CLI writes; no traceback, status 1."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "sb3_pvdr.experiments", "run", "experiments/reach.yml",
                             "--print-commands"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child has imported anything, let alone printed
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_scalars_reports_each_seeds_early_and_late_medians(tmp_path):
    """`scalars`: per row, tag and seed, the median of the first quarter of the logged values -> of the last quarter;
    a tag no run of a row logged gets no line, a run folder that is not here is `?`."""
    from torch.utils.tensorboard import SummaryWriter

    from sb3_pvdr.experiments.results import scalar_trend

    assert scalar_trend([]) is None and scalar_trend([5.0]) == (5.0, 5.0)
    assert scalar_trend([1.0, 2.0, 9.0, 9.0, 9.0, 9.0, 3.0, 4.0]) == (1.5, 3.5)
    exp = write_experiment(tmp_path)
    spec = load_experiment(exp)
    out = tmp_path / "results" / "tiny"
    run_dir = out / "runs" / spec.runs[0].relpath
    _write_segment(run_dir / "ppo" / "r_1", [(100, False)], [100])
    (run_dir / "segments.json").write_text(json.dumps([{"folder": "ppo/r_1", "start": 0}]))
    writer = SummaryWriter(str(run_dir / "tensorboard" / "reach-v2" / "PPO_1"))
    for step, value in enumerate([0.1, 0.3, 0.5, 0.5, 0.5, 0.5, 0.7, 0.9]):
        writer.add_scalar("train/approx_kl", value, step)
    writer.close()
    assert experiments_main(["scalars", str(exp), "--results", str(tmp_path / "results"),
                             "--tags", "train/approx_kl", "plan/spread"]) == 0
    table = (out / "scalars.md").read_text()
    others = " / ?" * (sum(r.label == spec.runs[0].label for r in spec.runs) - 1)
    assert f"| reach-v2 | {spec.runs[0].label} | train/approx_kl | 0.2 -> 0.8{others} |" in table
    assert "plan/spread" not in table  # logged by no run
    with pytest.raises(SystemExit):  # no run folder at all: one-line error
        experiments_main(["scalars", str(exp), "--results", str(tmp_path / "elsewhere")])


def test_comparison_table_tests_each_row_against_the_reference_seed_by_seed():
    from sb3_pvdr.experiments.results import comparison_table, permutation_p

    # exact: 3 vs 3 fully separated is 2 of the 20 splits; identical samples are no evidence at all
    assert permutation_p([10, 11, 12], [0, 1, 2]) == pytest.approx(0.1)
    assert permutation_p([5, 5, 5], [5, 5, 5]) == pytest.approx(1.0)
    assert np.isnan(permutation_p([1.0], [2.0, 3.0]))
    # many runs: sampled splits (bounded memory), still separating clearly different groups
    rng = np.random.default_rng(0)
    high, low = list(rng.normal(10, 1, 20)), list(rng.normal(0, 1, 20))
    assert permutation_p(high, low) < 1e-3
    assert permutation_p(high, list(rng.normal(10, 1, 20))) > 0.01
    spec = parse_experiment({**TINY, "seeds": [0, 1, 2], "reference": "ppo-a"})
    stats = {"ppo-a/reach-v2/0": {"successes": 1, "episodes": 10}, "ppo-a/reach-v2/1": {"successes": 0, "episodes": 10},
             "ppo-a/reach-v2/2": {"successes": 2, "episodes": 10}, "ppo-b/reach-v2/0": {"successes": 5, "episodes": 10},
             "ppo-b/reach-v2/1": {"successes": 4, "episodes": 8}, "ppo-b/reach-v2/2": {"successes": 0, "episodes": 0}}
    table = comparison_table(spec, stats, "ppo-a")
    assert "| reach-v2 | ppo-a | 10 / 0 / 20 | 10.0 | – | – |" in table
    # seed 2 of ppo-b finished no episode: left out, so 2 seeds against 3 (1 of the 10 splits as extreme, both sides: 0.2)
    assert "| reach-v2 | ppo-b | 50 / 50 | 50.0 | +40.0 | 0.20 |" in table
    with pytest.raises(ConfigError, match="reference 'nope' is not a label"):
        parse_experiment({**TINY, "reference": "nope"})


def test_first_evaluation_table_reports_when_each_seed_first_scored_and_whether_it_held():
    from sb3_pvdr.experiments.results import first_evaluation_table

    spec = parse_experiment({**TINY, "seeds": [0, 1, 2]})
    curve = {0: [(100, 0.0), (200, 1.0)], 1: [(100, 1.0), (200, 0.4)]}  # seed 2: no evaluation here
    rows = [{"label": "ppo-a", "env": "reach-v2", "seed": seed, "timesteps": t, "success_rate": v}
            for seed, points in curve.items() for t, v in reversed(points)]  # unordered on purpose
    table = first_evaluation_table(spec, rows)
    assert "| reach-v2 | ppo-a | 0.2 / 0.1 / ? | 1 of 2 |" in table
    assert "| reach-v2 | ppo-a | – / – / ? | 0 of 2 |" in first_evaluation_table(spec, [{**r, "success_rate": 0.2} for r in rows])
    assert "| reach-v2 | ppo-b | ? / ? / ? | 0 of 0 |" in table  # a row with no evaluation here at all


def test_lact_fit_probe_relates_each_runs_act_loss_to_its_training_successes(tmp_path):
    """scripts/lact_fit_probe.py: per PVDR run the second-half medians of act_loss / approx_kl and the success share;
    across runs the fit / no-fit split and Spearman's rho (runs whose L_act fell succeeded less, here by design)."""
    import importlib.util

    from torch.utils.tensorboard import SummaryWriter

    root = Path(__file__).resolve().parent.parent
    module_spec = importlib.util.spec_from_file_location("lact_fit_probe", root / "scripts" / "lact_fit_probe.py")
    probe = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(probe)

    exp = write_experiment(tmp_path, seeds=[0, 1, 2, 3], runs=[{"label": "pvdr", "algo": "pvdr"}, {"label": "ppo", "algo": "ppo"}])
    spec = load_experiment(exp)
    runs_dir = tmp_path / "results" / "tiny" / "runs"
    # seeds 0-1: L_act falls 1.4 -> 0.8, KL large, 1 success in 4; seeds 2-3: L_act stays 1.4, KL small, 3 in 4
    for run in spec.runs:
        run_dir = runs_dir / run.relpath
        fits = run.seed < 2
        _write_segment(run_dir / "pvdr" / "r_1", [(100, i == 0 if fits else i > 0) for i in range(4)], [100])
        (run_dir / "segments.json").write_text(json.dumps([{"folder": "pvdr/r_1", "start": 0}]))
        if run.algo != "pvdr":
            continue
        writer = SummaryWriter(str(run_dir / "tensorboard" / "reach-v2" / "PVDR_1"))
        for step in range(6):
            writer.add_scalar("train/act_loss", 1.4 - (0.6 * step / 5 if fits else 0.0) + 0.01 * run.seed, step)
            writer.add_scalar("train/approx_kl", 1.0 if fits else 0.02, step)
        writer.close()
    assert probe.collect([str(exp)], min_episodes=4, results=str(tmp_path / "results"), labels=["ppo"]) == []
    rows = probe.collect([str(exp)], min_episodes=4, results=str(tmp_path / "results"))
    assert sorted((r["label"], r["seed"]) for r in rows) == [("pvdr", s) for s in range(4)]  # ppo logged no L_act
    by_seed = {r["seed"]: r for r in rows}
    assert by_seed[0]["act_loss"] == pytest.approx(1.4 - 0.6 * 4 / 5, abs=1e-5)  # median of steps 3-5
    assert by_seed[0]["success"] == 25.0 and by_seed[2]["success"] == 75.0 and by_seed[2]["success_late"] == 100.0
    result = probe.summary(rows, fit_threshold=1.2)
    assert result["fits"]["runs"] == 2 and result["does_not_fit"]["runs"] == 2
    assert result["fits"]["success_mean"] == 25.0 and result["does_not_fit"]["success_mean"] == 75.0
    assert result["fits"]["approx_kl_median"] == 1.0
    assert result["spearman_act_loss_vs_success"]["rho"] > 0.8
    with pytest.raises(SystemExit, match="at least 4"):
        probe.main([str(exp), "--results", str(tmp_path / "nowhere")])
