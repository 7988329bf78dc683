"""Glue between sb3_pvdr and RL Baselines3 Zoo (``rl_zoo3``): the engine behind ``train.py``.

``train.py`` is rl-zoo's own ``rl_zoo3.train.train()`` (same options: ``python train.py -h``) with
these changes, all made here:

1. :func:`register_algorithms` adds our algorithms to ``rl_zoo3.utils.ALGOS`` (``ppo`` from SB3,
   and ``pvdr`` once ``sb3_pvdr.pvdr.PVDR`` exists) before rl-zoo builds its argument parser.
2. Hyperparameters are read from ``zoo_configs/<algo>.yml`` (rl-zoo's format: env id -> kwargs)
   instead of rl-zoo's own ``hyperparams/`` folder, and an env's entry is *merged over* the
   ``default:`` block (rl-zoo 2.9 uses ``default`` only when the env id is missing, as a whole).
3. Configs are checked before anything is built: unknown keys, Python strings that rl-zoo would
   ``eval`` (we keep yaml structured), env kwargs the env does not take, VecNormalize on images.
   Every such mistake is a one-line :class:`~sb3_pvdr.common.errors.ConfigError`.
4. Runs always end with an evaluation (so a short run still reports a success rate), save a
   plain-yaml ``config.yml`` (the merged hyperparameters actually used) / ``args.yml`` and a
   re-runnable ``command.txt``, and call each callback's ``on_training_end`` once (rl-zoo calls the
   first one twice).
5. Other defaults: ``sb3_pvdr.envs`` is imported (our gymnasium ids), ``--env reach-v2``,
   ``--tensorboard-log <log-folder>/tensorboard`` and ``--num-threads 1`` (see :func:`_prepare_argv`).

Run layout (rl-zoo's)::

    <log-folder>/<algo>/<env>_<run>/
        <env>.zip  best_model.zip  evaluations.npz  0.monitor.csv
        <env>/config.yml  <env>/args.yml  <env>/command.txt
    <log-folder>/tensorboard/<env>/<ALGO>_<n>/   (unless --tensorboard-log is given)
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import inspect
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import ALGOS, StoreDict
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecEnv

from sb3_pvdr.common.errors import ConfigError, cli_entry
from sb3_pvdr.common.utils import get_device
from sb3_pvdr.hyperparams_opt import register_samplers

# Where ``train.py`` looks for ``<algo>.yml`` unless ``--conf-file`` is given: the repository's
# ``zoo_configs/`` (``train.py`` lives next to it and passes its own path).
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "zoo_configs"

DEFAULT_ENV = "reach-v2"
# Keys rl-zoo consumes itself; everything else in an entry goes to the algorithm's constructor.
ZOO_KEYS = frozenset(
    {
        "n_timesteps",
        "n_envs",
        "env_kwargs",
        "env_wrapper",
        "vec_env_wrapper",
        "callback",
        "normalize",
        "frame_stack",
        "monitor_kwargs",
        "noise_type",
        "noise_std",
    }
)
# Constructor arguments rl-zoo sets itself (from the command line): not allowed in a config.
RESERVED_KEYS = frozenset({"env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model"})
# Keys whose string values rl-zoo passes to ``eval``: ours must be yaml mappings instead.
EVALUATED_KEYS = ("policy_kwargs", "replay_buffer_kwargs", "monitor_kwargs", "normalize")
# Mappings merged key by key (default block < env entry < command line) instead of replaced.
MERGED_KEYS = ("env_kwargs", "policy_kwargs")
# Modules searched for a bare class name in ``policy_kwargs`` (``activation_fn: ReLU``).
CLASS_MODULES = ("torch.nn", "torch.optim", "stable_baselines3.common.torch_layers")


# --------------------------------------------------------------------------------------------
# Algorithms
# --------------------------------------------------------------------------------------------


def register_algorithms(include_pvdr: bool = True) -> dict[str, type[BaseAlgorithm]]:
    """
    Add our algorithms to rl-zoo's ``ALGOS`` table (call before rl-zoo builds its parser).

    ``ppo`` is SB3's PPO (pixel baseline), ``ppo_tokens`` the paper's own PPO baseline (PVDR's transformer
    over tokens of the current frames and the goal, :class:`sb3_pvdr.ppo_tokens.TokenPPO`); ``pvdr`` is
    added when ``sb3_pvdr.pvdr`` defines
    ``PVDR``. An error while importing an existing ``sb3_pvdr.pvdr`` is not hidden.

    :param include_pvdr: import ``sb3_pvdr.pvdr`` (``train.py`` skips it, and its import time,
        unless ``--algo pvdr`` is asked for)
    :return: the algorithms this call registered, name -> class
    """
    from sb3_pvdr.ppo_tokens import TokenPPO

    ours: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "ppo_tokens": TokenPPO}
    if include_pvdr and importlib.util.find_spec("sb3_pvdr.pvdr") is not None:
        pvdr = getattr(importlib.import_module("sb3_pvdr.pvdr"), "PVDR", None)
        if pvdr is not None:
            ours["pvdr"] = pvdr
    ALGOS.update(ours)
    register_samplers(ours)  # their Optuna search spaces, for train.py -optimize (sb3_pvdr/hyperparams_opt.py)
    return ours


def algorithm_kwargs(algo_class: type) -> set[str]:
    """
    Keyword arguments an algorithm's constructor accepts (following ``**kwargs`` up the MRO).

    :param algo_class: e.g. ``PPO``
    :return: the names, without ``self``, ``env`` and the ``*args``/``**kwargs`` catch-alls
    """
    names: set[str] = set()
    for cls in algo_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names - {"self", "env"}


def algorithm_keys_help(algo: str, algo_class: type) -> str:
    """The ``-params`` keys an algorithm adds to PPO's, with their ``:param`` descriptions (for ``train.py -h``)."""
    import re

    own = [name for name in algorithm_kwargs(algo_class) - algorithm_kwargs(PPO) if not name.startswith("_")]
    docs = dict(re.findall(r":param (\w+): ((?:.|\n(?!\s*:))*)", inspect.getdoc(algo_class) or ""))
    lines = [f"{algo} keys besides PPO's (python train.py --algo {algo} -params key:value ...; defaults in "
             f"zoo_configs/{algo}.yml):"]
    order = list(inspect.signature(algo_class.__init__).parameters)
    for name in sorted(own, key=order.index):
        text = " ".join(docs.get(name, "").split())
        lines.append(f"  {name:<22s}{text}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Hyperparameter files
# --------------------------------------------------------------------------------------------


def default_conf_file(algo: str, config_dir: str | Path | None = None) -> Path:
    """
    :param algo: algorithm name, e.g. ``"ppo"``
    :param config_dir: folder of ``<algo>.yml`` files (default: the repository's ``zoo_configs/``)
    :return: ``<config_dir>/<algo>.yml``
    """
    return Path(config_dir or DEFAULT_CONFIG_DIR) / f"{algo}.yml"


def load_zoo_file(conf_file: str | Path) -> dict[str, Any]:
    """
    Read an rl-zoo hyperparameter file (yaml only: rl-zoo's ``.py`` configs are executed, ours are data).

    :param conf_file: path to a ``.yml``/``.yaml`` file mapping env ids (and ``default``) to kwargs
    :return: the parsed mapping
    """
    path = Path(conf_file)
    if path.suffix not in (".yml", ".yaml"):
        raise ConfigError(f"--conf-file {path}: expected a .yml/.yaml hyperparameter file (python configs are not accepted)")
    if not path.is_file():
        raise ConfigError(f"hyperparameter file {path} not found: pass --conf-file FILE or create it")
    try:
        table = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid yaml: {exc}") from exc
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"{path}: expected a mapping of env id (or 'default') -> mapping of hyperparameters")
    return table


