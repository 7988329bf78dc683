"""sb3_pvdr.planning.goal_probe measures what it claims: synthetic latents with a known answer."""

import importlib.util
from pathlib import Path

import numpy as np

from sb3_pvdr.planning.goal_probe import goal_information, groups_of, implied_motion_cosine, rank_correlation, ridge_probe


def _episodes(n_episodes: int = 24, per_episode: int = 10) -> np.ndarray:
    return np.repeat(np.arange(n_episodes), per_episode)


def test_ridge_probe_finds_goal_information_only_where_there_is_some():
    rng = np.random.default_rng(0)
    groups = _episodes()
    goal = np.repeat(rng.normal(size=(24, 3)), 10, axis=0)  # one goal per episode (variant)
    mixing = rng.normal(size=(3, 4, 4, 2))
    informative = np.einsum("nc,chwd->nhwd", goal, mixing) + 0.3 * rng.normal(size=(len(goal), 4, 4, 2))
    r2_informative, pred = ridge_probe(informative, goal, groups, folds=4)
    r2_noise, _ = ridge_probe(rng.normal(size=informative.shape), goal, groups, folds=4)
    assert r2_informative > 0.8 and pred.shape == goal.shape
    assert r2_noise < 0.1  # held out by episode: a latent without the goal cannot predict an unseen variant's goal


def _motion_data(rng: np.random.Generator) -> dict[str, np.ndarray]:
    groups = _episodes()
    motion = rng.normal(size=(len(groups), 3))
    mixing = rng.normal(size=(3, 32))
    to_goal = np.array([0.0, 3.0, 0.0]) + rng.normal(size=(len(groups), 3))  # goals all ahead, spread
    return {
        "episode": groups, "motion": motion, "to_goal": to_goal, "goal": to_goal,
        "posterior": motion @ mixing + 0.1 * rng.normal(size=(len(groups), 32)),  # encodes its own window's motion
        "toward": to_goal @ mixing,  # a latent whose motion heads for each goal
        "blind": np.array([0.0, 1.0, 0.0]) @ mixing + 0.5 * rng.normal(size=(len(groups), 32)),  # always "ahead"
    }


def test_implied_motion_cosine_centres_away_a_shared_goal_direction():
    data = _motion_data(np.random.default_rng(1))
    raw, centred = implied_motion_cosine(data, "toward", folds=4)
    assert raw > 0.9 and centred > 0.8
    raw_blind, centred_blind = implied_motion_cosine(data, "blind", folds=4)
    assert raw_blind > 0.5  # "always ahead" looks goal-directed ...
    assert abs(centred_blind) < 0.2  # ... until the shared direction is taken out


def test_goal_information_ranks_latents_by_what_they_know():
    data = _motion_data(np.random.default_rng(2))
    data.update(oracle=data["toward"], prior_mean=data["blind"], **{"plan@4": data["blind"]})
    report = goal_information(data, candidates=(4,), folds=4)
    probes = report["probes"]
    assert set(probes) == {"oracle", "plan@4", "prior_mean", "posterior"} and report["windows"] == 240
    assert probes["oracle"]["goal"] > 0.9 > 0.1 > probes["plan@4"]["goal"]
    assert probes["posterior"]["motion"] > 0.9 and "motion" not in probes["oracle"]


def test_rank_correlation_is_spearman():
    a = np.array([0.1, 0.5, 0.2, 0.9])
    assert rank_correlation(a, a**3) == 1.0  # monotone: same ranks
    assert rank_correlation(a, -a) == -1.0
    assert abs(rank_correlation(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])) - 0.8) < 1e-9
    assert np.isnan(rank_correlation(a, np.ones(4)))


def test_a_latent_that_only_names_the_variant_scores_on_repeated_variants_but_not_on_held_out_ones():
    """Episodes repeat MT1's variants: a latent that shows which variant it is (the object's place) but not the goal
    predicts the goal of a held-out *episode* of a seen variant, not of a held-out *variant*."""
    rng = np.random.default_rng(3)
    n_variants, episodes = 8, 48
    variant_goal = rng.normal(size=(n_variants, 3))
    variant = np.repeat(rng.integers(0, n_variants, episodes), 5)  # 5 windows per episode
    data = {"episode": np.repeat(np.arange(episodes), 5), "variant": variant, "goal": variant_goal[variant]}
    names_variant = np.eye(n_variants)[variant] + 0.01 * rng.normal(size=(len(variant), n_variants))
    by_episode, _ = ridge_probe(names_variant, data["goal"], data["episode"], folds=4)
    by_variant, _ = ridge_probe(names_variant, data["goal"], groups_of(data), folds=4)
    assert by_episode > 0.9 and by_variant < 0.1
    assert groups_of({"episode": data["episode"]}) is data["episode"]


