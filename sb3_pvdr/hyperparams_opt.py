"""Optuna search spaces for ``train.py -optimize`` (rl-zoo's hyperparameter search) of our algorithms.

    python train.py --algo pvdr --env reach-v2 -optimize --n-trials 10 --n-jobs 1 --sampler tpe --pruner median \\
        -n 20000 --n-evaluations 2 --eval-episodes 5 [--storage logs/optuna.log --study-name pvdr-reach]

rl-zoo's ``ExperimentManager.objective`` calls ``HYPERPARAMS_SAMPLER[algo](trial, n_actions, n_envs, extra)`` and
puts the returned keys over the config's hyperparameters (``zoo_configs/<algo>.yml`` merged with ``-params``);
:func:`register_samplers` (called by :func:`sb3_pvdr.zoo.register_algorithms`) adds ours to that table. Each
trial trains ``-n`` steps and is scored by the mean evaluation reward; rl-zoo writes the study to
``<log-folder>/<algo>/report_<env>_<n>-trials-...{.csv,.pkl}`` (``--no-optim-plots`` skips the plotly figures).

Our samplers draw the algorithmic hyperparameters only. Rollout sizes (``n_steps``, ``n_envs``, ``batch_size``)
and networks (``policy_kwargs``) stay the config's: with 250-step episodes and CPU budgets they are set in the
yaml (or with ``-params``), not searched. That is also why pixel PPO gets its own sampler: rl-zoo's ``ppo``
sampler does run with our ``MultiInputPolicy`` on images, but it draws ``n_steps`` up to 4096, ``batch_size`` up to
1024 and ``n_epochs`` up to 20 (minutes per trial update on a CPU, rollouts longer than many trials' budgets) and
replaces ``policy_kwargs`` wholesale with ``{net_arch, activation_fn}``, dropping the yaml's CNN settings.

Trial parameters carry the hyperparameters' own names, so a trial's ``params`` are ``-params`` ready (rl-zoo's
converter for them, ``HYPERPARAMS_CONVERTER``, is the identity).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import optuna

# Table 3's clip ranges (0.6 / 0.2 / 0.5 per task set) and SB3's 0.1-0.3.
CLIP_RANGES = [0.1, 0.2, 0.3, 0.5, 0.6]


def _sample_learning(trial: optuna.Trial) -> dict[str, Any]:
    """What every PPO variant here searches: the policy learning rate and PPO's clip range."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True),
        "clip_range": trial.suggest_categorical("clip_range", CLIP_RANGES),
    }


def sample_ppo_params(trial: optuna.Trial, n_actions: int = 0, n_envs: int = 1, additional_args: dict | None = None) -> dict[str, Any]:
    """Pixel PPO (``ppo``) and the token PPO baseline (``ppo_tokens``): learning rate, clip range, entropy
    coefficient (Table 3: 2e-4 to 1e-2), epochs per rollout, GAE lambda (Table 3: 0.92)."""
    return {
        **_sample_learning(trial),
        "ent_coef": trial.suggest_categorical("ent_coef", [0.0, 1e-4, 1e-3, 5e-3, 1e-2]),
        "n_epochs": trial.suggest_categorical("n_epochs", [3, 5, 10]),
        "gae_lambda": trial.suggest_categorical("gae_lambda", [0.9, 0.92, 0.95, 0.98]),
    }


def sample_pvdr_params(trial: optuna.Trial, n_actions: int = 0, n_envs: int = 1, additional_args: dict | None = None) -> dict[str, Any]:
    """PVDR: its own weights and planning width on top of the learning rate and clip range.

    - ``n_candidates`` N of eq. (2) (the paper gives none; CPU default 4);
    - ``lambda_2``, goal term of L_prior, eq. (4) (Table 2: 0.8 Meta-World, 2.5 RLBench);
    - ``lambda_3``, planning term of the reward, eq. (6) (Table 2: 1.0 Meta-World, 4.5 RLBench);
    - ``act_coef``, weight of L_act, eq. (5) (not in the paper; default 1);
    - ``finetune_rollouts``, Algorithm 1's fine-tuning rollouts per cycle (0: no fine-tuning).
    """
    return {
        **_sample_learning(trial),
        "n_candidates": trial.suggest_categorical("n_candidates", [2, 4, 8, 16]),
        "lambda_2": trial.suggest_float("lambda_2", 0.0, 2.5),
        "lambda_3": trial.suggest_float("lambda_3", 0.0, 5.0),
        "act_coef": trial.suggest_float("act_coef", 0.01, 10.0, log=True),
        "finetune_rollouts": trial.suggest_categorical("finetune_rollouts", [0, 1, 2]),
    }


SAMPLERS = {"ppo": sample_ppo_params, "ppo_tokens": sample_ppo_params, "pvdr": sample_pvdr_params}


def register_samplers(algos: Iterable[str] = tuple(SAMPLERS)) -> None:
    """Put our samplers (and identity converters) into rl-zoo's tables for the given algorithm names."""
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

    for algo in algos:
        if algo in SAMPLERS:
            HYPERPARAMS_SAMPLER[algo] = SAMPLERS[algo]
            HYPERPARAMS_CONVERTER[algo] = dict


__all__ = ["SAMPLERS", "register_samplers", "sample_ppo_params", "sample_pvdr_params"]
