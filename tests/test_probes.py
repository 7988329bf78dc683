"""The diagnostic probes in scripts/ measure what they claim (synthetic data with a known answer)."""

import importlib.util
from pathlib import Path

import numpy as np


def _load(name: str):
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_goal_probe_finds_goal_information_only_where_there_is_some():
    probe = _load("z_goal_probe")
    rng = np.random.default_rng(0)
    n_episodes, per_episode = 24, 10
    groups = np.repeat(np.arange(n_episodes), per_episode)
    goal = np.repeat(rng.normal(size=(n_episodes, 3)), per_episode, axis=0)  # one goal per episode (variant)
    mixing = rng.normal(size=(3, 4, 4, 2))
    informative = np.einsum("nc,chwd->nhwd", goal, mixing) + 0.3 * rng.normal(size=(len(goal), 4, 4, 2))
    noise = rng.normal(size=informative.shape)
    r2_informative, pred = probe.probe(informative, goal, groups, folds=4)
    r2_noise, _ = probe.probe(noise, goal, groups, folds=4)
    assert r2_informative > 0.8 and pred.shape == goal.shape
    assert r2_noise < 0.1  # held out by episode: a latent without the goal cannot predict an unseen variant's goal


def test_implied_motion_cosine_centres_away_a_shared_goal_direction():
    probe = _load("z_goal_probe")
    rng = np.random.default_rng(1)
    n_episodes, per_episode = 24, 10
    groups = np.repeat(np.arange(n_episodes), per_episode)
    motion = rng.normal(size=(len(groups), 3))
    mixing = rng.normal(size=(3, 32))
    posterior = motion @ mixing + 0.1 * rng.normal(size=(len(groups), 32))  # encodes its own window's motion
    to_goal = np.array([0.0, 1.0, 0.0]) * 3 + rng.normal(size=(len(groups), 3))  # goals all ahead, spread
    data = {"posterior": posterior, "motion": motion, "to_goal": to_goal, "episode": groups,
            "toward": to_goal @ mixing, "blind": np.broadcast_to(np.array([0, 1.0, 0]) @ mixing, posterior.shape)
            + 0.5 * rng.normal(size=posterior.shape)}
    raw, centred = probe.implied_motion_cosine(data, "toward", folds=4)
    assert raw > 0.9 and centred > 0.8  # a latent whose motion heads for each goal
    raw_blind, centred_blind = probe.implied_motion_cosine(data, "blind", folds=4)
    assert raw_blind > 0.5  # "always ahead" looks goal-directed ...
    assert abs(centred_blind) < 0.2  # ... until the shared direction is taken out
