"""train.py (rl-zoo style CLI, sb3_pvdr/zoo.py) and zoo_configs/ppo.yml."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import sb3_pvdr.envs
from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.zoo import (
    FinalEvalCallback,
    NameStoreDict,
    OnceCallbackList,
    check_env_kwargs,
    check_hyperparams,
    load_zoo_file,
    lookup_hyperparams,
    main,
    merge_hyperparams,
    register_algorithms,
    resolve_policy_kwargs,
)

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "train.py"
PPO_YML = ROOT / "zoo_configs" / "ppo.yml"
# Smallest run that still exercises everything: 40 px (NatureCNN needs >= 36, the env multiples of 8),
# one fixed variant (one goal image to render), 25-step episodes, tiny rollouts.
ENV_KWARGS = {"image_size": 40, "variant": 0, "max_episode_steps": 25}
# Table 3: task set -> (clip range, entropy coefficient); the CPU configs deviate on task set 1 (ppo.yml's header).
TABLE3 = {1: (0.6, 1e-2), 2: (0.2, 2e-4), 3: (0.5, 5e-3)}
CPU_SETS = {**TABLE3, 1: (0.2, 0.0)}


def run_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run(
        [sys.executable, str(TRAIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def goal_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("goals")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, goal_cache):
    """One `train.py --algo ppo --env reach-v2 -n 256` run with evaluation, shared by the tests below."""
    log_folder = tmp_path_factory.mktemp("logs")
    env_kwargs = [f"{k}:{v!r}" for k, v in {**ENV_KWARGS, "goal_cache_dir": str(goal_cache)}.items()]
    result = run_train(
        "--algo", "ppo", "--env", "reach-v2", "-n", "256", "--seed", "3", "-f", str(log_folder),
        "--eval-freq", "128", "--eval-episodes", "1", "--n-eval-envs", "1",
        "--env-kwargs", *env_kwargs,
        "-params", "n_steps:128", "batch_size:64", "n_epochs:1", "n_envs:1",
        cwd=log_folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = log_folder / "ppo" / "reach-v2_1"
    return types.SimpleNamespace(result=result, log_folder=log_folder, run_dir=run_dir, params=run_dir / "reach-v2")


# --------------------------------------------------------------------------------------------
# The smoke run
# --------------------------------------------------------------------------------------------


def test_smoke_run_saves_model_config_and_logs(smoke_run):
    run_dir, params = smoke_run.run_dir, smoke_run.params
    for name in ("reach-v2.zip", "best_model.zip", "evaluations.npz", "0.monitor.csv"):
        assert (run_dir / name).is_file(), name
    # Plain yaml (no python tags): the merged config that was run, -params and -n applied.
    config = yaml.safe_load((params / "config.yml").read_text())
    assert config["n_steps"] == 128 and config["n_epochs"] == 1 and config["n_timesteps"] == 256
    assert config["clip_range"] == 0.2 and config["ent_coef"] == 0.0  # reach: task set 1, CPU deviation
    assert config["gae_lambda"] == 0.92 and config["policy"] == "MultiInputPolicy"  # from `default:`
    assert config["env_kwargs"]["image_size"] == 40
    args = yaml.safe_load((params / "args.yml").read_text())
    assert args["algo"] == "ppo" and args["env"] == "reach-v2" and args["conf_file"].endswith("ppo.yml")
    command = (params / "command.txt").read_text()
    assert "train.py" in command and "-n 256" in command
    # Evaluated at 128 and 256 steps, with a success flag per episode.
    evaluations = np.load(run_dir / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [128, 256]
    assert evaluations["successes"].shape == (2, 1)
    assert "Success rate:" in smoke_run.result.stdout
    assert list((smoke_run.log_folder / "tensorboard" / "reach-v2").glob("PPO_1/events.out.tfevents.*"))


def test_smoke_run_model_loads_and_evaluates(smoke_run, goal_cache):
    model = PPO.load(smoke_run.run_dir / "reach-v2.zip", device="cpu")
    assert model.n_steps == 128 and model.n_epochs == 1  # -params took effect in the model
    assert model.clip_range(1.0) == 0.2
    env = Monitor(gym.make("reach-v2", **ENV_KWARGS, goal_cache_dir=goal_cache))
    try:
        assert model.observation_space["observation"].shape[-2:] == (40, 40)
        mean_reward, _ = evaluate_policy(model, env, n_eval_episodes=1)
        best = PPO.load(smoke_run.run_dir / "best_model.zip", device="cpu")
        obs, _ = env.reset(seed=0)
        assert best.predict(obs, deterministic=True)[0].shape == env.action_space.shape
    finally:
        env.close()
    assert np.isfinite(mean_reward)


# --------------------------------------------------------------------------------------------
# Command-line errors: one line, exit status 2, no traceback
# --------------------------------------------------------------------------------------------


def test_unknown_algo_is_one_line_error(tmp_path):
    result = run_train("--algo", "nope", "--env", "reach-v2", "-f", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown algorithm 'nope'") and "ppo" in lines[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--env", "reach-v9"], "unknown env 'reach-v9'; did you mean"),
        (["--env", "reach-v2", "-params", "n_stepz:8"], "unknown hyperparameter(s) n_stepz"),
        (["--env", "reach-v2", "--env-kwargs", "image_sise:40"], "env_kwargs image_sise not accepted by reach-v2"),
        (["--env", "reach-v2", "--conf-file", "missing.yml"], "missing.yml not found"),
        (["--env", "reach-v2", "--conf-file", "hyper.py"], "expected a .yml/.yaml"),
        (["--env", "reach-v2", "--device", "tpu"], "--device tpu: not a torch device"),
    ],
)
def test_user_errors_are_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--algo", "ppo", "-f", str(tmp_path), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "ppo").exists()  # failed before creating a run folder


def test_vecnormalize_of_images_is_refused(tmp_path, goal_cache, capsys):
    argv = ["--env", "reach-v2", "--eval-freq", "-1", "-f", str(tmp_path), "-params", "n_envs:1", "normalize:True"]
    env_kwargs = [f"{k}:{v!r}" for k, v in {**ENV_KWARGS, "goal_cache_dir": str(goal_cache)}.items()]
    with pytest.raises(SystemExit):
        main([*argv, "--env-kwargs", *env_kwargs])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: normalize would standardise the image observations")
    assert "'observation'" in err and "'desired_goal'" in err and len(err.splitlines()) == 1


# --------------------------------------------------------------------------------------------
# zoo_configs/ppo.yml
# --------------------------------------------------------------------------------------------


def test_ppo_yml_covers_the_paper_tasks_with_table3_settings_but_set1():
    table = load_zoo_file(PPO_YML)
    for task, task_set in sb3_pvdr.envs.TASK_SETS.items():
        for env_id in (f"{task}-v2", f"{task}-v3"):
            assert env_id in table and env_id in gym.registry, env_id
            hyperparams = lookup_hyperparams(table, env_id)
            check_hyperparams("ppo", PPO, hyperparams)
            assert (hyperparams["clip_range"], hyperparams["ent_coef"]) == pytest.approx(CPU_SETS[task_set]), env_id
            assert hyperparams["gamma"] == 0.99 and hyperparams["gae_lambda"] == 0.92
            assert hyperparams["max_grad_norm"] == 1.0 and hyperparams["batch_size"] == 100
            assert hyperparams["learning_rate"] == 3e-4 and hyperparams["vf_coef"] == 0.5
            assert hyperparams["policy"] == "MultiInputPolicy" and not hyperparams["normalize"]
            check_env_kwargs(env_id, hyperparams["env_kwargs"])
    # Numbers are numbers: yaml 1.1 reads `3e-4` (no dot) as a string.
    for key, value in table["default"].items():
        assert not isinstance(value, str) or key == "policy", key


def test_default_block_is_merged_under_env_entries():
    table = {
        "default": {"policy": "MlpPolicy", "n_steps": 8, "env_kwargs": {"image_size": 64, "variant": 1}},
        "reach-v2": {"n_steps": 16, "env_kwargs": {"image_size": 48}},
    }
    assert lookup_hyperparams(table, "reach-v2") == {
        "policy": "MlpPolicy",
        "n_steps": 16,
        "env_kwargs": {"image_size": 48, "variant": 1},
    }
    assert lookup_hyperparams(table, "dial-turn-v2")["n_steps"] == 8  # no entry: the default block
    assert merge_hyperparams(table["default"], {"env_kwargs": {"variant": 2}})["env_kwargs"] == {
        "image_size": 64,
        "variant": 2,
    }
    assert table["default"]["env_kwargs"] == {"image_size": 64, "variant": 1}  # inputs untouched
    with pytest.raises(ConfigError, match="no entry for 'reach-v2' and no 'default'"):
        lookup_hyperparams({"dial-turn-v2": {}}, "reach-v2")


def test_check_hyperparams_rejects_evaluated_strings_and_unknown_keys():
    base = {"policy": "MultiInputPolicy", "n_timesteps": 10}
    check_hyperparams("ppo", PPO, {**base, "policy_kwargs": {"net_arch": [8]}, "callback": "x.Y"})
    with pytest.raises(ConfigError, match="policy_kwargs is the Python string"):
        check_hyperparams("ppo", PPO, {**base, "policy_kwargs": "dict(net_arch=[8])"})
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) learning_rat for ppo \(did you mean learning_rate\?\)"):
        check_hyperparams("ppo", PPO, {**base, "learning_rat": 1e-3})
    with pytest.raises(ConfigError, match="unknown hyperparameter.*seed"):
        check_hyperparams("ppo", PPO, {**base, "seed": 1})  # rl-zoo passes --seed itself
    with pytest.raises(ConfigError, match="no 'policy'"):
        check_hyperparams("ppo", PPO, {"n_steps": 8})


def test_policy_kwargs_class_names_resolve_without_eval():
    import torch

    from stable_baselines3.common.torch_layers import NatureCNN

    resolved = resolve_policy_kwargs(
        {"activation_fn": "ReLU", "optimizer_class": "torch.optim.AdamW", "features_extractor_class": "NatureCNN", "x": "y"}
    )
    assert resolved["activation_fn"] is torch.nn.ReLU and resolved["optimizer_class"] is torch.optim.AdamW
    assert resolved["features_extractor_class"] is NatureCNN and resolved["x"] == "y"
    with pytest.raises(ConfigError, match="cannot import 'os.system.nothing'"):
        resolve_policy_kwargs({"activation_fn": "os.system.nothing"})


# --------------------------------------------------------------------------------------------
# Algorithms and callbacks
# --------------------------------------------------------------------------------------------


def test_register_algorithms_adds_ppo_and_pvdr_when_defined(monkeypatch):
    from rl_zoo3.utils import ALGOS

    from sb3_pvdr.ppo_tokens import TokenPPO  # imports the real sb3_pvdr.pvdr modules before they are faked

    class FakePVDR(PPO):
        pass

    fake = types.ModuleType("sb3_pvdr.pvdr")
    fake.__spec__ = types.SimpleNamespace(name="sb3_pvdr.pvdr")
    monkeypatch.setitem(sys.modules, "sb3_pvdr.pvdr", fake)
    monkeypatch.delitem(ALGOS, "pvdr", raising=False)
    assert register_algorithms() == {"ppo": PPO, "ppo_tokens": TokenPPO}  # module without PVDR: not registered
    assert "pvdr" not in ALGOS
    fake.PVDR = FakePVDR
    assert register_algorithms() == {"ppo": PPO, "ppo_tokens": TokenPPO, "pvdr": FakePVDR}
    assert ALGOS["pvdr"] is FakePVDR and ALGOS["ppo"] is PPO
    monkeypatch.delitem(ALGOS, "pvdr")
    assert "pvdr" not in register_algorithms(include_pvdr=False)


class CountingCallback(BaseCallback):
    def __init__(self):
        super().__init__()
        self.ended = 0

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.ended += 1


def test_callbacks_end_once_and_training_ends_with_an_evaluation(tmp_path):
    env = gym.make("CartPole-v1")
    eval_env = Monitor(gym.make("CartPole-v1"))
    eval_callback = EvalCallback(eval_env, eval_freq=1000, n_eval_episodes=1, log_path=str(tmp_path), verbose=0)
    counter = CountingCallback()
    callbacks = OnceCallbackList([counter, eval_callback, FinalEvalCallback(eval_callback)])
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64, callback=callbacks)
    callbacks.on_training_end()  # rl-zoo's second call after learn()
    assert counter.ended == 1
    assert eval_callback.evaluations_timesteps == [64]  # eval_freq 1000 never fired: the final one did
    # Right after a scheduled evaluation there is no extra one.
    eval_callback = EvalCallback(eval_env, eval_freq=32, n_eval_episodes=1, log_path=str(tmp_path), verbose=0)
    model.learn(64, callback=[eval_callback, FinalEvalCallback(eval_callback)])
    assert eval_callback.evaluations_timesteps == [32, 64]


def test_help_lists_the_algorithms_own_keys(capsys):
    from sb3_pvdr.pvdr import PVDR
    from sb3_pvdr.zoo import algorithm_keys_help

    text = algorithm_keys_help("pvdr", PVDR)
    for key in ("tokenizer", "dynamics", "lambda_2", "n_candidates", "oracle_z", "finetune_batches"):
        assert f"\n  {key} " in text
    assert "clip_range" not in text  # PPO's own keys are rl-zoo's business
    assert "shipped model's name" in text


def test_params_keep_bare_model_names_as_strings_but_not_broken_expressions():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("-params", nargs="+", action=NameStoreDict, default={})
    args = parser.parse_args(["-params", "dynamics:metaworld-64-goal", "tokenizer:runs/x/tokenizer.pt", "n_candidates:3",
                              "act_target:'a_t'", "pretrained:True"])
    assert args.params == {"dynamics": "metaworld-64-goal", "tokenizer": "runs/x/tokenizer.pt", "n_candidates": 3,
                           "act_target": "a_t", "pretrained": True}
    with pytest.raises(ConfigError, match="does not evaluate"):  # a typo inside an expression is not a string
        parser.parse_args(["-params", "policy_kwargs:dict(net_arch=nett)"])
    with pytest.raises(SyntaxError):  # rl-zoo's own errors otherwise
        parser.parse_args(["-params", "n_steps:3+"])
