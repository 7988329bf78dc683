"""enjoy.py (rl-zoo's enjoy with our algorithms) and python -m sb3_pvdr.record_agent on tiny train.py runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as imageio
import numpy as np
import pytest
import yaml
from test_pvdr import TINY_POLICY_PARAM, save_tiny_models

from sb3_pvdr import enjoy, record_agent
from sb3_pvdr.zoo import main as train_main

ROOT = Path(__file__).resolve().parent.parent
EPISODE = 12  # agent steps per episode (gymnasium's TimeLimit)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """One tiny train.py run per algorithm (ppo at 40 px, ppo_tokens and pvdr at 16 px with tiny models)."""
    tmp = tmp_path_factory.mktemp("runs")
    save_tiny_models(tmp)
    goals = tmp / "goals"
    common = ["--env", "reach-v2", "-n", "32", "-f", str(tmp / "logs"), "--eval-freq", "32", "--eval-episodes", "1", "--seed", "0"]
    env_kwargs = ["--env-kwargs", f"max_episode_steps:{EPISODE}", "variant:0", f"goal_cache_dir:{str(goals)!r}"]
    tiny = ["-params", "n_envs:1", "n_steps:16", "batch_size:16", "n_epochs:1"]
    planning = {"sb3_pvdr.planning.PlanningWrapper": {"tokenizer": str(tmp / "tok.pt"), "dynamics": str(tmp / "dyn.pt")}}
    tokens = [{"sb3_pvdr.ppo_tokens.TokenGoalWrapper": {"tokenizer": str(tmp / "tok.pt")}}]
    train_main(["--algo", "ppo", *common, *env_kwargs, "image_size:40", *tiny])
    train_main(["--algo", "ppo_tokens", *common, *env_kwargs, "image_size:16", *tiny, f"env_wrapper:{tokens!r}", TINY_POLICY_PARAM])
    train_main(["--algo", "pvdr", *common, *env_kwargs, "image_size:16", *tiny, "n_candidates:2", "replan_every:2", f"env_wrapper:{planning!r}", TINY_POLICY_PARAM])
    return tmp / "logs"


@pytest.mark.parametrize("algo", ["ppo", "ppo_tokens", "pvdr"])
def test_enjoy_replays_a_train_py_run(runs, algo, capsys):
    # the run's merged env kwargs (image size, variant, goal cache) come from config.yml; -n and --env-kwargs
    # of enjoy still apply on top (a 5-step horizon instead of the run's 12)
    enjoy.main(["--algo", algo, "--env", "reach-v2", "-f", str(runs), "--load-best", "-n", "11", "--env-kwargs", "max_episode_steps:5"])
    out = capsys.readouterr().out
    assert "renders offscreen only" in out  # no window: run as with --no-render
    assert f"Loading {runs / algo / 'reach-v2_1' / 'best_model.zip'}" in out
    assert out.count("Episode Length 5") == 2
    assert "Success rate:" in out


def test_load_run_binds_the_zips_planning_models_and_settings(runs):
    model, env, path = enjoy.load_run("pvdr", "reach-v2", str(runs), load_best=True)
    try:
        planner = env.get_attr("planner", [0])[0]
        assert planner.dynamics is model.dynamics and planner.tokenizer is model.tokenizer
        assert env.get_attr("n_candidates", [0])[0] == model.n_candidates == 2  # the zip's N, not the wrapper's 16
        assert env.observation_space["context_tokens"].shape == (2, 4, 4)  # image_size 16 from config.yml
    finally:
        env.close()
    assert path.endswith("best_model.zip")


def test_train_py_writes_plan_videos_into_the_run_folder(runs):
    # pvdr.yml's PlanVideoCallback has no save_dir: the files land in <run folder>/plan_videos
    assert list((runs / "pvdr" / "reach-v2_1" / "plan_videos").glob("plans_*.gif"))
    config = yaml.safe_load((runs / "pvdr" / "reach-v2_1" / "reach-v2" / "config.yml").read_text())
    assert config["env_kwargs"]["image_size"] == 16


def test_record_agent_pvdr_panel_shows_frame_goal_and_decoded_plan(runs, tmp_path):
    out = tmp_path / "agent.gif"
    result = record_agent.main(["--algo", "pvdr", "-f", str(runs), "--load-best", "--out", str(out), "--scale", "1", "--episodes", "1"])
    # one panel per step, plus the episode's last frame; tiles: frame | goal | plan +1..+3 (l = 3), 16 px
    assert result["frames"] == EPISODE + 1 and result["episodes"] == 1
    assert imageio.imread(out, index=None).shape == (EPISODE + 1, record_agent.LABEL_HEIGHT + 16, 5 * 16, 3)
    # the panels themselves (before gif quantisation): o_t, g and the decoded plan of the wrapper's info
    model, env, _ = enjoy.load_run("pvdr", "reach-v2", str(runs), load_best=True)
    try:
        obs = env.reset()
        info = env.reset_infos[0]
        frames, _ = record_agent.record(model, env, episodes=1, max_steps=1, scale=1)
    finally:
        env.close()
    top = record_agent.LABEL_HEIGHT
    np.testing.assert_array_equal(frames[0][top:, :16], info["frame"])
    np.testing.assert_array_equal(frames[0][top:, 16:32], info["goal"])
    plan = record_agent.decode_plan(model, info["plan_tokens"])
    np.testing.assert_array_equal(frames[0][top:, 32:48], plan[0])
    np.testing.assert_array_equal(frames[0][top:, 64:], plan[2])
    assert obs["context_tokens"].shape == (1, 2, 4, 4)


def test_record_agent_ppo_to_mp4(runs, tmp_path):
    out = tmp_path / "ppo.mp4"
    result = record_agent.main(["--algo", "ppo", "-f", str(runs), "--out", str(out), "-n", "4", "--scale", "1"])
    assert result["frames"] == 4 and out.stat().st_size > 0
    assert imageio.imread(out, index=None).shape[1:3] == (64, 2 * 40)  # 12 + 40 rows, padded to a multiple of 16


def test_enjoy_and_record_errors_are_one_line(tmp_path):
    env = {**os.environ, "MUJOCO_GL": "egl"}
    missing = subprocess.run([sys.executable, "enjoy.py", "--algo", "pvdr", "--env", "reach-v2", "-f", str(tmp_path)], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "train one with: python train.py --algo pvdr" in missing.stderr
    with pytest.raises(SystemExit):
        record_agent.main(["--algo", "ppo", "-f", str(tmp_path), "--out", str(tmp_path / "x.avi")])


def test_policy_probe_plays_the_mean_and_sampled_actions_on_the_same_variants(runs, tmp_path):
    """scripts/policy_probe.py: both modes play the run's env; the hand starts equally far from the goal in both."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("policy_probe", ROOT / "scripts" / "policy_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    out = tmp_path / "probe.json"
    result = probe.main(["--algo", "pvdr", "-f", str(runs), "--episodes", "2", "--json", str(out), "--z-samples", "4"])
    det, sto = result["deterministic"], result["stochastic"]
    assert 0.0 < det["z_spread"] <= 1.0  # the policy reads z: other prior draws move its mean
    assert det["episode_length"] == sto["episode_length"] == EPISODE  # variant 0, no success in 32 steps of training
    assert det["hand_goal_start"] == pytest.approx(sto["hand_goal_start"]) and det["hand_goal_start"] > 0
    assert 0.0 <= det["mean_action_abs"] <= 1.0 and det["hand_goal_end"] != det["hand_goal_start"]
    assert json.loads(out.read_text())["stochastic"] == sto


def test_update_probe_measures_one_update_on_its_own_and_on_unseen_samples(runs):
    """scripts/update_probe.py: every setting starts from the run's weights and moves the policy; nothing is written
    into the run's folder (its tensorboard scalars feed the experiment tables)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_probe", ROOT / "scripts" / "update_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    before = sorted(p.relative_to(runs) for p in runs.rglob("*"))
    result = probe.main(["-f", str(runs)])
    assert sorted(p.relative_to(runs) for p in runs.rglob("*")) == before
    assert result["samples_per_rollout"] == 16  # the run's n_steps x one env
    settings = ("as trained", "vf_coef 0", "act_coef 0", "act_coef 0, vf_coef 0", "z* zeroed", "lr / 10", "1 epoch")
    for name in settings:
        assert result[name]["approx_kl_A"] > 0 and result[name]["approx_kl_B"] >= 0, name
    # the same rollouts and starting weights: a tenth of the learning rate moves the fitted samples less
    assert result["lr / 10"]["approx_kl_A"] < result["as trained"]["approx_kl_A"]
