"""Does a PVDR run learn less when L_act fits?

L_act (eq. 5) regresses the action a_t the policy took onto (x_t, z_t) with z_t ~ E(x_t, y_t), the posterior of the
real next l frames. With the exploration noise of a fresh policy (std ~1 per axis) those frames show where a_t moved
the arm, so z_t can reveal a_t itself: L_act can fall by cloning the policy's own noise through the posterior
(issue "Make PVDR learn", cause 5). At acting time the policy reads z* from the prior instead. This probe reads the
runs an experiment has made (no new training) and asks, across runs, whether those whose L_act fell (``train/act_loss``
late in the run well below its start, ~1.4 nats for a unit-std Gaussian) are the runs whose policy updates moved the
policy far (``train/approx_kl``) and whose training episodes succeeded less.

Per run (every PVDR run of the experiment files with ``train/act_loss`` logged and at least ``--min-episodes``
finished training episodes): median act_loss and approx_kl over the second half of the run's policy updates, the
share of its training episodes that succeeded (all, and in the second half). Across runs: Spearman's rho (with its
p) of act_loss against approx_kl and against the success share, and runs split at ``--fit-threshold`` (act_loss below
it: "L_act fits") with the mean success share of each group and an exact permutation p.

    python scripts/lact_fit_probe.py experiments/fixed.yml --out results/lact_fit
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from sb3_pvdr.common.errors import cli_entry
from sb3_pvdr.experiments.results import SEGMENTS_FILE, permutation_p, run_scalars, training_episodes
from sb3_pvdr.experiments.spec import load_experiment


def second_half_median(values: list[float]) -> Optional[float]:
    """Median of the second half of a run's logged values (``None``: nothing logged)."""
    return float(np.median(values[len(values) // 2 :])) if values else None


def run_row(run_dir: Path) -> Optional[dict[str, Any]]:
    """The probe's figures of one run folder (``None``: not run here, or no L_act logged)."""
    if not (run_dir / SEGMENTS_FILE).is_file():
        return None
    scalars = run_scalars(run_dir)
    act = second_half_median(scalars.get("train/act_loss", []))
    if act is None:
        return None
    episodes = training_episodes(run_dir)
    outcomes = [f for _, f in episodes]
    late = outcomes[len(outcomes) // 2 :]
    return {
        "act_loss": act,
        "act_loss_start": float(np.median(scalars["train/act_loss"][:3])),
        "approx_kl": second_half_median(scalars.get("train/approx_kl", [])),
        "episodes": len(outcomes),
        "success": 100.0 * float(np.mean(outcomes)) if outcomes else float("nan"),
        "success_late": 100.0 * float(np.mean(late)) if late else float("nan"),
    }


def collect(experiments: Sequence[str], min_episodes: int, results: str = "results",
            labels: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    """One row per PVDR run of the experiment files that logged L_act and finished ``min_episodes`` episodes.

    :param results: the runner's results folder (runs under ``<results>/<experiment name>/runs``)
    :param labels: only the runs of these rows (``None``: every PVDR row)
    """
    rows = []
    for path in experiments:
        spec = load_experiment(path)
        runs_dir = Path(results) / spec.name / "runs"
        for run in spec.runs:
            if run.algo != "pvdr" or (labels is not None and run.label not in labels):
                continue
            row = run_row(runs_dir / run.relpath)
            if row is None or row["episodes"] < min_episodes:
                continue
            rows.append({"experiment": spec.name, "label": run.label, "env": run.env, "seed": run.seed, **row})
    return rows


def summary(rows: list[dict[str, Any]], fit_threshold: float) -> dict[str, Any]:
    """Correlations across runs and the fit / no-fit split."""
    from scipy.stats import spearmanr

    act = np.array([r["act_loss"] for r in rows])
    out: dict[str, Any] = {"runs": len(rows), "fit_threshold": fit_threshold}
    for key in ("approx_kl", "success", "success_late"):
        values = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
        ok = np.isfinite(values)
        rho, p = spearmanr(act[ok], values[ok])
        out[f"spearman_act_loss_vs_{key}"] = {"rho": round(float(rho), 3), "p": round(float(p), 4), "runs": int(ok.sum())}
    fit = [r for r in rows if r["act_loss"] < fit_threshold]
    rest = [r for r in rows if r["act_loss"] >= fit_threshold]
    for name, group in (("fits", fit), ("does_not_fit", rest)):
        out[name] = {
            "runs": len(group),
            "success_mean": round(float(np.mean([r["success"] for r in group])), 1) if group else None,
            "success_late_mean": round(float(np.mean([r["success_late"] for r in group])), 1) if group else None,
            "approx_kl_median": round(float(np.median([r["approx_kl"] for r in group if r["approx_kl"] is not None])), 4)
            if group else None,
        }
    out["permutation_p_success"] = round(permutation_p([r["success"] for r in fit], [r["success"] for r in rest]), 4)
    out["permutation_p_success_late"] = round(
        permutation_p([r["success_late"] for r in fit], [r["success_late"] for r in rest]), 4)
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python scripts/lact_fit_probe.py", description=__doc__.split("\n")[0])
    parser.add_argument("experiments", nargs="+", help="experiment yml files whose runs are read (results/<name>/runs)")
    parser.add_argument("--fit-threshold", type=float, default=1.2,
                        help="second-half median act_loss below which L_act counts as fitting (start: ~1.4)")
    parser.add_argument("--min-episodes", type=int, default=40, help="skip runs with fewer finished training episodes")
    parser.add_argument("--labels", nargs="+", default=None, help="only these rows (default: every PVDR row)")
    parser.add_argument("--results", default="results", help="the experiment runner's results folder")
    parser.add_argument("--out", default=None, help="folder for runs.csv and summary.json (printed either way)")
    return parser.parse_args(argv)


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    rows = collect(args.experiments, args.min_episodes, args.results, args.labels)
    if len(rows) < 4:
        raise SystemExit(f"error: {len(rows)} PVDR runs with L_act logged under {args.results}; the probe needs at least 4")
    result = summary(rows, args.fit_threshold)
    for r in sorted(rows, key=lambda r: r["act_loss"]):
        kl = "-" if r["approx_kl"] is None else f"{r['approx_kl']:.3f}"
        print(f"{r['experiment']:10s} {r['label']:28s} seed {r['seed']}  act_loss {r['act_loss']:.2f}"
              f"  approx_kl {kl:>6s}  success {r['success']:5.1f}%  late {r['success_late']:5.1f}%  ({r['episodes']} episodes)")
    print(json.dumps(result, indent=1))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "runs.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (out / "summary.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}/runs.csv, {out}/summary.json")
    return result


if __name__ == "__main__":
    main()
