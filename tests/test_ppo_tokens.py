"""The paper's PPO baseline on tokens (--algo ppo_tokens): wrapper spaces, policy, save/load, registry names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from test_planning import IMAGE, FakeImageGoalEnv, tiny_models

from sb3_pvdr import pretrained
from sb3_pvdr.common.errors import CheckpointError, ConfigError
from sb3_pvdr.ppo_tokens import TokenGoalFeaturesExtractor, TokenGoalWrapper, TokenPPO
from sb3_pvdr.zoo import register_algorithms

TINY_POLICY = dict(features_extractor_kwargs=dict(dim=16, depth=1, heads=2, ff_dim=32))


def test_wrapper_spaces_pass_check_env_and_hold_the_right_tokens():
    tokenizer, _ = tiny_models()
    env = TokenGoalWrapper(FakeImageGoalEnv(), tokenizer, m=2)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    h, w = tokenizer.grid_size
    assert obs["context_tokens"].shape == (2, h, w) and obs["goal_tokens"].shape == (1, h, w)
    first = tokenizer.encode(env.unwrapped._render(env.unwrapped.pos)[None])[0].numpy()
    np.testing.assert_array_equal(obs["context_tokens"], np.stack([first, first]))
    np.testing.assert_array_equal(obs["goal_tokens"][0], tokenizer.encode(env.unwrapped._render(env.unwrapped.goal_pos)[None])[0].numpy())
    obs2, *_ = env.step(np.ones(2, dtype=np.float32))
    np.testing.assert_array_equal(obs2["context_tokens"][0], first)  # the window moved by one frame


def test_wrapper_refuses_wrong_image_size():
    tokenizer, _ = tiny_models()
    with pytest.raises(ConfigError, match="tokenizer expects"):
        TokenGoalWrapper(FakeImageGoalEnv(size=2 * IMAGE), tokenizer)


def test_extractor_sees_the_goal():
    tokenizer, _ = tiny_models()
    env = TokenGoalWrapper(FakeImageGoalEnv(), tokenizer)
    torch.manual_seed(0)
    extractor = TokenGoalFeaturesExtractor(env.observation_space, dim=16, depth=1, heads=2, ff_dim=32)
    obs, _ = env.reset(seed=0)
    batch = {k: torch.as_tensor(v[None]).float() for k, v in obs.items()}
    other = dict(batch, goal_tokens=(batch["goal_tokens"] + 1) % tokenizer.codebook_size)
    assert extractor(batch).shape == (1, 3 * 16)
    assert not torch.allclose(extractor(batch), extractor(other))


@pytest.mark.parametrize("arch", ["transformer", "cnn"])
def test_token_ppo_learns_saves_and_loads_identical_actions(tmp_path, arch):
    tokenizer, _ = tiny_models()
    env = make_vec_env(lambda: TokenGoalWrapper(FakeImageGoalEnv(max_steps=10), tokenizer), n_envs=1, seed=0)
    policy_kwargs = dict(features_extractor_kwargs=dict(TINY_POLICY["features_extractor_kwargs"], arch=arch, cnn_features=32))
    model = TokenPPO("TokenGoalPolicy", env, n_steps=16, batch_size=8, n_epochs=1, seed=0, policy_kwargs=policy_kwargs)
    model.learn(32)
    assert model.num_timesteps == 32
    model.save(tmp_path / "m.zip")
    loaded = TokenPPO.load(tmp_path / "m.zip", env=env)
    obs = env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert register_algorithms(include_pvdr=False)["ppo_tokens"] is TokenPPO


def test_registry_resolves_names_and_paths(tmp_path):
    folder = tmp_path / "toy-16"
    folder.mkdir()
    for part in pretrained.PARTS:
        (folder / f"{part}.pt").write_bytes(b"x")
    (folder / "card.json").write_text('{"steps": 1}')
    (tmp_path / "incomplete").mkdir()
    assert list(pretrained.available(tmp_path)) == ["toy-16"]
    assert pretrained.resolve("toy-16", "dynamics", root=tmp_path) == str(folder / "dynamics.pt")
    assert pretrained.resolve("~/x.pt", "tokenizer", root=tmp_path).endswith("/x.pt")
    with pytest.raises(CheckpointError, match="shipped: toy-16"):
        pretrained.get("nope", root=tmp_path)


def test_add_ships_weights_only_and_refuses_a_mismatch(tmp_path):
    from sb3_pvdr.dynamics import DynamicsConfig, VisualDynamicsModel
    from sb3_pvdr.pretrained.__main__ import main as pretrained_main

    tokenizer, dynamics = tiny_models()
    tokenizer.save(tmp_path / "tok.pt")
    dynamics.save(tmp_path / "dyn.pt")
    root = tmp_path / "shipped"
    root.mkdir()
    assert pretrained_main(["add", "toy-16", "--tokenizer", str(tmp_path / "tok.pt"), "--dynamics", str(tmp_path / "dyn.pt"), "--root", str(root)]) == 0
    model = pretrained.get("toy-16", root=root)
    assert model.card["codebook_size"] == tokenizer.codebook_size
    # readable by every user of the install (the staging folder starts private)
    assert model.folder.stat().st_mode & 0o777 == 0o755
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in model.folder.iterdir())
    loaded = VisualDynamicsModel.load(model.path("dynamics"))
    for key, value in dynamics.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    other = VisualDynamicsModel(DynamicsConfig(**{**dynamics.config.to_dict(), "codebook_size": 32}))
    other.save(tmp_path / "other.pt")
    with pytest.raises(SystemExit):
        pretrained_main(["add", "bad", "--tokenizer", str(tmp_path / "tok.pt"), "--dynamics", str(tmp_path / "other.pt"), "--root", str(root)])
    assert sorted(p.name for p in root.iterdir()) == ["toy-16"]  # nothing written for the refused one
    # a second model on the same tokens shares the first one's tokenizer file instead of copying it
    assert pretrained_main(["add", "toy-16-b", "--tokenizer", "toy-16", "--dynamics", str(tmp_path / "dyn.pt"),
                            "--root", str(root)]) == 0
    shared = pretrained.get("toy-16-b", root=root)
    assert not (shared.folder / "tokenizer.pt").exists() and shared.card["tokenizer_of"] == "toy-16"
    assert pretrained.resolve("toy-16-b", "tokenizer", root=root) == str(model.path("tokenizer"))
    with pytest.raises(SystemExit):
        pretrained_main(["add", "toy-16", "--tokenizer", "toy-16", "--dynamics", str(tmp_path / "dyn.pt"),
                         "--root", str(root), "--overwrite"])


@pytest.mark.parametrize("name", sorted(pretrained.available()))
def test_every_shipped_model_loads_fits_its_tokenizer_and_says_how_it_was_made(name):
    from sb3_pvdr.dynamics import VisualDynamicsModel
    from sb3_pvdr.tokenizer import VQTokenizer

    model = pretrained.get(name)
    VisualDynamicsModel.load(model.path("dynamics")).check_tokenizer(VQTokenizer.load(model.path("tokenizer")))
    assert model.card["command"] and model.card["evaluate"] and "reach-v2" in model.card["gates_forward_prior"]
