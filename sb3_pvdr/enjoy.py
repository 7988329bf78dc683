"""Watch or evaluate a trained agent, RL Baselines3 Zoo style: the engine behind ``enjoy.py``.

    python enjoy.py --algo pvdr --env reach-v2 -f logs/ --load-best [-n 1000] [--exp-id 2]

``enjoy.py`` is rl-zoo's own ``rl_zoo3.enjoy.enjoy()`` (same options: ``python enjoy.py -h``) with these
changes, all made here (as :mod:`sb3_pvdr.zoo` does for ``train.py``):

1. Our algorithms (``ppo``, ``ppo_tokens``, ``pvdr``) are registered and ``sb3_pvdr.envs`` imported.
2. Env kwargs: our ``config.yml`` records the *merged* ``env_kwargs`` the run used (yaml file + training's
   ``--env-kwargs``); rl-zoo would replace them by ``args.yml``'s command-line ones alone. Here the run's
   merged kwargs are kept and enjoy's own ``--env-kwargs`` override them key by key.
3. PVDR: rl-zoo loads the model without an env, so the loaded zip's (fine-tuned) tokenizer and dynamics
   model and its planning settings (N, re-planning interval, metric) are bound to the env's
   ``PlanningWrapper`` (:func:`bind_model`); the env's ``env_wrapper`` models are only placeholders.
4. ``-f`` defaults to ``logs`` (``train.py``'s log folder), not rl-zoo's ``rl-trained-agents`` (which would
   try a download from the Hugging Face hub).
5. Our image-goal envs render offscreen only (``rgb_array``): there is no window to show, so they run as
   with ``--no-render`` (episode rewards and the success rate are printed); record a video with
   ``python -m sb3_pvdr.record_agent`` instead.

:func:`load_run` gives the same (model, env) pair to Python code (the recorder, the t-SNE figure).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import gymnasium as gym
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from sb3_pvdr.common.errors import ConfigError, cli_entry
from sb3_pvdr.zoo import DEFAULT_ENV, check_env_id, import_env_packages, register_algorithms

# What rl-zoo's enjoy passes to ``load`` (no schedules are needed to act).
CUSTOM_OBJECTS = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
DEFAULT_LOG_FOLDER = "logs"


def bind_model(model: BaseAlgorithm, env: VecEnv) -> None:
    """Make ``env``'s planners use ``model``'s own planning models and settings (PVDR; no-op otherwise)."""
    bind = getattr(model, "bind_planning_env", None)
    if bind is not None:
        bind(env)


def run_env_kwargs(config_env_kwargs: Optional[dict[str, Any]], given: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The env kwargs to replay a run with: the run's merged ``env_kwargs`` (config.yml), ``given`` winning."""
    return {**(config_env_kwargs or {}), **(given or {})}


def renders_offscreen_only(env_id: str) -> bool:
    """True for the ids registered by ``sb3_pvdr.envs`` (``render_mode`` None or ``"rgb_array"`` only)."""
    from sb3_pvdr.envs.registration import ENTRY_POINT

    return env_id in gym.registry and gym.spec(env_id).entry_point == ENTRY_POINT


def _model_path(algo: str, folder: str, env_id: str, exp_id: int, load_best: bool, load_checkpoint: Optional[int], load_last_checkpoint: bool) -> tuple[str, str, str]:
    """rl-zoo's ``get_model_path`` with one-line errors."""
    from huggingface_sb3 import EnvironmentName
    from rl_zoo3.utils import get_model_path

    try:
        return get_model_path(exp_id, folder, algo, EnvironmentName(env_id), load_best, load_checkpoint, load_last_checkpoint)
    except (AssertionError, ValueError) as exc:
        raise ConfigError(f"{exc} (train one with: python train.py --algo {algo} --env {env_id} -f {folder})") from None


def load_run(
    algo: str,
    env_id: str,
    folder: str = DEFAULT_LOG_FOLDER,
    exp_id: int = 0,
    load_best: bool = False,
    load_checkpoint: Optional[int] = None,
    load_last_checkpoint: bool = False,
    env_kwargs: Optional[dict[str, Any]] = None,
    seed: int = 0,
    device: str = "auto",
) -> tuple[BaseAlgorithm, VecEnv, str]:
    """
    Load a ``train.py`` run the way ``enjoy.py`` does: the model, and a one-env ``DummyVecEnv`` made with the
    run's ``config.yml`` (env kwargs, ``env_wrapper``, frame stacking) with the model bound to it.

    :param algo: ``ppo``, ``ppo_tokens`` or ``pvdr``
    :param env_id: e.g. ``"reach-v2"``
    :param folder: the ``-f/--log-folder`` of the training run
    :param exp_id: run number (``<env>_<exp_id>``); 0: the latest
    :param load_best: ``best_model.zip`` instead of ``<env>.zip``
    :param load_checkpoint: ``rl_model_<N>_steps.zip``
    :param load_last_checkpoint: the latest ``rl_model_*_steps.zip``
    :param env_kwargs: override some of the run's env kwargs
    :param seed: seed of the env
    :param device: torch device of the model
    :return: ``(model, env, model_path)``
    """
    from huggingface_sb3 import EnvironmentName
    from rl_zoo3.exp_manager import ExperimentManager
    from rl_zoo3.utils import ALGOS, create_test_env, get_saved_hyperparams

    import_env_packages()
    register_algorithms(include_pvdr=algo == "pvdr")
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}; available: {', '.join(sorted(ALGOS))}")
    check_env_id(env_id)
    _, model_path, log_path = _model_path(algo, folder, env_id, exp_id, load_best, load_checkpoint, load_last_checkpoint)
    hyperparams, stats_path = get_saved_hyperparams(os.path.join(log_path, EnvironmentName(env_id)), test_mode=True)
    kwargs = run_env_kwargs(hyperparams.pop("env_kwargs", None), env_kwargs)
    env = create_test_env(
        env_id, n_envs=1, stats_path=stats_path, seed=seed, should_render=False, hyperparams=hyperparams, env_kwargs=kwargs,
        vec_env_cls=ExperimentManager.default_vec_env_cls,
    )  # fmt: skip
    model = ALGOS[algo].load(model_path, custom_objects=CUSTOM_OBJECTS, device=device, seed=seed)
    bind_model(model, env)
    return model, env, model_path


