"""``python -m sb3_pvdr.experiments {run,plot,status} EXPERIMENT.yml``: multi-seed learning curves.

    python -m sb3_pvdr.experiments run experiments/reach.yml            # all runs, --jobs = cores, resumable
    python -m sb3_pvdr.experiments run experiments/reach.yml --only ppo  # one label (or label/env, label/env/seed)
    python -m sb3_pvdr.experiments run experiments/reach.yml --print-commands   # one command per run, for a scheduler
    python -m sb3_pvdr.experiments plot experiments/reach.yml           # curves.csv, curves.png, curves_wall.png, table.md
    python -m sb3_pvdr.experiments status experiments/reach.yml
    python -m sb3_pvdr.experiments scalars experiments/reach.yml        # diagnostics: each tensorboard scalar, early -> late
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from sb3_pvdr.common.checkpoint import atomic_write_bytes
from sb3_pvdr.common.errors import ConfigError, cli_entry
from sb3_pvdr.experiments.results import (
    DIAGNOSTIC_TAGS,
    FIRST_SUCCESS_HEADER,
    RUN_STATS_FILE,
    collect_curves,
    collect_run_stats,
    comparison_table,
    first_evaluation_table,
    first_success_table,
    machine_info,
    read_curves_csv,
    read_json,
    scalars_table,
    success_table,
    table_rows,
    write_curves_csv,
    write_json_atomic,
)
from sb3_pvdr.experiments.runner import ExperimentRunner, print_commands
from sb3_pvdr.experiments.spec import ExperimentSpec, load_experiment


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sb3_pvdr.experiments", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run (or continue) the experiment's runs"), ("plot", "write curves and the success table"),
                       ("status", "one line per run: steps, last evaluation"),
                       ("scalars", "diagnostics: how each tensorboard scalar moved over each run (scalars.md)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("experiment", help="experiment file (yaml), e.g. experiments/reach.yml")
        p.add_argument("--results", default="results", help="results root: runs and curves go to RESULTS/<name>/ (default results)")
        p.add_argument("--only", nargs="+", default=None, help="runs whose label/env/seed starts with one of these")
        if name == "run":
            p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="job slots (cores; default: the core count): runs at once, each taking its experiment file's threads (default 1)")
            p.add_argument("--print-commands", action="store_true", help="print one command per run instead of running")
            p.add_argument("--status-every", type=float, default=60.0, help="seconds between progress blocks")
            p.add_argument("--no-plot", action="store_true", help="do not write curves/table when the runs end")
        if name == "scalars":
            p.add_argument("--tags", nargs="+", default=list(DIAGNOSTIC_TAGS),
                           help=f"tensorboard tags (default: {' '.join(DIAGNOSTIC_TAGS)})")
        if name in ("run", "plot"):
            p.add_argument("--readme", default=None,
                           help="also replace the block between <!-- results:NAME --> and <!-- /results:NAME --> in this "
                                "markdown file with the table and the curves")
    return parser.parse_args(argv)


def finished_elsewhere(spec: ExperimentSpec, results_dir: Path) -> set[str]:
    """Runs whose committed ``curves.csv`` rows reach their budget (their run folders may be on another machine)."""
    path = results_dir / "curves.csv"
    if not path.is_file():
        return set()
    rows = read_curves_csv(path)
    done = set()
    for run in spec.runs:
        steps = [r["timesteps"] for r in rows if (r["label"], r["env"], r["seed"]) == (run.label, run.env, run.seed)]
        if steps and max(steps) >= run.n_timesteps:
            done.add(run.key)
    return done


def write_results(spec: ExperimentSpec, results_dir: Path) -> str:
    """curves.csv (runs here merged with committed rows of runs not here), run_stats.json (likewise), curves.png,
    curves_wall.png, table.md, meta.json. :return: the markdown table"""
    from sb3_pvdr.experiments.plots import plot_curves

    results_dir.mkdir(parents=True, exist_ok=True)
    rows = collect_curves(spec, results_dir / "runs")
    present = {(r["label"], r["env"], r["seed"]) for r in rows}
    old_path = results_dir / "curves.csv"
    if old_path.is_file():  # keep what arrived from runs whose folders are elsewhere
        rows += [r for r in read_curves_csv(old_path) if (r["label"], r["env"], r["seed"]) not in present
                 and any((r["label"], r["env"], r["seed"]) == (run.label, run.env, run.seed) for run in spec.runs)]
    order = {run.key: i for i, run in enumerate(spec.runs)}
    rows.sort(key=lambda r: (order.get(f"{r['label']}/{r['env']}/{r['seed']}", 1 << 30), r["timesteps"]))
    write_curves_csv(rows, old_path)
    title = f"{spec.name}: success rate, mean and std over seeds"
    plot_curves(rows, results_dir / "curves.png", "timesteps", title)
    plot_curves(rows, results_dir / "curves_wall.png", "wall_time_s", title + " (wall-clock)")
    previous = read_json(results_dir / RUN_STATS_FILE, {})
    stats = collect_run_stats(spec, results_dir / "runs", previous)
    write_json_atomic(results_dir / RUN_STATS_FILE, stats)
    old_table = results_dir / "table.md"
    old_rows = table_rows(old_table.read_text(), FIRST_SUCCESS_HEADER) if old_table.is_file() else {}
    table = (success_table(spec, rows) + "\nSuccess rate (%) of the training episodes that ended since the previous "
             "evaluation (stochastic policy; finer-grained than a few deterministic evaluation episodes):\n\n"
             + success_table(spec, rows, key="train_success_rate")
             + "\nFirst successful training episode of each seed, all training successes, the median approx_kl of the "
             "policy updates and the policy's last action std (read from each run's directory, kept in run_stats.json):\n\n"
             + first_success_table(spec, results_dir / "runs", stats, old_rows)
             + "\nFirst evaluation at 100% success of each seed (deterministic policy), and whether it held to the last "
             "evaluation:\n\n" + first_evaluation_table(spec, rows))
    if spec.reference is not None:
        table += (f"\nEach row's training successes seed by seed against `{spec.reference}` (exact permutation test over "
                  "seeds, two-sided; with 3 seeds a row against 3 the smallest possible p is 0.10):\n\n"
                  + comparison_table(spec, stats, spec.reference))
    (results_dir / "table.md").write_text(table)
    (results_dir / "experiment.yml").write_text(spec.source)
    write_json_atomic(results_dir / "meta.json", {"experiment": spec.name, "machine": machine_info(),
                                                  "columns": list(rows[0]) if rows else []})
    return table


def update_readme(readme: Path, spec: ExperimentSpec, results_dir: Path, table: str) -> bool:
    """Replace the ``<!-- results:NAME -->`` block of ``readme`` with the table and the curve images (atomic).

    :return: whether the block was found
    """
    start, end = f"<!-- results:{spec.name} -->", f"<!-- /results:{spec.name} -->"
    text = readme.read_text()
    if start not in text or end not in text:
        return False
    rel = os.path.relpath(results_dir, readme.parent)
    block = (f"{start}\nSuccess rate (%) at each budget, mean ± std over seeds (n = seeds that reached it), "
             f"from `{rel}/curves.csv`:\n\n{table}\n![{spec.name} curves]({rel}/curves.png)\n"
             f"![{spec.name} curves, wall-clock]({rel}/curves_wall.png)\n{end}")
    head, rest = text.split(start, 1)
    atomic_write_bytes(readme, (head + block + rest.split(end, 1)[1]).encode())
    return True


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    spec = load_experiment(args.experiment)
    runs = spec.select(args.only)
    results_dir = Path(args.results) / spec.name
    if args.command == "run" and args.print_commands:
        print("\n".join(print_commands(spec, Path(args.experiment), runs, Path(args.results))))
        return 0
    runner = ExperimentRunner(spec, results_dir, jobs=getattr(args, "jobs", 1),
                              status_every=getattr(args, "status_every", 60.0),
                              finished=finished_elsewhere(spec, results_dir))
    if args.command == "status":
        runner.print_status(runs, {})
        return 0
    if args.command == "scalars":
        if not (results_dir / "runs").is_dir():
            raise ConfigError(f"{results_dir / 'runs'} does not exist: no run of {spec.name} has run on this machine")
        table = scalars_table(spec, results_dir / "runs", args.tags, runs)
        atomic_write_bytes(results_dir / "scalars.md", table.encode())
        print(table, end="")
        print(f"wrote {results_dir}/scalars.md")
        return 0
    if args.command == "plot":
        table = write_results(spec, results_dir)
        print(table, end="")
        if args.readme and not update_readme(Path(args.readme), spec, results_dir, table):
            raise ConfigError(f"{args.readme} has no <!-- results:{spec.name} --> ... <!-- /results:{spec.name} --> block")
        print(f"wrote {results_dir}/curves.csv, curves.png, curves_wall.png, table.md, meta.json")
        return 0
    failed = runner.run(runs)
    if not args.no_plot:
        table = write_results(spec, results_dir)
        print(table, end="")
        if args.readme:
            update_readme(Path(args.readme), spec, results_dir, table)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
