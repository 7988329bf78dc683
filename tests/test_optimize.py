"""train.py -optimize (rl-zoo's Optuna search) with our samplers: ppo, ppo_tokens and pvdr, 2 tiny trials each."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
import pytest
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from test_pvdr import TINY_POLICY_PARAM, save_tiny_models

from sb3_pvdr.hyperparams_opt import sample_ppo_params, sample_pvdr_params
from sb3_pvdr.zoo import ALGOS, check_hyperparams, load_zoo_file, lookup_hyperparams, main, register_algorithms

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    save_tiny_models(folder)
    return folder


def test_samplers_are_registered_and_give_valid_hyperparameters():
    register_algorithms()
    assert HYPERPARAMS_SAMPLER["pvdr"] is sample_pvdr_params
    assert HYPERPARAMS_SAMPLER["ppo"] is HYPERPARAMS_SAMPLER["ppo_tokens"] is sample_ppo_params
    for algo in ("ppo", "ppo_tokens", "pvdr"):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
        sampled = HYPERPARAMS_SAMPLER[algo](trial, 4, 1, {})
        # every sampled key is a constructor argument; rollout sizes and networks stay the config's
        hyperparams = {**lookup_hyperparams(load_zoo_file(ROOT / "zoo_configs" / f"{algo}.yml"), "reach-v2"), **sampled}
        check_hyperparams(algo, ALGOS[algo], hyperparams)
        assert not {"n_steps", "batch_size", "n_envs", "policy_kwargs"} & set(sampled)
        assert HYPERPARAMS_CONVERTER[algo](trial.params) == sampled  # trial params are the hyperparameters
    pvdr = sample_pvdr_params(optuna.trial.FixedTrial(dict(learning_rate=1e-4, clip_range=0.2, n_candidates=8, lambda_2=0.8, lambda_3=1.0,
                                                           act_coef=1.0, finetune_rollouts=1)))  # fmt: skip
    assert pvdr == dict(learning_rate=1e-4, clip_range=0.2, n_candidates=8, lambda_2=0.8, lambda_3=1.0, act_coef=1.0, finetune_rollouts=1)


@pytest.mark.parametrize("algo", ["ppo", "ppo_tokens", "pvdr"])
def test_optimize_runs_two_trials_and_writes_the_study(algo, models, tmp_path, capsys):
    size = 40 if algo == "ppo" else 16  # NatureCNN needs >= 36 px; the tiny tokenizer is 16 px
    params = ["n_envs:1", "n_steps:16", "batch_size:16"]
    if algo == "pvdr":
        planning = {"sb3_pvdr.planning.PlanningWrapper": {"tokenizer": str(models / "tok.pt"), "dynamics": str(models / "dyn.pt")}}
        params += [f"env_wrapper:{planning!r}", TINY_POLICY_PARAM, "replan_every:2"]  # the tiny model's l = 3
    if algo == "ppo_tokens":
        params += [f"env_wrapper:{[{'sb3_pvdr.ppo_tokens.TokenGoalWrapper': {'tokenizer': str(models / 'tok.pt')}}]!r}", TINY_POLICY_PARAM]
    main([
        "--algo", algo, "--env", "reach-v2", "-f", str(tmp_path / "logs"), "-n", "32", "--seed", "0",
        "-optimize", "--n-trials", "2", "--n-jobs", "1", "--sampler", "random", "--pruner", "none", "--n-evaluations", "1",
        "--eval-episodes", "1", "--no-optim-plots",
        "--env-kwargs", f"image_size:{size}", "max_episode_steps:12", "variant:0", f"goal_cache_dir:{str(tmp_path.parent / 'goals')!r}",
        "-params", *params,
    ])  # fmt: skip
    assert "Number of finished trials:  2" in capsys.readouterr().out
    (report,) = (tmp_path / "logs" / algo).glob("report_reach-v2_2-trials-32-random-none_*.csv")
    trials = list(csv.DictReader(report.open()))
    assert [trial["state"] for trial in trials] == ["COMPLETE", "COMPLETE"]
    assert all(float(trial["value"]) < 0 for trial in trials)  # mean evaluation reward: -L1 distance to the goal
    expected = {"pvdr": "params_n_candidates", "ppo": "params_ent_coef", "ppo_tokens": "params_n_epochs"}[algo]
    assert expected in trials[0]