class _BindingLoader:
    """Stands in for an algorithm class in rl-zoo's enjoy: ``load`` then :func:`bind_model` to the env it made."""

    def __init__(self, algo_class: type[BaseAlgorithm], envs: list[VecEnv]) -> None:
        self.algo_class, self.envs = algo_class, envs

    def load(self, path: str, *args: Any, **kwargs: Any) -> BaseAlgorithm:
        model = self.algo_class.load(path, *args, **kwargs)
        if self.envs:
            bind_model(model, self.envs[-1])
        return model


@contextlib.contextmanager
def _patched_enjoy(algo: str) -> Iterator[None]:
    """Swap in the changes listed in the module docstring, for one call of ``rl_zoo3.enjoy.enjoy()``."""
    import rl_zoo3.enjoy as zoo_enjoy

    saved = {name: getattr(zoo_enjoy, name) for name in ("ALGOS", "get_saved_hyperparams", "create_test_env", "get_model_path")}
    run_kwargs: dict[str, Any] = {}
    envs: list[VecEnv] = []

    def get_saved_hyperparams(*args: Any, **kwargs: Any) -> tuple[dict[str, Any], Optional[str]]:
        hyperparams, stats_path = saved["get_saved_hyperparams"](*args, **kwargs)
        run_kwargs.update(hyperparams.get("env_kwargs") or {})
        return hyperparams, stats_path

    def create_test_env(env_id: str, *args: Any, env_kwargs: Optional[dict[str, Any]] = None, **kwargs: Any) -> VecEnv:
        env = saved["create_test_env"](env_id, *args, env_kwargs=run_env_kwargs(run_kwargs, env_kwargs), **kwargs)
        envs.append(env)
        return env

    def get_model_path(exp_id: int, folder: str, algo_name: str, env_name: Any, *args: Any) -> tuple[str, str, str]:
        return _model_path(algo_name, folder, str(env_name), exp_id, *args)

    zoo_enjoy.ALGOS = {**saved["ALGOS"], algo: _BindingLoader(saved["ALGOS"][algo], envs)}
    zoo_enjoy.get_saved_hyperparams = get_saved_hyperparams
    zoo_enjoy.create_test_env = create_test_env
    zoo_enjoy.get_model_path = get_model_path
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(zoo_enjoy, name, value)


def _prepare_argv(argv: list[str]) -> tuple[str, list[str]]:
    """Check ``--algo``/``--env`` up front (one-line errors) and add our defaults; returns (algo, argv)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-h", "--help", action="store_true")
    pre.add_argument("--algo", default="ppo")
    pre.add_argument("--env", default=None)
    pre.add_argument("-f", "--folder", default=None)
    pre.add_argument("--no-render", action="store_true")
    pre.add_argument("--gym-packages", nargs="+", default=[])
    known, _ = pre.parse_known_args(argv)
    import importlib

    for module in known.gym_packages:
        importlib.import_module(module)
    register_algorithms(include_pvdr=known.help or known.algo == "pvdr")
    if known.help:
        return known.algo, argv
    from rl_zoo3.utils import ALGOS

    if known.algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {known.algo!r}; available: {', '.join(sorted(ALGOS))}")
    env_id = known.env or DEFAULT_ENV
    check_env_id(env_id)
    extra: list[str] = []
    if known.env is None:
        extra += ["--env", env_id]
    if known.folder is None:
        extra += ["-f", DEFAULT_LOG_FOLDER]
    if not known.no_render and renders_offscreen_only(env_id):
        print(f"note: {env_id} renders offscreen only: running without a window (record a video with "
              f"python -m sb3_pvdr.record_agent --algo {known.algo} --env {env_id} --out agent.gif)")  # fmt: skip
        extra.append("--no-render")
    return known.algo, argv + extra


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> None:
    """
    ``enjoy.py``: rl-zoo's enjoy with our algorithms, envs and run folders.

    :param argv: command-line arguments (default ``sys.argv[1:]``)
    """
    import rl_zoo3.enjoy

    import_env_packages()
    algo, args = _prepare_argv(list(sys.argv[1:] if argv is None else argv))
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], *args]
    try:
        with _patched_enjoy(algo):
            rl_zoo3.enjoy.enjoy()
    finally:
        sys.argv = saved_argv


__all__ = ["bind_model", "load_run", "main", "run_env_kwargs"]