def merge_hyperparams(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """
    Merge hyperparameter mappings, later layers winning; ``env_kwargs`` and ``policy_kwargs`` are
    merged key by key, so an env entry can change ``image_size`` without restating the rest.

    :param layers: e.g. ``(default_block, env_entry, command_line_overrides)``
    :return: a new mapping (the inputs are not modified)
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key in MERGED_KEYS and isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            elif isinstance(value, dict):
                merged[key] = dict(value)
            else:
                merged[key] = value
    return merged


def lookup_hyperparams(table: dict[str, Any], env_id: str, source: str = "config") -> dict[str, Any]:
    """
    The hyperparameters of ``env_id``: its entry merged over the ``default:`` block.

    :param table: a parsed hyperparameter file
    :param env_id: gymnasium id, e.g. ``"reach-v2"``
    :param source: file name for error messages
    :return: the merged mapping
    """
    if env_id not in table and "default" not in table:
        known = ", ".join(sorted(table)) or "none"
        raise ConfigError(f"{source} has no entry for {env_id!r} and no 'default' block (entries: {known})")
    return merge_hyperparams(table.get("default"), table.get(env_id))


def check_hyperparams(algo: str, algo_class: type, hyperparams: dict[str, Any], source: str = "config") -> None:
    """
    Reject what would otherwise fail deep inside rl-zoo/SB3 (or silently do something else).

    :param algo: algorithm name, for messages
    :param algo_class: the algorithm class, whose constructor arguments are the valid keys
    :param hyperparams: the merged hyperparameters
    :param source: file name for error messages
    """
    valid = (algorithm_kwargs(algo_class) | ZOO_KEYS) - RESERVED_KEYS
    unknown = sorted(set(hyperparams) - valid)
    if unknown:
        close = [match for key in unknown for match in difflib.get_close_matches(key, valid, n=1)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"{source}: unknown hyperparameter(s) {', '.join(unknown)} for {algo}{hint}; "
            f"valid keys: {', '.join(sorted(valid))} (seed, device, verbose, tensorboard_log come from the command line)"
        )
    if "policy" not in hyperparams:
        raise ConfigError(f"{source}: no 'policy' for {algo} (e.g. policy: MultiInputPolicy)")
    for key in EVALUATED_KEYS:
        if isinstance(hyperparams.get(key), str):
            raise ConfigError(
                f"{source}: {key} is the Python string {hyperparams[key]!r}, which rl-zoo would eval; "
                f"write it as a yaml mapping, e.g. {key}: {{net_arch: [64, 64]}}"
            )
    for key in MERGED_KEYS:
        if key in hyperparams and not isinstance(hyperparams[key], dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {hyperparams[key]!r}")


def resolve_class(name: str, key: str = "class") -> type:
    """
    Import a class named in yaml: a dotted path, or a bare name from torch.nn / torch.optim / SB3 torch_layers.

    :param name: e.g. ``"ReLU"``, ``"torch.optim.AdamW"``, ``"sb3_pvdr.pvdr.policies.Extractor"``
    :param key: the yaml key, for messages
    :return: the class
    """
    candidates = [name.rsplit(".", 1)] if "." in name else [(module, name) for module in CLASS_MODULES]
    for module_name, attr in candidates:
        try:
            found = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            found = None
        if found is not None:
            return found
    raise ConfigError(f"{key}: cannot import {name!r}; give a dotted path (package.module.Class) or a torch.nn name")


def resolve_policy_kwargs(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """
    Turn the class names of a yaml ``policy_kwargs`` into classes (``activation_fn: ReLU``,
    ``features_extractor_class: NatureCNN``, ``optimizer_class: torch.optim.AdamW``); no ``eval``.

    :param policy_kwargs: the mapping from yaml
    :return: a new mapping, ready for the policy constructor
    """
    resolved = dict(policy_kwargs)
    for key, value in policy_kwargs.items():
        if isinstance(value, str) and (key == "activation_fn" or key.endswith("_class")):
            resolved[key] = resolve_class(value, key=f"policy_kwargs.{key}")
    return resolved


# --------------------------------------------------------------------------------------------
# Environments
# --------------------------------------------------------------------------------------------


def import_env_packages() -> None:
    """Register our gymnasium ids (``reach-v2``, ...) by importing ``sb3_pvdr.envs``."""
    importlib.import_module("sb3_pvdr.envs")


def check_env_id(env_id: str) -> None:
    """
    :param env_id: a gymnasium id
    :raises ConfigError: (one line, with the closest registered ids) when it is not registered
    """
    from sb3_pvdr.envs import PAPER_TASKS

    registered = list(gym.envs.registry.keys())
    if env_id not in registered:
        close = difflib.get_close_matches(env_id, registered, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        tasks = ", ".join(f"{task}-v2" for task in PAPER_TASKS)
        raise ConfigError(
            f"unknown env {env_id!r}{hint} (the paper's tasks: {tasks}; also as -v3, and any metaworld task as <task>-v3)"
        )


def check_env_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """
    Check ``env_kwargs`` against the env constructor's signature (skipped when it takes ``**kwargs``).

    :param env_id: a registered gymnasium id
    :param env_kwargs: keyword arguments for ``gym.make``
    """
    entry_point = gym.spec(env_id).entry_point
    creator: Callable = gym.envs.registration.load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    try:
        params = inspect.signature(creator).parameters.values()
    except (TypeError, ValueError):  # builtins / C extensions: nothing to check
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    valid = {p.name for p in params if p.kind is not p.VAR_POSITIONAL}
    unknown = sorted(set(env_kwargs) - valid)
    if unknown:
        raise ConfigError(f"env_kwargs {', '.join(unknown)} not accepted by {env_id}; valid: {', '.join(sorted(valid))}")


# --------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------


class OnceCallbackList(CallbackList):
    """
    A ``CallbackList`` whose ``on_training_end`` runs once: rl-zoo calls the first callback's
    ``on_training_end`` again after ``model.learn`` (to close a progress bar after Ctrl-C), which would
    otherwise run every user callback's end-of-training hook twice.

    :param callbacks: the callbacks to run, in order
    """

    def __init__(self, callbacks: list[BaseCallback]):
        super().__init__(callbacks)
        self._training_ended = False

    def on_training_end(self) -> None:
        if not self._training_ended:
            self._training_ended = True
            super().on_training_end()


class FinalEvalCallback(BaseCallback):
    """
    Run ``eval_callback`` once more at the end of training unless it has just evaluated, so that every
    run, however short, ends with an evaluation (success rate, best model, ``evaluations.npz``).

    :param eval_callback: the run's ``EvalCallback``
    """

    def __init__(self, eval_callback: EvalCallback):
        super().__init__()
        self.eval_callback = eval_callback

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        evaluator = self.eval_callback
        if evaluator.eval_freq <= 0 or evaluator.n_calls == 0 or evaluator.n_calls % evaluator.eval_freq == 0:
            return
        if self.verbose or evaluator.verbose:
            print("Final evaluation")
        eval_freq, evaluator.eval_freq = evaluator.eval_freq, 1
        try:
            evaluator._on_step()
        finally:
            evaluator.eval_freq = eval_freq


# --------------------------------------------------------------------------------------------
# rl-zoo's ExperimentManager, adapted
# --------------------------------------------------------------------------------------------


class ZooExperimentManager(ExperimentManager):
    """
    rl-zoo's ``ExperimentManager`` with the changes listed in this module's docstring: hyperparameters
    merged over ``default:`` and checked, no ``eval``, a final evaluation, callbacks ended once, plain
    yaml run records. Constructed by ``rl_zoo3.train.train()`` (see :func:`main`), same arguments.
    """

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        env_id = self.env_name.gym_id
        source = Path(self.config).name
        print(f"Loading hyperparameters from: {self.config}")
        hyperparams = lookup_hyperparams(load_zoo_file(self.config), env_id, source)
        hyperparams = merge_hyperparams(hyperparams, self.custom_hyperparams)
        if self.env_kwargs:  # --env-kwargs
            hyperparams = merge_hyperparams(hyperparams, {"env_kwargs": self.env_kwargs})
        if self.n_timesteps > 0:  # -n N: config.yml records the budget actually used
            hyperparams["n_timesteps"] = self.n_timesteps
        elif "n_timesteps" not in hyperparams:
            raise ConfigError(f"{source}: no n_timesteps for {env_id}; add one or pass -n N")
        check_hyperparams(self.algo, ALGOS[self.algo], hyperparams, source)
        env_kwargs = hyperparams.get("env_kwargs", {})
        check_env_kwargs(env_id, env_kwargs)
        # rl-zoo builds the eval env from the command-line env kwargs only: use the merged ones.
        if self._eval_env_kwargs_args is None:
            self.eval_env_kwargs = env_kwargs
        saved_hyperparams = dict(sorted(hyperparams.items()))
        print(f"Hyperparameters for {env_id}:")
        print(_dump_yaml(saved_hyperparams).rstrip())
        return hyperparams, saved_hyperparams

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]) -> tuple:
        if isinstance(hyperparams.get("policy_kwargs"), dict):
            hyperparams["policy_kwargs"] = resolve_policy_kwargs(hyperparams["policy_kwargs"])
        if isinstance(hyperparams.get("monitor_kwargs"), dict):  # Monitor adds keyword tuples
            hyperparams["monitor_kwargs"] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in hyperparams["monitor_kwargs"].items()
            }
        if isinstance(hyperparams.get("replay_buffer_class"), str):  # rl-zoo would eval it
            hyperparams["replay_buffer_class"] = resolve_class(hyperparams["replay_buffer_class"], "replay_buffer_class")
        return super()._preprocess_hyperparams(hyperparams)

    def create_callbacks(self) -> None:
        super().create_callbacks()
        evaluators = [cb for cb in self.callbacks if isinstance(cb, EvalCallback)]
        if evaluators:
            self.callbacks.append(FinalEvalCallback(evaluators[-1]))

    def learn(self, model: BaseAlgorithm) -> None:
        if self.callbacks:
            self.callbacks = [OnceCallbackList(self.callbacks)]
        if not self.trained_agent:
            super().learn(model)
            return
        # ``-i CHECKPOINT.zip`` continues a run: the step counter goes on from the checkpoint's and
        # ``n_timesteps`` is the run's total budget (rl-zoo would start again from 0 and add n_timesteps).
        remaining = self.n_timesteps - model.num_timesteps
        print(f"Continuing from {model.num_timesteps} steps to {self.n_timesteps}")
        try:
            if remaining > 0:
                kwargs: dict[str, Any] = {"callback": self.callbacks} if self.callbacks else {}
                if self.log_interval > -1:
                    kwargs["log_interval"] = self.log_interval
                model.learn(remaining, reset_num_timesteps=False, **kwargs)
        except KeyboardInterrupt:
            pass
        finally:
            if self.callbacks:
                self.callbacks[0].on_training_end()
            try:
                assert model.env is not None
                model.env.close()
            except EOFError:
                pass

    def _maybe_normalize(self, env: VecEnv, eval_env: bool) -> VecEnv:
        spaces = getattr(env.observation_space, "spaces", {"obs": env.observation_space})
        normalized = self.normalize_kwargs.get("norm_obs_keys") or list(spaces)
        images = [key for key in normalized if key in spaces and is_image_space(spaces[key])]
        if self.normalize and self.normalize_kwargs.get("norm_obs", True) and images:
            env.close()
            raise ConfigError(
                f"normalize would standardise the image observations {images}; "
                "use normalize: {norm_obs: false, norm_reward: true} or list only non-image norm_obs_keys"
            )
        return super()._maybe_normalize(env, eval_env)

    def _save_config(self, saved_hyperparams: dict[str, Any]) -> None:
        params_path = Path(self.params_path)
        (params_path / "config.yml").write_text(_dump_yaml(saved_hyperparams))
        (params_path / "args.yml").write_text(_dump_yaml(dict(sorted(vars(self.args).items()))))
        argv = getattr(sys, "orig_argv", [sys.executable, *sys.argv])
        (params_path / "command.txt").write_text(shlex.join(argv) + "\n")
        print(f"Log path: {self.save_path}")


class NameStoreDict(StoreDict):
    """rl-zoo's ``-params key:value`` action (values are Python expressions), except that a bare name or path that
    does not evaluate (``dynamics:metaworld-64-goal``, ``tokenizer:runs/x/tokenizer.pt``: a ``NameError``) is kept as
    the string it spells, so shipped model names need no nested quotes. Anything with brackets still has to evaluate.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        arg_dict = {}
        for argument in values:
            key, _, value = argument.partition(":")
            try:
                arg_dict[key] = eval(value)  # rl-zoo's own semantics
            except NameError as exc:
                if not value.strip() or any(c in value for c in "()[]{}'\""):
                    raise ConfigError(f"{option_string} {argument}: {value!r} does not evaluate ({exc})") from None
                arg_dict[key] = value
        setattr(namespace, self.dest, arg_dict)


def _dump_yaml(data: dict[str, Any]) -> str:
    """Plain yaml (no ``!!python`` tags) when the values allow it, rl-zoo's tagged yaml otherwise."""
    try:
        return yaml.safe_dump(data, sort_keys=False)
    except yaml.representer.RepresenterError:
        return yaml.dump(data, sort_keys=False)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _prepare_argv(argv: list[str], config_dir: str | Path | None) -> list[str]:
    """Check ``--algo``/``--env``/``--conf-file`` up front (one-line errors) and add our defaults."""
    # Same flags as rl-zoo's parser (so abbreviations resolve alike), defaults None = "not given".
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-h", "--help", action="store_true")
    pre.add_argument("--algo", default="ppo")
    pre.add_argument("--env", default=None)
    pre.add_argument("-f", "--log-folder", default="logs")
    pre.add_argument("-conf", "--conf-file", default=None)
    pre.add_argument("-tb", "--tensorboard-log", default=None)
    pre.add_argument("--num-threads", default=None)
    pre.add_argument("--gym-packages", nargs="+", default=[])
    pre.add_argument("--device", default="auto")
    known, _ = pre.parse_known_args(argv)
    if known.help:
        register_algorithms()  # list them all
        if known.algo in ALGOS and ALGOS[known.algo] is not PPO:
            print(algorithm_keys_help(known.algo, ALGOS[known.algo]))
        return argv
    for module in known.gym_packages:  # rl-zoo imports them too, but after its own env check
        importlib.import_module(module)

    register_algorithms(include_pvdr=known.algo == "pvdr")
    if known.algo not in ALGOS:
        hint = " (it appears once sb3_pvdr.pvdr defines PVDR)" if known.algo == "pvdr" else ""
        raise ConfigError(f"unknown algorithm {known.algo!r}{hint}; available: {', '.join(sorted(ALGOS))}")
    env_id = known.env or DEFAULT_ENV
    check_env_id(env_id)
    try:
        get_device(known.device)
    except RuntimeError as exc:
        raise ConfigError(f"--device {known.device}: not a torch device (use auto, cpu, cuda or cuda:N)") from exc
    conf_file = known.conf_file or default_conf_file(known.algo, config_dir)
    load_zoo_file(conf_file)  # exists and parses

    extra: list[str] = []
    if known.env is None:
        extra += ["--env", env_id]
    if known.conf_file is None:
        extra += ["--conf-file", str(conf_file)]
    if known.tensorboard_log is None:
        extra += ["--tensorboard-log", os.path.join(known.log_folder, "tensorboard")]
    if known.num_threads is None:
        # Batches here are small (2 envs, minibatch 100): one torch thread is faster than a pool,
        # by 10-40x on a busy 2-core machine (measured: NatureCNN forward 2 ms vs 83 ms).
        extra += ["--num-threads", "1"]
    return argv + extra


@cli_entry
def main(argv: Sequence[str] | None = None, config_dir: str | Path | None = None) -> None:
    """
    ``train.py``: rl-zoo's training CLI with our algorithms, envs and ``zoo_configs/``.

    :param argv: command-line arguments (default ``sys.argv[1:]``)
    :param config_dir: folder of ``<algo>.yml`` files (default: the repository's ``zoo_configs/``)
    """
    import rl_zoo3.train

    import_env_packages()
    argv = _prepare_argv(list(sys.argv[1:] if argv is None else argv), config_dir)

    rl_zoo3.train.ExperimentManager = ZooExperimentManager  # what train() instantiates
    rl_zoo3.train.StoreDict = NameStoreDict  # -params dynamics:metaworld-64-goal without nested quotes
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], *argv]
    try:
        rl_zoo3.train.train()
    finally:
        sys.argv = saved_argv
