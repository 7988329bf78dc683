"""python -m sb3_pvdr.visualize tsne (paper Fig. 6) on a tiny PVDR model."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image
from test_pvdr import TINY_POLICY
from test_planning import tiny_models

from sb3_pvdr.envs import make_metaworld_env
from sb3_pvdr.planning import PlanningWrapper
from sb3_pvdr.pvdr import PVDR
from sb3_pvdr.visualize import action_colors, cmyk_to_rgb, main


def test_cmyk_colours_follow_the_papers_scaling():
    np.testing.assert_allclose(cmyk_to_rgb(np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0.5, 0, 0, 0.5]])),
                               [[1, 1, 1], [0, 1, 1], [0, 0, 0], [0.25, 0.5, 0.5]])  # fmt: skip
    # actions in [-1, 1] scaled to [0, 1]; a 2-d action fills C and M only (Y = K = 0)
    np.testing.assert_allclose(action_colors(np.array([[-1, -1, -1, -1], [1, -1, -1, -1], [3, 0, 0, 1]])), [[1, 1, 1], [0, 1, 1], [0, 0, 0]])
    np.testing.assert_allclose(action_colors(np.array([[1.0, -1.0]])), [[0, 1, 1]])


def test_tsne_figure_of_prior_samples_coloured_by_actions(tmp_path):
    tokenizer, dynamics = tiny_models()
    goals = tmp_path / "goals"
    env = PlanningWrapper(make_metaworld_env("reach-v2", image_size=16, variant=0, goal_cache_dir=goals), tokenizer, dynamics, n_candidates=2)
    run = tmp_path / "logs" / "pvdr" / "reach-v2_1"
    # PyTorch's default head init (init_heads=False) stands in for a trained policy: actions that vary with z
    policy_kwargs = dict(TINY_POLICY, init_heads=False)
    PVDR("PVDRPolicy", env, n_steps=8, batch_size=8, policy_kwargs=policy_kwargs, seed=0).save(run / "best_model.zip")
    env.close()
    # the run's env kwargs come from its config.yml, as train.py writes it
    (run / "reach-v2").mkdir()
    (run / "reach-v2" / "config.yml").write_text(yaml.safe_dump({"env_kwargs": {"image_size": 16, "variant": 0, "goal_cache_dir": str(goals)}}))
    out = tmp_path / "fig6.png"
    result = main(["tsne", "--model", str(run / "best_model.zip"), "--env", "reach-v2", "--out", str(out), "--samples", "64", "--size", "300"])
    with Image.open(out) as image:
        assert image.size == (300, 300)
        pixels = np.asarray(image.convert("RGB"))
    assert result["points"].shape == (64, 2) and np.isfinite(result["points"]).all()
    assert result["actions"].shape == (64, 4) and np.abs(result["actions"]).max() <= 1
    assert np.unique(result["colors"].round(3), axis=0).shape[0] > 32  # different z, different actions, different colours
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 32
    again = main(["tsne", "--model", str(run / "best_model.zip"), "--env", "reach-v2", "--out", str(tmp_path / "again.png"), "--samples", "64",
                  "--size", "300"])  # fmt: skip
    np.testing.assert_array_equal(again["actions"], result["actions"])  # --seed fixes the context, samples and t-SNE
    with pytest.raises(SystemExit):
        main(["tsne", "--model", str(tmp_path / "missing.zip"), "--out", str(out)])
