"""Experiment files: which runs (algo, env, seed, budget, evaluation, overrides, label) make up a comparison.

An experiment file is yaml::

    name: reach                      # results go to results/<name>/ (default: the file's stem)
    n_timesteps: 40000               # defaults for every run (each run may override any of them)
    eval_freq: 5000                  # env steps between evaluations (EvalCallback); also the checkpoint interval
    eval_episodes: 10
    seeds: [0, 1, 2]
    envs: [reach-v2]
    budgets: [10000, 20000, 40000]   # env steps of the success table (default: n/4, n/2, n)
    reference: pvdr                  # optional: every other row's per-seed training success vs this row's (table.md)
    runs:
      - {label: pvdr, algo: pvdr}
      - {label: pvdr-no-pretrain, algo: pvdr, params: {pretrained: false}}
      - {label: ppo, algo: ppo}

``params`` are ``train.py -params`` overrides (yaml values, written as Python literals for rl-zoo), ``env_kwargs``
are merged into the env's, ``conf_file`` replaces ``zoo_configs/<algo>.yml``. ``threads`` (default 1) is a run's
``train.py --num-threads`` and the number of the runner's ``--jobs`` slots (cores) it takes; ``vec_env: subproc``
steps its envs in worker processes (``train.py --vec-env subproc``; default ``dummy``, in the learner's process). Both
may be given at the top (every run) or per run: e.g. ``{threads: 2, vec_env: subproc}`` trains one PVDR run on both
cores of a 2-core machine, its workers planning in parallel (``benchmarks/planning_overhead.py``: ~1.5x one thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from sb3_pvdr.common.errors import ConfigError

TOP_KEYS = {"name", "n_timesteps", "eval_freq", "eval_episodes", "seeds", "envs", "budgets", "runs", "params", "env_kwargs",
            "reference", "threads", "vec_env"}
RUN_KEYS = {"label", "algo", "n_timesteps", "eval_freq", "eval_episodes", "seeds", "envs", "params", "env_kwargs", "conf_file",
            "threads", "vec_env"}
INHERITED = ("n_timesteps", "eval_freq", "eval_episodes", "seeds", "envs", "threads", "vec_env")
VEC_ENVS = ("dummy", "subproc")


@dataclass(frozen=True)
class RunSpec:
    """One training run of the matrix: one (label, env, seed).

    :param label: the row's name in curves and tables (e.g. ``pvdr-no-pretrain``)
    :param algo: ``train.py --algo``
    :param env: gymnasium id
    :param seed: random seed
    :param n_timesteps: total env steps
    :param eval_freq: env steps between evaluations and between checkpoints
    :param eval_episodes: episodes per evaluation
    :param params: ``-params`` overrides
    :param conf_file: hyperparameter file (``None``: ``zoo_configs/<algo>.yml``)
    :param threads: torch threads (``train.py --num-threads``), also the runner's job slots (cores) the run takes
    :param vec_env: ``"dummy"`` (envs in the learner's process) or ``"subproc"`` (``train.py --vec-env subproc``)
    """

    label: str
    algo: str
    env: str
    seed: int
    n_timesteps: int
    eval_freq: int
    eval_episodes: int
    params: dict[str, Any] = field(default_factory=dict)
    conf_file: Optional[str] = None
    threads: int = 1
    vec_env: str = "dummy"

    @property
    def key(self) -> str:
        """``label/env/seed``: what ``--only`` matches."""
        return f"{self.label}/{self.env}/{self.seed}"

    @property
    def relpath(self) -> Path:
        """Folder of this run under the experiment's ``runs/``."""
        return Path(self.label) / self.env / f"seed{self.seed}"


@dataclass(frozen=True)
class ExperimentSpec:
    """A parsed experiment file.

    :param name: results folder name
    :param runs: the matrix, one :class:`RunSpec` per (label, env, seed)
    :param budgets: env-step budgets of the success table
    :param source: the file's text (copied next to the results)
    :param reference: label of the row every other row is compared with, seed by seed (``None``: no comparison)
    """

    name: str
    runs: tuple[RunSpec, ...]
    budgets: tuple[int, ...]
    source: str = ""
    reference: Optional[str] = None

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(run.label for run in self.runs))

    @property
    def envs(self) -> list[str]:
        return list(dict.fromkeys(run.env for run in self.runs))

    def select(self, only: Optional[list[str]] = None) -> list[RunSpec]:
        """Runs whose ``label/env/seed`` starts with one of ``only`` (all when empty).

        :raises ConfigError: a pattern matches no run
        """
        if not only:
            return list(self.runs)
        chosen = []
        for pattern in only:
            matched = [run for run in self.runs if f"{run.key}/".startswith(pattern.rstrip("/") + "/")]
            if not matched:
                raise ConfigError(f"--only {pattern}: no run matches (runs are label/env/seed, e.g. {self.runs[0].key})")
            chosen += [run for run in matched if run not in chosen]
        return chosen


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    value = value if isinstance(value, list) else [value]
    if not value:
        raise ConfigError(f"{where} must not be empty")
    return value