def test_act_target_probe_windows_follow_the_models_frame_step():
    """scripts/act_target_probe.py: with k = 2 the future is every 2nd frame and the window mean spans l * k actions."""
    import importlib.util
    import os
    from pathlib import Path

    os.environ.setdefault("MUJOCO_GL", "egl")
    from test_planning import tiny_models

    spec = importlib.util.spec_from_file_location("act_target_probe", Path(__file__).parent.parent / "scripts" / "act_target_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    tokenizer, _ = tiny_models()
    m, l, k, steps = 2, 2, 2, 8  # noqa: E741
    data = probe.episodes("reach-v2", 1, steps, 0, False, tokenizer, m, l, k)
    n = steps - l * k + 1
    assert len(data["action"]) == n and data["future"].shape[1] == l and data["context"].shape[1] == m
    for t in range(n):
        assert np.allclose(data["window_mean"][t], data["action"][t : t + l * k].mean(0)) if t + l * k <= n else True
        if t + k < n:  # o_{t+k}, the first future frame of window t, is the newest context frame of window t + k
            assert np.array_equal(data["future"][t][0], data["context"][t + k][-1])
        if t >= k:  # and the context steps back k frames
            assert np.array_equal(data["context"][t][0], data["context"][t - k][-1])
    assert np.array_equal(data["context"][0][0], data["context"][0][1])  # o_0 stands in before the start


def test_act_target_probe_fits_on_frames_and_through_the_frozen_codebook(tmp_path):
    """scripts/act_target_probe.py --inputs frames --codebook: both inputs fit, and the codebook changes the network."""
    import importlib.util
    import os
    from pathlib import Path

    os.environ.setdefault("MUJOCO_GL", "egl")
    from test_planning import tiny_models

    spec = importlib.util.spec_from_file_location("act_target_probe", Path(__file__).parent.parent / "scripts" / "act_target_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    tokenizer, dynamics = tiny_models(l=2)
    tokenizer.save(tmp_path / "tok.pt")
    data = probe.episodes("reach-v2", 1, 8, 0, False, tokenizer, 2, 2)
    data["z"] = probe.posterior(dynamics, data)
    results = {}
    for inputs in ("z", "frames"):
        for codebook in (None, str(tmp_path / "tok.pt")):
            results[inputs, codebook] = probe.fit("cnn", "window_mean", data, {"random": data}, 3, 0, inputs, codebook, 16)
    for result in results.values():
        assert set(result) >= {"seconds", "random/r2_xyz_window_mean", "random/cos_xyz_action"}
        assert np.isfinite(result["random/r2_xyz_window_mean"])
    for inputs in ("z", "frames"):  # same seed, same data: only the embedding differs
        assert results[inputs, None]["random/r2_xyz_window_mean"] != results[inputs, str(tmp_path / "tok.pt")]["random/r2_xyz_window_mean"]


def test_reward_probe_pixel_distance_rises_with_the_hands_distance_to_the_goal():
    """scripts/reward_probe.py on 3 short episodes (random, fixed push, expert): the env's pixel reward tracks the hand."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("reward_probe", Path(__file__).parent.parent / "scripts" / "reward_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    rows = probe.collect(3, steps=30)
    assert rows.shape == (90, 3) and set(rows[:, 0]) == {0.0, 1.0, 2.0}
    result = probe.summarise(rows)
    assert result["spearman_all"] > 0.5 and set(result["per_mode"]) == set(probe.MODES)
    assert sum(n for n, _ in result["bands"].values()) == 90


def _motion_probe():
    spec = importlib.util.spec_from_file_location("motion_probe", Path(__file__).parent.parent / "scripts" / "motion_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_motion_probe_explained_energy_separates_informative_features_from_noise():
    """scripts/motion_probe.py: a constant motion is explained by the mean alone, a feature-driven one only by the
    features that drive it, never by noise features."""
    probe = _motion_probe()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 5))
    constant = np.tile([0.1, 0.0, -0.05], (120, 1))
    assert probe.explained_energy(None, constant) > 0.99
    driven = features[:, :3] * 0.05  # zero-mean motion set by the features
    assert probe.explained_energy(None, driven) < 0.05
    assert probe.explained_energy(features, driven, alpha=0.01) > 0.9
    assert probe.explained_energy(rng.normal(size=(120, 5)), driven, alpha=0.01) < 0.1


def test_motion_probe_reads_the_experts_hand_motion_after_the_context():
    """One reach variant: contexts at both sizes, the 39-d state, and the hand's move over the next l expert steps."""
    probe = _motion_probe()
    clip = probe.expert_motion("reach-v2", 100_000, m=2, l=3, start=0, sizes=(16, 32))
    assert clip["pixels_16"].shape == (2, 16, 16, 3) and clip["pixels_32"].shape == (2, 32, 32, 3)
    assert clip["state"].shape == (39,) and clip["motion"].shape == (3,)
    assert 0.0 < np.linalg.norm(clip["motion"]) < 0.2  # the scripted expert moves the hand, a few cm in 3 steps
