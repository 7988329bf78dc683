"""Multi-seed experiments: run a matrix of ``train.py`` runs (resumable), then curves and tables.

``python -m sb3_pvdr.experiments run|plot|status EXPERIMENT.yml`` (see :mod:`sb3_pvdr.experiments.__main__`).
"""

from sb3_pvdr.experiments.results import collect_curves, read_curve, success_table
from sb3_pvdr.experiments.runner import ExperimentRunner, train_command
from sb3_pvdr.experiments.spec import ExperimentSpec, RunSpec, load_experiment, parse_experiment

__all__ = ["ExperimentRunner", "ExperimentSpec", "RunSpec", "collect_curves", "load_experiment", "parse_experiment",
           "read_curve", "success_table", "train_command"]