def parse_experiment(data: dict[str, Any], default_name: str = "experiment", source: str = "") -> ExperimentSpec:
    """Build an :class:`ExperimentSpec` from a parsed experiment file (see the module docstring).

    :raises ConfigError: unknown keys, missing values, duplicate labels, bad numbers (one line each)
    """
    if not isinstance(data, dict):
        raise ConfigError(f"an experiment file holds a mapping (name, runs, ...), got {type(data).__name__}")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown experiment key(s) {', '.join(unknown)}; valid: {', '.join(sorted(TOP_KEYS))}")
    name = str(data.get("name", default_name))
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"experiment name {name!r} must be a plain folder name")
    runs_data = data.get("runs")
    if not isinstance(runs_data, list) or not runs_data:
        raise ConfigError("an experiment needs a non-empty list 'runs' of {label, algo, ...}")
    runs: list[RunSpec] = []
    labels: set[str] = set()
    for i, entry in enumerate(runs_data):
        where = f"runs[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping with label and algo, got {entry!r}")
        unknown = sorted(set(entry) - RUN_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(RUN_KEYS))}")
        if "label" not in entry or "algo" not in entry:
            raise ConfigError(f"{where} needs both 'label' and 'algo'")
        label = str(entry["label"])
        if label in labels or not label or "/" in label:
            raise ConfigError(f"{where}: label {label!r} is empty, has a '/', or is used twice")
        labels.add(label)
        merged = {key: entry.get(key, data.get(key)) for key in INHERITED}
        for key in ("n_timesteps", "eval_freq"):
            if merged[key] is None:
                raise ConfigError(f"{where}: no {key} (give it in the run or at the top of the file)")
            _positive_int(merged[key], f"{where}.{key}")
        eval_episodes = _positive_int(merged["eval_episodes"] or 10, f"{where}.eval_episodes")
        threads = _positive_int(merged["threads"] if merged["threads"] is not None else 1, f"{where}.threads")
        vec_env = str(merged["vec_env"] or "dummy")
        if vec_env not in VEC_ENVS:
            raise ConfigError(f"{where}.vec_env must be one of {', '.join(VEC_ENVS)}, got {vec_env!r}")
        params = {**(data.get("params") or {}), **(entry.get("params") or {})}
        env_kwargs = {**(data.get("env_kwargs") or {}), **(entry.get("env_kwargs") or {})}
        if not isinstance(params, dict) or not isinstance(env_kwargs, dict):
            raise ConfigError(f"{where}: params and env_kwargs must be mappings")
        if env_kwargs:
            params["env_kwargs"] = {**(params.get("env_kwargs") or {}), **env_kwargs}
        seeds = [int(s) for s in _list(merged["seeds"] if merged["seeds"] is not None else [0], f"{where}.seeds")]
        envs = [str(e) for e in _list(merged["envs"] or "reach-v2", f"{where}.envs")]
        for env in envs:
            for seed in seeds:
                runs.append(
                    RunSpec(label, str(entry["algo"]), env, seed, merged["n_timesteps"], merged["eval_freq"], eval_episodes,
                            params, entry.get("conf_file"), threads, vec_env)
                )
    n_max = max(run.n_timesteps for run in runs)
    budgets = data.get("budgets") or [n_max // 4, n_max // 2, n_max]
    budgets = tuple(_positive_int(b, "budgets[]") for b in _list(budgets, "budgets"))
    reference = data.get("reference")
    if reference is not None and str(reference) not in labels:
        raise ConfigError(f"reference {reference!r} is not a label of this experiment ({', '.join(sorted(labels))})")
    return ExperimentSpec(name, tuple(runs), budgets, source, None if reference is None else str(reference))


def load_experiment(path: Union[str, Path]) -> ExperimentSpec:
    """Read an experiment file. :raises ConfigError: missing file, bad yaml or bad content"""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {path} not found")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid yaml: {str(exc).splitlines()[0]}") from exc
    return parse_experiment(data, default_name=path.stem, source=text)


__all__ = ["ExperimentSpec", "RunSpec", "load_experiment", "parse_experiment"]
