"""Planning wrapper (eq. (2)) and PVDR reward relabelling (eq. (6)) on tiny models and a fake image-goal env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.env_checker import check_env

from sb3_pvdr.common.errors import ConfigError, DataError
from sb3_pvdr.dynamics import DynamicsConfig, VisualDynamicsModel
from sb3_pvdr.planning import (
    Planner,
    PlanningWrapper,
    blur_frames,
    context_indices,
    frame_distance,
    future_counts,
    future_window,
    plan_goal_distance,
    planning_term,
    pvdr_rewards,
)
from sb3_pvdr.tokenizer.config import TokenizerConfig
from sb3_pvdr.tokenizer.model import VQTokenizer

IMAGE = 16


# ---------------------------------------------------------------------------------------------- fixtures
def tiny_models(seed: int = 0, l: int = 3, prior_goal: bool = False) -> tuple[VQTokenizer, VisualDynamicsModel]:  # noqa: E741
    """A 16x16 -> 4x4 tokenizer with 16 codes and a matching one-layer dynamics model (untrained; ``prior_goal``:
    its prior reads the goal)."""
    torch.manual_seed(seed)
    tok_cfg = TokenizerConfig.profile(
        "cpu", image_size=IMAGE, channels=8, channel_mult=(1, 2, 2), z_channels=8, code_dim=8, codebook_size=16,
        kmeans_init=False,
    )
    tokenizer = VQTokenizer(tok_cfg).eval()
    dyn_cfg = DynamicsConfig(
        codebook_size=16, grid=tokenizer.grid_size, m=2, l=l, z_dim=4, dim=16, ff_dim=32, heads=2,
        depth_encoder=1, depth_prior=1, depth_decoder=1, window=(2, 2), prior_goal=prior_goal,
    )
    return tokenizer, VisualDynamicsModel(dyn_cfg).eval()


class FakeImageGoalEnv(gym.Env):
    """Image-goal env like ``sb3_pvdr.envs``: a bright square moved by the action; reward -L1(o, g) (+ success)."""

    def __init__(self, size: int = IMAGE, max_steps: int = 20, success_reward: float = 60.0) -> None:
        self.size, self.max_steps, self.success_reward = size, max_steps, success_reward
        image = spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.observation_space = spaces.Dict({"observation": image, "desired_goal": image})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.goal_pos = np.array([size - 4, size - 4])

    def _render(self, pos: np.ndarray) -> np.ndarray:
        frame = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        r, c = np.clip(pos, 0, self.size - 4).astype(int)
        frame[r : r + 4, c : c + 4] = 255
        return frame

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self._render(self.pos), "desired_goal": self._render(self.goal_pos)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = np.array([0.0, 0.0]), 0
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.pos = np.clip(self.pos + 3 * np.asarray(action), 0, self.size - 4)
        self.t += 1
        obs = self._obs()
        success = bool(np.abs(self.pos - self.goal_pos).max() < 1)
        reward = -float(frame_distance(obs["observation"], obs["desired_goal"])) + (self.success_reward if success else 0)
        return obs, reward, success, self.t >= self.max_steps, {"is_success": success}


def make_wrapped(n_candidates: int = 4, replan_every: int = 1, **kwargs) -> PlanningWrapper:
    tokenizer, dynamics = tiny_models()
    return PlanningWrapper(FakeImageGoalEnv(**kwargs), tokenizer, dynamics, n_candidates=n_candidates, replan_every=replan_every, seed=0)


# ---------------------------------------------------------------------------------------------- relabelling
def test_future_counts_cut_at_episode_and_rollout_end():
    dones = np.array([0, 0, 1, 0, 0], dtype=bool)[:, None]
    # done at t=2: step 2 sees only its terminal frame; steps 3, 4 run into the rollout end
    assert future_counts(dones, 3).ravel().tolist() == [3, 2, 1, 2, 1]


def test_future_window_never_crosses_an_episode_end():
    dones = np.array([0, 0, 1, 0, 0], dtype=bool)[:, None]
    next_ids = np.arange(5)[:, None]  # next_ids[t] names o_{t+1}
    window, mask = future_window(next_ids, dones, 3)
    assert window[:, 0].tolist() == [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 4], [4, 4, 4]]
    assert mask.ravel().tolist() == [True, False, False, False, False]


def test_future_window_with_a_frame_step_takes_every_kth_next_frame():
    dones = np.array([0, 0, 0, 0, 0, 1, 0], dtype=bool)[:, None]
    next_ids = np.arange(7)[:, None]  # next_ids[t] names o_{t+1}
    window, mask = future_window(next_ids, dones, 2, step=2)  # o_{t+2}, o_{t+4}
    assert window[:4, 0].tolist() == [[1, 3], [2, 4], [3, 5], [4, 5]]
    assert mask.ravel().tolist() == [True, True, True, False, False, False, False]
    with pytest.raises(DataError):
        future_window(next_ids, dones, 2, step=0)


def test_pvdr_rewards_by_hand_across_an_episode_end():
    # l = 3; one env; the episode ends at step 2 (success: env reward 60 - 0.1), a new one starts at step 3
    dones = np.array([0, 0, 1, 0, 0], dtype=bool)[:, None]
    rewards = np.array([-0.4, -0.3, 59.9, -0.5, -0.45], dtype=np.float32)[:, None]
    # plan_errors[t][k] = distance of o_{t+1} to the frame the plan of step t-k predicted for it
    plan_errors = np.array(
        [
            [0.10, np.nan, np.nan],  # o_1 vs plan_0[0]; no older plans in this episode
            [0.20, 0.30, np.nan],  # o_2 vs plan_1[0], plan_0[1]
            [0.40, 0.50, 0.60],  # o_3 (terminal) vs plan_2[0], plan_1[1], plan_0[2]
            [0.70, np.nan, np.nan],  # new episode: o_4 vs plan_3[0]
            [0.80, 0.90, np.nan],  # o_5 vs plan_4[0], plan_3[1]
        ],
        dtype=np.float32,
    )[:, None]
    term = planning_term(plan_errors, dones).ravel()
    expected_term = [
        (0.10 + 0.30 + 0.60) / 3,  # step 0: o_1, o_2, o_3 vs plan_0
        (0.20 + 0.50) / 2,  # step 1: o_2, o_3 (episode ends after o_3)
        0.40,  # step 2: only the terminal frame
        (0.70 + 0.90) / 2,  # step 3: o_4, o_5 (rollout ends)
        0.80,  # step 4: o_5 only
    ]
    np.testing.assert_allclose(term, expected_term, rtol=1e-6)
    relabelled = pvdr_rewards(rewards, plan_errors, dones, lambda_3=2.0).ravel()
    np.testing.assert_allclose(relabelled, rewards.ravel() - 2.0 * np.array(expected_term), rtol=1e-6)
    # lambda_3 = 0 gives back the env rewards
    np.testing.assert_array_equal(pvdr_rewards(rewards, plan_errors, dones, 0.0), rewards)


def test_frame_distance_matches_uint8_and_float():
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    b = np.full((4, 4, 3), 51, dtype=np.uint8)
    assert frame_distance(a, b) == pytest.approx(0.2)
    assert frame_distance(a.astype(np.float32), b / 255.0) == pytest.approx(0.2)


# ---------------------------------------------------------------------------------------------- planner
def test_planner_picks_the_candidate_closest_to_the_goal():
    tokenizer, dynamics = tiny_models()
    planner = Planner(tokenizer, dynamics)
    context = torch.randint(0, 16, (2, 4, 4))
    goal = torch.randint(0, 256, (IMAGE, IMAGE, 3), dtype=torch.uint8)
    result = planner.plan(context, goal, n_candidates=6, generator=torch.Generator().manual_seed(0))
    assert result.distances.shape == (6,)
    assert result.index == int(result.distances.argmin())
    assert result.tokens.shape == (3, 4, 4) and result.frames.shape == (3, IMAGE, IMAGE, 3)
    # the chosen plan is what the decoder generates from z*, and its distance is the smallest
    regenerated = dynamics.generate(context[None], result.z_star[None])[0]
    torch.testing.assert_close(regenerated, result.tokens)
    frames = planner.decode_plans(regenerated[None])
    assert plan_goal_distance(frames, goal).item() == pytest.approx(result.distances.min().item(), abs=1e-6)


def test_plan_goal_distance_is_mean_over_frames_and_pixels():
    frames = torch.zeros(1, 2, 2, 2, 3)
    frames[0, 1] = 1.0  # second frame is white
    goal = torch.full((2, 2, 3), 255, dtype=torch.uint8)
    assert plan_goal_distance(frames, goal).item() == pytest.approx(0.5)


def test_plan_goal_distance_last_reads_the_last_frame_only():
    frames = torch.zeros(2, 2, 2, 2, 3)
    frames[0, 1] = 1.0  # plan 0 ends white (at the goal), plan 1 is white before and black at the end
    frames[1, 0] = 1.0
    goal = torch.full((2, 2, 3), 255, dtype=torch.uint8)
    assert plan_goal_distance(frames, goal).tolist() == pytest.approx([0.5, 0.5])  # the mean cannot tell them apart
    assert plan_goal_distance(frames, goal, "last").tolist() == pytest.approx([0.0, 1.0])
    with pytest.raises(ConfigError, match="plan distance"):
        plan_goal_distance(frames, goal, "first")


def test_planner_with_last_frame_distance_picks_by_the_last_frame():
    tokenizer, dynamics = tiny_models()
    context = torch.randint(0, 16, (2, 4, 4))
    goal = torch.randint(0, 256, (IMAGE, IMAGE, 3), dtype=torch.uint8)
    planner = Planner(tokenizer, dynamics, distance="last")
    result = planner.plan(context, goal, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = _candidates(dynamics, context, 6)
        frames = planner.decode_plans(dynamics.eval().generate(context[None], z))
    last = (frames[:, -1] - goal.float() / 255).abs().flatten(1).mean(1)
    torch.testing.assert_close(result.distances, last)
    assert result.index == int(last.argmin()) and torch.equal(result.z_star, z[result.index])
    torch.testing.assert_close(result.frames, frames[result.index])  # the chosen plan's l frames, for eq. (6)
    blurred = Planner(tokenizer, dynamics, distance="last_blurred").plan(context, goal, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(blurred.distances, plan_goal_distance(frames, goal, "last_blurred"))
    torch.testing.assert_close(blurred.frames, frames[blurred.index])
    with pytest.raises(ConfigError, match="plan_distance must be one of"):
        Planner(tokenizer, dynamics, distance="first")
    with pytest.raises(ConfigError, match="needs plan_metric 'pixels'"):
        Planner(tokenizer, dynamics, metric="codes", distance="last_blurred")


def test_context_indices_step_back_k_frames_and_clamp_to_the_first():
    assert context_indices(0, 2) == [0, 0]  # only o_0 exists: repeated
    assert context_indices(7, 2) == [6, 7]
    assert context_indices(7, 3, step=3) == [1, 4, 7]
    assert context_indices(4, 3, step=3) == [0, 1, 4]


def test_last_blurred_distance_ranks_a_near_miss_above_a_far_one():
    """Two plans whose last frames put a 2 x 2 px "hand" beside the goal's (no pixel in common) or far from it: the
    plain L1 cannot tell them apart, the distance on 8 x 8 cells (4 x 4 px each at 32 px) can."""
    frames = torch.zeros(2, 3, 32, 32, 3)
    frames[0, -1, 0:2, 2:4] = 1.0  # plan 0 ends beside the goal's hand
    frames[1, -1, 0:2, 20:22] = 1.0  # plan 1 ends far from it
    frames[1, 0, 0:2, 0:2] = 1.0  # ...but passes the goal early: the last frame is what counts
    goal = torch.zeros(32, 32, 3, dtype=torch.uint8)
    goal[0:2, 0:2] = 255
    last = plan_goal_distance(frames, goal, "last")
    assert last[0] == pytest.approx(last[1].item())
    blurred = plan_goal_distance(frames, goal, "last_blurred")
    assert blurred[0] == pytest.approx(0.0) and blurred[1] > 0
    assert blur_frames(frames).shape == (2, 3, 8, 8, 3)
    torch.testing.assert_close(blur_frames(frames)[1, -1, 0, 5], frames[1, -1, :4, 20:24].mean((0, 1)))


def _candidates(dynamics, context, n):
    """The N latents Planner.plan samples with generator seed 0."""
    prior = dynamics.eval().prior(context[None].long())
    eps = torch.randn((n, *dynamics.z_shape), generator=torch.Generator().manual_seed(0))
    return prior.mean + prior.std * eps


# ---------------------------------------------------------------------------------------------- wrapper
def test_wrapper_passes_check_env():
    env = make_wrapped()
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=1)
    assert obs["context_tokens"].shape == (2, 4, 4) and obs["context_tokens"].dtype == np.int64
    assert obs["z_star"].shape == (4, 4, 4) and obs["z_star"].dtype == np.float32
    assert info["plan_tokens"].shape == (3, 4, 4)


def test_wrapper_context_and_plan_errors_follow_the_frames():
    env = make_wrapped()
    obs, info = env.reset(seed=0)
    # at reset the single real frame fills the whole context
    assert (obs["context_tokens"][0] == obs["context_tokens"][1]).all()
    plans = [env._plan_frames.copy()]
    frames = [info["frame"]]
    for t in range(4):
        obs, _, _, _, info = env.step(np.array([1.0, 1.0], dtype=np.float32))
        frames.append(info["frame"])
        # the newest context frame is the token grid of the frame just observed
        np.testing.assert_array_equal(obs["context_tokens"][-1], info["next_tokens"])
        np.testing.assert_array_equal(info["next_tokens"], env.planner.tokenizer.encode(info["frame"][None])[0].numpy())
        # plan_errors[k] = d(o_{t+1}, plan of step t-k, frame k); NaN before the episode started
        for k in range(3):
            if t - k < 0:
                assert np.isnan(info["plan_errors"][k])
            else:
                assert info["plan_errors"][k] == pytest.approx(frame_distance(info["frame"], plans[t - k][k]), abs=1e-6)
        plans.append(env._plan_frames.copy())


def test_wrapper_holds_the_plan_between_replans():
    env = make_wrapped(replan_every=2)
    obs0, _ = env.reset(seed=0)
    obs1, _, _, _, info1 = env.step(env.action_space.sample())
    np.testing.assert_array_equal(obs0["z_star"], obs1["z_star"])  # held for one step
    assert info1["plan_offset"] == 1
    # the held plan (offset 1) predicts o_2 with its frame 1 and o_3 with frame 2; the plan of step 0 does not cover o_3
    _, _, _, _, info2 = env.step(env.action_space.sample())
    assert info2["plan_offset"] == 0 and not np.isnan(info2["plan_errors"][:2]).any()
    assert np.isnan(info2["plan_errors"][2])
    with pytest.raises(ConfigError, match="replan_every"):
        env.configure(replan_every=4)


def test_wrapper_with_a_frame_step_model_spaces_context_and_plan_errors_k_steps_apart():
    """frame_step k = 2, l = 3: context o_{t-2}, o_t; the plan of step s predicts o_{s+2}, o_{s+4}, o_{s+6}."""
    tokenizer, dynamics = tiny_models()
    dynamics.config.frame_step = 2
    env = PlanningWrapper(FakeImageGoalEnv(), tokenizer, dynamics, n_candidates=2, seed=0)
    obs, info = env.reset(seed=0)
    tokens, plans = [obs["context_tokens"][-1]], [env._plan_frames.copy()]  # o_0's tokens
    for t in range(7):
        obs, _, _, _, info = env.step(np.array([1.0, 1.0], dtype=np.float32))
        tokens.append(info["next_tokens"])
        np.testing.assert_array_equal(obs["context_tokens"][1], tokens[-1])
        np.testing.assert_array_equal(obs["context_tokens"][0], tokens[max(0, len(tokens) - 3)])
        errors = info["plan_errors"]  # o_{t+1} against the plan of step t - d
        assert errors.shape == (6,)
        for d in range(6):
            i, off_grid = divmod(d + 1, 2)
            if t - d >= 0 and off_grid == 0:
                assert errors[d] == pytest.approx(frame_distance(info["frame"], plans[t - d][i - 1]), abs=1e-6)
            else:
                assert np.isnan(errors[d])
        plans.append(env._plan_frames.copy())
    env.configure(replan_every=6)  # up to the l * k = 6 steps a plan covers
    with pytest.raises(ConfigError, match="replan_every"):
        env.configure(replan_every=7)
    env.configure(plan_distance="last")
    metric = env.planner.metric
    with pytest.raises(ConfigError, match="needs plan_metric 'pixels'"):  # the pair is checked before either changes
        env.configure(plan_metric="codes", plan_distance="last_blurred")
    assert (env.planner.metric, env.planner.distance) == (metric, "last")
    env.bind_planner(*tiny_models())  # a frame_step 1 model (PVDR's own) into an env built for 2: adopted
    assert (env.frame_step, env.horizon, env.replan_every) == (1, 3, 3)
    assert env.planner.distance == "last"  # binding new models keeps the plan settings
    env.reset(seed=0)
    assert env.step(env.action_space.sample())[4]["plan_errors"].shape == (3,)


def test_wrapper_plans_reproducibly_from_the_seed():
    a, b = make_wrapped(), make_wrapped()
    obs_a, _ = a.reset(seed=3)
    obs_b, _ = b.reset(seed=3)
    np.testing.assert_array_equal(obs_a["z_star"], obs_b["z_star"])


def test_wrapper_random_z_ablation_changes_z():
    env = make_wrapped()
    obs, _ = env.reset(seed=0)
    env.configure(random_z=True)
    obs_random, _ = env.reset(seed=0)
    assert not np.allclose(obs["z_star"], obs_random["z_star"])


def test_wrapper_rejects_mismatched_image_size():
    tokenizer, dynamics = tiny_models()
    with pytest.raises(ConfigError, match="image_size=16"):
        PlanningWrapper(FakeImageGoalEnv(size=24), tokenizer, dynamics)


def test_codes_metric_compares_codebook_embeddings_without_decoding():
    env = make_wrapped()
    env.configure(plan_metric="codes")
    obs, info = env.reset(seed=0)
    codebook = env.planner.tokenizer.codebook.numpy()
    # the goal target and the plan are code grids (h, w, d_code), not pixels
    goal_codes = codebook[env.planner.tokenizer.encode(info["goal"][None])[0].numpy()]
    np.testing.assert_allclose(env._goal_target.numpy(), goal_codes)
    np.testing.assert_allclose(env._plan_frames, codebook[info["plan_tokens"]])
    plan = env._plan_frames.copy()
    _, _, _, _, info = env.step(np.zeros(2, dtype=np.float32))
    expected = np.abs(codebook[info["next_tokens"]] - plan[0]).mean()
    assert info["plan_errors"][0] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="plan metric"):
        env.configure(plan_metric="latent")


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    from sb3_pvdr.common.errors import CheckpointError

    with pytest.raises(CheckpointError, match="tokenizer checkpoint not found"):
        PlanningWrapper(FakeImageGoalEnv(), str(tmp_path / "tok.pt"), str(tmp_path / "dyn.pt"))


def test_oracle_z_is_the_posterior_of_the_experts_real_future():
    from sb3_pvdr.envs import make_metaworld_env

    tokenizer, dynamics = tiny_models()
    env = PlanningWrapper(make_metaworld_env("reach-v2", image_size=IMAGE, seed=0), tokenizer, dynamics, oracle_z=True)
    obs, _ = env.reset(seed=1)
    future = tokenizer.encode(env.unwrapped.expert_future(dynamics.config.l))  # the env was restored: same future
    expected = dynamics.posterior(torch.as_tensor(obs["context_tokens"])[None], future[None]).mode()[0]
    torch.testing.assert_close(torch.as_tensor(obs["z_star"]), expected)
    obs2, *_ = env.step(np.zeros(4, dtype=np.float32))
    assert obs2["context_tokens"].shape == obs["context_tokens"].shape
    with pytest.raises(ConfigError, match="expert_future"):
        PlanningWrapper(FakeImageGoalEnv(), tokenizer, dynamics, oracle_z=True)


def test_expert_future_leaves_the_episode_unchanged():
    from sb3_pvdr.envs import make_metaworld_env

    a, b = (make_metaworld_env("reach-v2", image_size=IMAGE, seed=0) for _ in range(2))
    a.reset(seed=3)
    b.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(3):
        assert a.unwrapped.expert_future(4).shape == (4, IMAGE, IMAGE, 3)
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        (oa, ra, *_), (ob, rb, *_) = a.step(action), b.step(action)
        np.testing.assert_array_equal(oa["observation"], ob["observation"])
        assert ra == rb


def test_prior_temperature_spreads_the_candidates():
    tokenizer, dynamics = tiny_models()
    planner = Planner(tokenizer, dynamics, "codes")
    context = torch.randint(0, 16, (2, *tokenizer.grid_size))
    goal = torch.randint(0, 256, (IMAGE, IMAGE, 3), dtype=torch.uint8)
    prior = dynamics.prior(context[None])
    spread = {}
    for t in (1.0, 3.0):
        plan = planner.plan(context, goal, 1, generator=torch.Generator().manual_seed(0), temperature=t)
        spread[t] = (plan.z_star - prior.mean[0]).abs().mean().item()
    assert spread[3.0] == pytest.approx(3 * spread[1.0], rel=1e-4)
    # temperature 0: z* is the prior's mean
    plan = planner.plan(context, goal, 1, generator=torch.Generator().manual_seed(0), temperature=0.0)
    torch.testing.assert_close(plan.z_star, prior.mean[0])
    with pytest.raises(ConfigError, match="prior_temperature"):
        PlanningWrapper(FakeImageGoalEnv(), tokenizer, dynamics, prior_temperature=-1.0)


def test_bf16_planning_keeps_fp32_outputs_and_nearly_the_same_plans():
    tokenizer, dynamics = tiny_models()
    planner = Planner(tokenizer, dynamics, "codes")
    context = torch.randint(0, 16, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    goal = torch.zeros((IMAGE, IMAGE, 3), dtype=torch.uint8)
    plans = [planner.plan(context, goal, 8, generator=torch.Generator().manual_seed(0), bf16=bf16) for bf16 in (False, True)]
    for plan in plans:
        assert plan.z_star.dtype == torch.float32 and plan.distances.dtype == torch.float32
    # the same prior samples (fp32 noise), decoded in bf16: nearly every token of every candidate agrees
    assert (plans[0].tokens == plans[1].tokens).float().mean() > 0.9
    torch.testing.assert_close(plans[1].distances, plans[0].distances, atol=0.05, rtol=0.05)


def test_bf16_switch_resolves_auto_from_the_hardware_and_rejects_other_values(monkeypatch):
    from sb3_pvdr.common import precision

    assert precision.resolve_bf16(True, "cpu") and not precision.resolve_bf16(False, "cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert precision.resolve_bf16("auto", "cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert not precision.resolve_bf16("auto", "cpu")
    with pytest.raises(ConfigError, match="bf16 must be"):
        precision.resolve_bf16("yes", "cpu")
    env = PlanningWrapper(FakeImageGoalEnv(), *tiny_models(), bf16=True)
    assert env.bf16
    env.configure(bf16=False)
    assert not env.bf16


def test_goal_conditioned_prior_plans_from_the_goal_image():
    """prior_goal: the wrapper hands the goal's tokens to the prior, so z* changes with the goal (same seed)."""
    models = tiny_models(prior_goal=True)
    with torch.no_grad():  # make the goal frame's time embedding matter in an untrained model
        models[1].prior_net.pos.time[-1].normal_(0, 1.0)
    stars = []
    for goal_pos in ([12, 12], [0, 12]):
        env = PlanningWrapper(FakeImageGoalEnv(), *models, n_candidates=1, seed=0)
        env.unwrapped.goal_pos = np.array(goal_pos)
        obs, _ = env.reset(seed=0)
        stars.append(obs["z_star"])
    assert not np.allclose(*stars)
    planner = env.planner
    ctx = torch.as_tensor(obs["context_tokens"])
    goal = torch.as_tensor(env.unwrapped._obs()["desired_goal"])
    with pytest.raises(DataError, match="goal"):
        planner.plan(ctx, planner.frame_target(goal[None])[0], 2)
    z_image = planner.plan(ctx, goal, 2, generator=torch.Generator().manual_seed(0)).z_star
    z_tokens = planner.plan(ctx, planner.frame_target(goal[None])[0], 2, generator=torch.Generator().manual_seed(0),
                            goal_tokens=planner.tokenizer.encode(goal[None])[0]).z_star
    torch.testing.assert_close(z_image, z_tokens)


def test_episode_last_is_the_frame_each_episode_reaches_in_the_rollout():
    from sb3_pvdr.planning import episode_last

    dones = np.array([[0, 0], [1, 0], [0, 0], [0, 1], [0, 0]], dtype=bool)  # (T=5, 2 envs)
    items = np.arange(10).reshape(5, 2)  # items[t, e] = 2t + e
    last = episode_last(items, dones)
    np.testing.assert_array_equal(last[:, 0], [2, 2, 8, 8, 8])  # env 0: ends at t=1, then runs to the rollout end
    np.testing.assert_array_equal(last[:, 1], [7, 7, 7, 7, 9])  # env 1: ends at t=3
    with pytest.raises(DataError):
        episode_last(items[:4], dones)
