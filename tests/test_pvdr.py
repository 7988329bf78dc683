"""PVDR algorithm: relabelled buffer, L_act hook, fine-tuning callbacks, ablation switches, save/load, train.py smoke run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from test_planning import FakeImageGoalEnv, tiny_models

from sb3_pvdr.common.errors import ConfigError
from sb3_pvdr.planning import PlanningWrapper, planning_term
from sb3_pvdr.pvdr import PVDR, PlanVideoCallback, PVDRPolicy, prior_loss, reconstruction_loss

REPO = Path(__file__).resolve().parent.parent
TINY_POLICY = dict(features_extractor_kwargs=dict(dim=16, depth=1, heads=2, ff_dim=32))
# the same aligner as a train.py `-params` value
TINY_POLICY_PARAM = f"policy_kwargs:{ {'features_extractor_kwargs': TINY_POLICY['features_extractor_kwargs']}!r}"


def save_tiny_models(folder: Path) -> tuple[Path, Path]:
    """Write :func:`tiny_models` as ``folder/tok.pt`` and ``folder/dyn.pt`` (checkpoints for train.py runs)."""
    tokenizer, dynamics = tiny_models()
    tokenizer.save(folder / "tok.pt")
    dynamics.save(folder / "dyn.pt")
    return folder / "tok.pt", folder / "dyn.pt"


def make_env(models=None, n_envs: int = 1, max_steps: int = 10, seed: int = 0):
    tokenizer, dynamics = models if models is not None else tiny_models()
    return make_vec_env(
        lambda: PlanningWrapper(FakeImageGoalEnv(max_steps=max_steps), tokenizer, dynamics, n_candidates=3, seed=seed),
        n_envs=n_envs,
        seed=seed,
    )


def make_model(env=None, **kwargs) -> PVDR:
    defaults = dict(n_steps=24, batch_size=12, n_epochs=1, seed=0, policy_kwargs=TINY_POLICY, finetune_batch_size=8, n_candidates=3)
    return PVDR("PVDRPolicy", env if env is not None else make_env(), **{**defaults, **kwargs})


def collect(model: PVDR) -> None:
    """One rollout through SB3's own collect_rollouts (with PVDR's internal callbacks)."""
    _, callback = model._setup_learn(model.n_steps, callback=None)
    callback.on_training_start(locals(), globals())
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)


@pytest.fixture(scope="module")
def collected() -> PVDR:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = make_model(finetune_rollouts=0, lambda_3=2.0)
    collect(model)
    torch.set_num_threads(threads)
    return model


# ---------------------------------------------------------------------------------------------- buffer
def test_rollout_rewards_are_relabelled_before_advantages(collected):
    buffer = collected.rollout_buffer
    assert buffer.dones.sum() >= 2  # 10-step episodes in a 24-step rollout: the relabelling crosses episode ends
    expected = buffer.env_rewards - 2.0 * planning_term(buffer.plan_errors, buffer.dones)
    np.testing.assert_allclose(buffer.rewards, expected, rtol=1e-6)
    assert (buffer.rewards < buffer.env_rewards).all()
    # GAE ran on the relabelled rewards: the last step's advantage is r~ + gamma * V(next) - V
    with torch.no_grad():
        last_value = collected.policy.predict_values(collected.policy.obs_to_tensor(collected._last_obs)[0]).item()
    t = buffer.buffer_size - 1
    not_done = 1.0 - float(buffer.dones[t, 0])
    delta = buffer.rewards[t, 0] + collected.gamma * last_value * not_done - buffer.values[t, 0]
    assert buffer.advantages[t, 0] == pytest.approx(delta, abs=1e-4)


def test_future_tokens_are_the_next_observed_frames(collected):
    buffer = collected.rollout_buffer
    futures, mask = buffer.future_tokens()
    contexts = buffer.observations["context_tokens"]
    for t in range(buffer.buffer_size - 2):
        if not buffer.dones[t, 0]:  # o_{t+1} is the newest context frame of step t+1
            np.testing.assert_array_equal(futures[t, 0, 0], contexts[t + 1, 0, -1])
    assert mask.any() and not mask.all()


def test_frame_step_model_relabels_and_fine_tunes_on_every_kth_frame():
    """A model pre-trained on every 2nd frame: plan errors cover l * 2 steps, real futures are o_{t+2}, o_{t+4}, ...,
    L_act's action window is l * 2 actions, and a learn() with fine-tuning runs."""
    tokenizer, dynamics = tiny_models()
    dynamics.config.frame_step = 2
    model = make_model(make_env((tokenizer, dynamics), max_steps=20), finetune_rollouts=1, act_target="window_mean")
    collect(model)
    buffer = model.rollout_buffer
    assert buffer.plan_errors.shape == (24, 1, 6) and buffer.horizon == 6
    futures, mask = buffer.future_tokens()
    contexts = buffer.observations["context_tokens"]
    for t in range(buffer.buffer_size - 4):
        if not buffer.dones[t : t + 4, 0].any():  # o_{t+2} and o_{t+4} are the newest context frames of t+2, t+4
            np.testing.assert_array_equal(futures[t, 0, 0], contexts[t + 2, 0, -1])
            np.testing.assert_array_equal(futures[t, 0, 1], contexts[t + 4, 0, -1])
            np.testing.assert_array_equal(contexts[t + 2, 0, 0], contexts[t, 0, -1])  # context o_{t}, o_{t+2}
    assert mask.any() and not mask.all()
    model._compute_alignment_targets()
    # z_t = E(x_t, y_t).mode() where the real future is complete; no target (zeros, masked out) elsewhere
    t = int(np.flatnonzero(mask[:, 0])[-1])
    with torch.no_grad():
        expected = model.dynamics.eval().posterior(torch.as_tensor(contexts[t]), torch.as_tensor(futures[t])).mode()
    np.testing.assert_allclose(buffer.latents[t], expected.numpy(), atol=1e-5)
    assert not buffer.latents[~mask].any()
    np.testing.assert_array_equal(buffer.align_mask, mask)
    actions, _ = buffer.future_actions()
    assert actions.shape[2] == 6
    np.testing.assert_allclose(buffer.act_targets[0, 0], np.clip(buffer.actions[:6, 0], -1, 1).mean(axis=0), rtol=1e-5)
    model.learn(48)
    assert model.num_timesteps == 48


def test_acting_threads_while_stepping_subprocess_envs_and_all_threads_for_fine_tuning(monkeypatch):
    """With subprocess workers (they plan), the learner steps with ``acting_threads`` torch threads; fine-tuning at the
    rollout's end and the update get the process's own count back; with in-process envs nothing changes."""
    from stable_baselines3.common.callbacks import BaseCallback

    from sb3_pvdr.pvdr import callbacks as pvdr_callbacks
    from sb3_pvdr.pvdr import pvdr as pvdr_module

    seen: dict[str, set] = {"step": set(), "finetune": set()}

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            seen["step"].add(torch.get_num_threads())
            return True

    finetune = pvdr_callbacks.DynamicsFineTuneCallback.finetune

    def recorded(self, model):
        seen["finetune"].add(torch.get_num_threads())
        return finetune(self, model)

    monkeypatch.setattr(pvdr_callbacks.DynamicsFineTuneCallback, "finetune", recorded)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = make_model(finetune_rollouts=1, finetune_batches=1)
        assert model.acting_threads == 1
        model.learn(24, callback=Record())  # in-process envs: unchanged
        assert seen == {"step": {2}, "finetune": {2}}
        monkeypatch.setattr(pvdr_module, "_in_subprocesses", lambda env: True)
        monkeypatch.setattr(PlanningWrapper, "set_torch_threads", lambda self, n: None)  # a worker's own, not ours here
        seen = {"step": set(), "finetune": set()}
        model.learn(48, callback=Record(), reset_num_timesteps=False)  # a fine-tuning and an alignment rollout
        assert seen == {"step": {1}, "finetune": {2}}
        assert torch.get_num_threads() == 2
        with pytest.raises(ConfigError, match="acting_threads"):
            make_model(acting_threads=0)
    finally:
        torch.set_num_threads(threads)


def test_alignment_targets_do_not_depend_on_the_encoder_chunk():
    """E runs over the rollout in chunks of windows (small ones are faster on a CPU): chunk edges change nothing."""
    model = make_model(finetune_rollouts=0)
    collect(model)
    model._compute_alignment_targets(chunk=1000)
    whole = model.rollout_buffer.latents.copy()
    model._compute_alignment_targets(chunk=5)  # 24 steps: chunks end mid-rollout and the last one is short
    assert whole.any()
    np.testing.assert_allclose(model.rollout_buffer.latents, whole, atol=1e-5)


# ---------------------------------------------------------------------------------------------- L_act
def test_alignment_loss_gradient_reaches_only_the_policy_actor():
    model = make_model(finetune_rollouts=0)
    collect(model)
    model._compute_alignment_targets()
    batch = next(model.rollout_buffer.get(batch_size=24))
    model.policy.zero_grad(set_to_none=True)
    model.dynamics.zero_grad(set_to_none=True)
    loss = model.alignment_loss(batch)
    loss.backward()
    assert model.policy.action_net.weight.grad.abs().sum() > 0
    assert model.policy.features_extractor.z_proj.weight.grad.abs().sum() > 0
    assert model.policy.value_net.weight.grad is None  # the critic's last layer is not in L_act
    assert all(p.grad is None for p in model.dynamics.parameters())
    assert all(p.grad is None for p in model.tokenizer.parameters())


@pytest.mark.parametrize("act_target", ["action", "window_mean", "window_mean_rescaled"])
def test_alignment_targets_are_the_clipped_action_or_the_window_mean(act_target):
    model = make_model(finetune_rollouts=0, act_target=act_target)
    collect(model)
    model._compute_alignment_targets()
    buffer = model.rollout_buffer
    l = buffer.plan_length  # noqa: E741
    clipped = np.clip(buffer.actions, model.action_space.low, model.action_space.high)  # (T, n_envs, a)
    assert buffer.align_mask.any()
    for t, e in zip(*np.nonzero(buffer.align_mask)):
        expected = clipped[t, e] if act_target == "action" else clipped[t : t + l, e].mean(axis=0)
        if act_target == "window_mean_rescaled":  # a_t's scale back: x sqrt(l), inside the bounds
            expected = np.clip(expected * np.sqrt(l), model.action_space.low, model.action_space.high)
        np.testing.assert_allclose(buffer.act_targets[t, e], expected, rtol=1e-6)
    batch = next(buffer.get(batch_size=24))
    assert batch.act_targets.shape == (24, model.action_space.shape[0])
    with pytest.raises(ConfigError, match="act_target must be one of"):
        make_model(act_target="next")


def test_alignment_hook_adds_act_coef_times_the_lact_gradient():
    model = make_model(finetune_rollouts=0, act_coef=0.5)
    collect(model)
    model._compute_alignment_targets()
    batch = next(model.rollout_buffer.get(batch_size=24))
    model.policy.zero_grad(set_to_none=True)
    (0.5 * model.alignment_loss(batch)).backward()
    expected = [p.grad.clone() if p.grad is not None else None for p in model.policy.parameters()]
    with model._alignment_loss_hook() as losses:
        model.policy.optimizer.zero_grad()  # what PPO.train calls right before loss.backward()
    assert len(losses) == 1
    for p, g in zip(model.policy.parameters(), expected):
        if g is None:
            assert p.grad is None or p.grad.abs().sum() == 0
        else:
            torch.testing.assert_close(p.grad, g)
    model.policy.optimizer.zero_grad()  # the hook is gone: plain zero_grad
    assert all(p.grad is None for p in model.policy.parameters())


def test_with_all_pvdr_terms_off_training_equals_ppo():
    """act_coef=0, lambda_3=0, no fine-tuning: PVDR's update is PPO's, bit for bit, on a seeded run."""
    models = tiny_models()
    kwargs = dict(n_steps=24, batch_size=12, n_epochs=2, seed=0, policy_kwargs=TINY_POLICY, learning_rate=1e-3)
    pvdr = PVDR("PVDRPolicy", make_env(models), act_coef=0.0, lambda_3=0.0, finetune_rollouts=0, n_candidates=3, **kwargs)
    pvdr.learn(48)  # SB3 seeds torch when the algorithm is built: build PPO only after PVDR has learned
    ppo = PPO(PVDRPolicy, make_env(models), gae_lambda=pvdr.gae_lambda, max_grad_norm=pvdr.max_grad_norm, **kwargs)
    ppo.learn(48)
    for (name, a), b in zip(pvdr.policy.state_dict().items(), ppo.policy.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


# ---------------------------------------------------------------------------------------------- fine-tuning
def test_goal_term_of_the_prior_loss_reaches_the_prior():
    tokenizer, dynamics = tiny_models()
    x = torch.randint(0, 16, (3, 2, 4, 4))
    y = torch.randint(0, 16, (3, 3, 4, 4))
    goals = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    _, parts = prior_loss(dynamics, tokenizer, x, y, goals, lambda_2=0.8)
    parts["goal"].backward()
    prior_params = [*dynamics.prior_net.parameters(), *dynamics.prior_head.parameters()]
    assert sum(p.grad.abs().sum() for p in prior_params if p.grad is not None) > 0
    assert dynamics.prior_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in dynamics.encoder.parameters())
    # lambda_2 = 0 (ablation "w/o prior opt") drops the goal term
    loss0, parts0 = prior_loss(dynamics, tokenizer, x, y, goals, lambda_2=0.0)
    assert parts0["goal"].item() == 0.0 and loss0.item() == pytest.approx(parts0["kl_prior"].item())


def test_goal_term_on_a_subset_of_clips_is_the_subsets_term_and_the_kl_keeps_every_clip():
    tokenizer, dynamics = tiny_models()
    x = torch.randint(0, 16, (4, 2, 4, 4))
    y = torch.randint(0, 16, (4, 3, 4, 4))
    goals = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    torch.manual_seed(0)
    _, sub = prior_loss(dynamics, tokenizer, x, y, goals, lambda_2=0.8, goal_clips=2)
    torch.manual_seed(0)
    _, head = prior_loss(dynamics, tokenizer, x[:2], y[:2], goals[:2], lambda_2=0.8)
    _, full = prior_loss(dynamics, tokenizer, x, y, goals, lambda_2=0.0)
    assert sub["goal"].item() == pytest.approx(head["goal"].item(), rel=1e-5)
    assert sub["kl_prior"].item() == pytest.approx(full["kl_prior"].item(), rel=1e-6)
    assert sub["kl_prior"].item() != pytest.approx(head["kl_prior"].item(), rel=1e-6)
    sub["goal"].backward()
    assert dynamics.prior_head.weight.grad.abs().sum() > 0


def test_finetune_goal_clips_reaches_the_prior_loss(monkeypatch):
    from sb3_pvdr.pvdr import callbacks

    seen = []
    original = callbacks.prior_loss
    monkeypatch.setattr(callbacks, "prior_loss", lambda *a, **k: seen.append(a[-1]) or original(*a, **k))
    model = make_model(finetune_rollouts=1, finetune_batches=1, finetune_goal_clips=3)
    collect(model)
    assert seen == [3]
    with pytest.raises(ConfigError, match="finetune_goal_clips"):
        make_model(finetune_goal_clips=0)


def test_prior_loss_of_a_goal_conditioned_prior_reads_the_goal_images():
    tokenizer, dynamics = tiny_models(prior_goal=True)
    with torch.no_grad():
        dynamics.prior_net.pos.time[-1].normal_(0, 1.0)
    torch.manual_seed(0)
    x, y = torch.randint(0, 16, (3, 2, 4, 4)), torch.randint(0, 16, (3, 3, 4, 4))
    goals = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    kl = [prior_loss(dynamics, tokenizer, x, y, g, lambda_2=0.0)[1]["kl_prior"].item() for g in (goals, 255 - goals)]
    assert kl[0] != pytest.approx(kl[1])
    # hindsight goals replace the goal images' tokens in the KL term only
    hindsight = tokenizer.encode(255 - goals).long()
    kl_h = prior_loss(dynamics, tokenizer, x, y, goals, lambda_2=0.0, hindsight_goals=hindsight)[1]["kl_prior"].item()
    assert kl_h == pytest.approx(kl[1])
    torch.manual_seed(1)
    goal_a = prior_loss(dynamics, tokenizer, x, y, goals, lambda_2=0.8, hindsight_goals=hindsight)[1]["goal"].item()
    torch.manual_seed(1)
    goal_b = prior_loss(dynamics, tokenizer, x, y, goals, lambda_2=0.8)[1]["goal"].item()
    assert goal_a == pytest.approx(goal_b)  # the goal term plans toward the goal images either way


def test_learn_with_a_goal_conditioned_prior_fine_tunes_it():
    models = tiny_models(prior_goal=True)
    model = make_model(make_env(models), finetune_rollouts=1)
    before = [p.detach().clone() for p in model.dynamics.prior_net.parameters()]
    model.learn(48)  # a fine-tuning rollout (planning with the goal's tokens, L_prior on them), then an alignment one
    assert any(not torch.equal(a, b) for a, b in zip(before, model.dynamics.prior_net.parameters()))


def test_reconstruction_loss_matches_the_pretraining_recon_term():
    torch.manual_seed(0)
    _, dynamics = tiny_models()
    x, y = torch.randint(0, 16, (4, 2, 4, 4)), torch.randint(0, 16, (4, 3, 4, 4))
    loss, parts = reconstruction_loss(dynamics, x, y, lambda_1=0.0)
    assert loss.item() == pytest.approx(parts.recon.item())
    assert 0 < parts.recon.item() < 10


def test_losses_with_precomputed_trunk_features_equal_the_full_losses():
    """Fine-tuning computes E's frozen trunk once per minibatch for L_rec and L_prior: same losses and gradients."""
    tokenizer, dynamics = tiny_models()
    dynamics.eval()
    x, y = torch.randint(0, 16, (3, 2, 4, 4)), torch.randint(0, 16, (3, 3, 4, 4))
    goals = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    with torch.no_grad():
        features = dynamics.posterior_features(x, y)
    torch.testing.assert_close(dynamics.posterior_from_features(features).mean, dynamics.posterior(x, y).mean)
    grads = []
    for shared in (None, features):
        torch.manual_seed(0)  # same z samples
        dynamics.zero_grad()
        loss, _ = reconstruction_loss(dynamics, x, y, 1e-3, shared)
        loss.backward()
        grads.append(dynamics.posterior_head.weight.grad.clone())
        torch.manual_seed(0)
        prior, _ = prior_loss(dynamics, tokenizer, x, y, goals, 0.8, "codes", "mean", shared)
        grads.append(prior.detach())
    torch.testing.assert_close(grads[0], grads[2])
    torch.testing.assert_close(grads[1], grads[3])
    assert grads[0].abs().sum() > 0


def test_finetuning_rollout_updates_decoder_head_and_prior_but_not_encoder_or_policy():
    model = make_model(finetune_rollouts=1, finetune_lr=1e-3)
    before = {k: v.clone() for k, v in model.dynamics.state_dict().items()}
    policy_before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    collect(model)  # rollout 0 is a fine-tuning rollout (E1); the callback fine-tunes at its end
    assert model.rollout_phase == "finetune"
    model.train()  # a no-op for the policy on E1 rollouts
    after = model.dynamics.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("decoder.") for k in changed)
    assert any(k.startswith("posterior_head.") for k in changed)
    assert any(k.startswith("prior_net.") or k.startswith("prior_head.") for k in changed)
    assert not any(k.startswith("encoder.") for k in changed)  # footnote 3: E frozen but for its last layer
    for k, v in model.policy.state_dict().items():
        torch.testing.assert_close(v, policy_before[k])
    # the planner of the env uses the same, fine-tuned module
    assert model.env.get_attr("planner")[0].dynamics is model.dynamics
    assert [model._phase_of(i) for i in range(4)] == ["finetune", "align", "finetune", "align"]
    model.finetune_rollouts, model.align_rollouts = 1, 3
    assert [model._phase_of(i) for i in range(5)] == ["finetune", "align", "align", "align", "finetune"]


@pytest.mark.parametrize("finetune_batches, expected", [(None, 3), (1, 1)])
def test_finetune_batches_caps_the_gradient_steps_per_pass(finetune_batches, expected):
    """24 steps x 1 env with l = 6: 18 clips have l real future frames -> 3 minibatches of 8 per full pass."""
    model = make_model(finetune_rollouts=1, finetune_batches=finetune_batches)
    collect(model)
    for optimizer in (model.dynamics_optimizer, model.prior_optimizer):  # line 8 (L_rec), line 9 (L_prior)
        steps = {int(state["step"]) for state in optimizer.state.values()}
        assert steps == {expected}
    with pytest.raises(ConfigError, match="finetune_batches"):
        make_model(finetune_batches=0)


# ---------------------------------------------------------------------------------------------- ablations
def _trained_policy(**kwargs) -> dict[str, torch.Tensor]:
    model = make_model(finetune_rollouts=0, n_epochs=2, **kwargs)
    model.learn(24)
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


def test_ablation_switches_change_behaviour():
    models = tiny_models()
    reference = make_model(make_env(models), finetune_rollouts=0)
    # w/o pre-training: the dynamics weights are re-initialised (in place: the env plans with them)
    pretrained = {k: v.clone() for k, v in models[1].state_dict().items()}
    scratch = make_model(make_env(models), pretrained=False)
    assert any(not torch.equal(pretrained[k], v) for k, v in scratch.dynamics.state_dict().items())
    assert scratch.env.get_attr("planner")[0].dynamics is scratch.dynamics
    # random z: the env's z* is noise instead of a planned latent
    random_model = make_model(make_env(), random_z=True)
    assert random_model.env.get_attr("random_z")[0] and not reference.env.get_attr("random_z")[0]
    # w/o act sl, w/o act rl: different updates from the same seed and data
    full = _trained_policy()
    no_act = _trained_policy(act_coef=0.0)
    no_ppo = _trained_policy(ppo_loss=False)
    assert any(not torch.equal(full[k], no_act[k]) for k in full)
    assert any(not torch.equal(full[k], no_ppo[k]) for k in full)
    init = make_model(finetune_rollouts=0).policy.state_dict()
    torch.testing.assert_close(no_ppo["value_net.weight"], init["value_net.weight"])  # L_act only: critic untouched
    with pytest.raises(ConfigError, match="act_coef"):
        make_model(ppo_loss=False, act_coef=0.0)


def test_plan_distance_reaches_the_bound_planners_and_the_goal_term():
    model = make_model(plan_distance="last", finetune_rollouts=0)
    assert [p.distance for p in model.env.get_attr("planner")] == ["last"]
    with pytest.raises(ConfigError, match="plan_distance"):
        make_model(plan_distance="first")
    tokenizer, dynamics = tiny_models()
    x, y = torch.randint(0, 16, (3, 2, 4, 4)), torch.randint(0, 16, (3, 3, 4, 4))
    goals = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    goal_terms = {}
    for distance in ("mean", "last", "last_blurred"):
        torch.manual_seed(0)  # the same z ~ P for each
        goal_terms[distance] = prior_loss(dynamics, tokenizer, x, y, goals, 0.8, "pixels", distance)[1]["goal"].item()
    assert goal_terms["mean"] != pytest.approx(goal_terms["last"])
    assert goal_terms["last_blurred"] < goal_terms["last"]  # pooling random goal pixels averages their noise away
    with pytest.raises(ConfigError, match="needs plan_metric 'pixels'"):
        make_model(plan_metric="codes", plan_distance="last_blurred")


# ---------------------------------------------------------------------------------------------- save / load
def test_save_load_gives_identical_actions_and_models(tmp_path):
    model = make_model(finetune_rollouts=1, finetune_lr=1e-3)
    model.learn(48)  # one fine-tuning rollout, one alignment rollout
    path = tmp_path / "pvdr.zip"
    model.save(path)
    env = make_env()  # a fresh env: its planner starts from the un-fine-tuned models
    loaded = PVDR.load(path, env=env)
    for k, v in model.dynamics.state_dict().items():
        torch.testing.assert_close(loaded.dynamics.state_dict()[k], v)
    assert env.get_attr("planner")[0].dynamics is loaded.dynamics  # bound to the loaded, fine-tuned model
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    loaded_actions, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, loaded_actions)
    # without an env, the architecture is rebuilt from the stored configs
    bare = PVDR.load(path)
    np.testing.assert_array_equal(bare.predict(obs, deterministic=True)[0], actions)
    mean_reward, _ = evaluate_policy(loaded, env, n_eval_episodes=1)
    assert np.isfinite(mean_reward)


def test_plan_video_callback_builds_context_plan_real_strips(tmp_path):
    tokenizer, _ = tiny_models()
    frames = [np.full((16, 16, 3), 10 * i, dtype=np.uint8) for i in range(8)]
    plan = np.zeros((3, 4, 4), dtype=np.int64)
    steps = [(frames[i], plan, i == 5) for i in range(8)]
    video = PlanVideoCallback.make_video(steps, tokenizer, n_clips=2)
    assert video.shape == (6, 16, 48, 3)
    np.testing.assert_array_equal(video[0, :, :16], frames[0])  # context o_{t}
    np.testing.assert_array_equal(video[0, :, 32:], frames[1])  # what really happened o_{t+1}
    np.testing.assert_array_equal(video[2, :, 32:], frames[3])
    # a frame_step 2 model: plan frame k shows the real frame 2 (k + 1) steps on; frame 5 is terminal, so frame 6
    # (the next episode) is not shown for plan frame 2
    stepped = PlanVideoCallback.make_video(steps, tokenizer, n_clips=2, frame_step=2)
    assert stepped.shape == (2, 16, 48, 3)
    for k, real in enumerate((2, 4)):
        np.testing.assert_array_equal(stepped[k, :, 32:], frames[real])
    # written to tensorboard as an animated GIF image summary
    from types import SimpleNamespace

    from stable_baselines3.common.logger import configure
    from tensorboard.backend.event_processing import event_accumulator

    callback = PlanVideoCallback(save_dir=str(tmp_path / "gifs"))
    callback.model = SimpleNamespace(logger=configure(str(tmp_path / "tb"), ["tensorboard"]))
    callback._write(video)
    events = event_accumulator.EventAccumulator(str(next((tmp_path / "tb").glob("events*"))), size_guidance={"images": 0})
    events.Reload()
    assert events.Images("pvdr/plans")[0].encoded_image_string[:6] == b"GIF89a"
    assert len(list((tmp_path / "gifs").glob("plans_*.gif"))) == 1


def test_plan_video_files_go_to_the_run_folder_else_beside_tensorboard(tmp_path):
    from types import SimpleNamespace

    from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
    from stable_baselines3.common.logger import configure

    from sb3_pvdr.pvdr.callbacks import run_folder

    env = make_env()
    evaluator = EvalCallback(env, best_model_save_path=str(tmp_path / "run"))
    assert run_folder([CheckpointCallback(10, str(tmp_path / "ckpt")), evaluator]) == str(tmp_path / "run")
    assert run_folder([CheckpointCallback(10, str(tmp_path / "ckpt"))]) == str(tmp_path / "ckpt")
    assert run_folder([EvalCallback(env, log_path=str(tmp_path / "evals"))]) == str(tmp_path / "evals")
    assert run_folder([EvalCallback(env)]) is None
    # PVDR.learn hands the callback the run folder
    callback = PlanVideoCallback()
    make_model(env=env).learn(1, callback=[callback, evaluator])
    assert callback.run_folder == str(tmp_path / "run") and callback.video_dir() == str(tmp_path / "run" / "plan_videos")
    video = np.zeros((2, 16, 48, 3), dtype=np.uint8)
    # no run folder: beside the tensorboard events; no tensorboard either, or save_dir=None: no file
    for save_dir, formats, expected in ((PlanVideoCallback().save_dir, ["tensorboard"], "tb/plan_videos"), (None, ["tensorboard"], None),
                                        ("auto", ["csv"], None)):  # fmt: skip
        callback = PlanVideoCallback(save_dir=save_dir)
        callback.model = SimpleNamespace(logger=configure(str(tmp_path / "tb"), formats))
        callback._write(video)
        assert callback.video_dir() == (None if expected is None else str(tmp_path / expected))
    assert [p.name for p in (tmp_path / "tb" / "plan_videos").iterdir()] == ["plans_0.gif"]


# ---------------------------------------------------------------------------------------------- CLI
def test_train_py_smoke_and_load_in_a_new_process(tmp_path):
    tokenizer, dynamics = tiny_models()
    tokenizer.save(tmp_path / "tok.pt")
    dynamics.save(tmp_path / "dyn.pt")
    wrapper = {"sb3_pvdr.planning.PlanningWrapper": {"tokenizer": str(tmp_path / "tok.pt"), "dynamics": str(tmp_path / "dyn.pt")}}
    cmd = [
        sys.executable, "train.py", "--algo", "pvdr", "--env", "reach-v2", "-n", "256", "--log-folder", str(tmp_path / "logs"),
        "--eval-freq", "128", "--eval-episodes", "1", "--save-freq", "128", "--env-kwargs", "image_size:16", "max_episode_steps:60",
        "-params", "n_envs:1", "n_steps:64", "batch_size:32", "n_epochs:1", "n_candidates:2", "replan_every:2",  # tiny l = 3
        f"env_wrapper:{wrapper!r}", f"policy_kwargs:{ {'features_extractor_kwargs': TINY_POLICY['features_extractor_kwargs']}!r}",
        f"callback:[{{'sb3_pvdr.pvdr.PlanVideoCallback': {{'every_n_rollouts': 2, 'save_dir': {str(tmp_path / 'videos')!r}}}}}]",
    ]
    env = {**os.environ, "MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Success rate" in result.stdout
    zips = list((tmp_path / "logs" / "pvdr").glob("reach-v2_*/reach-v2.zip"))
    assert len(zips) == 1
    assert list((tmp_path / "videos").glob("plans_*.gif"))
    # continue from the mid-run checkpoint (as after a kill): step counter, phase and fine-tuned models go on
    checkpoint = zips[0].parent / "rl_model_128_steps.zip"
    assert checkpoint.is_file()
    resumed = subprocess.run([*cmd[:cmd.index("-params")], "-i", str(checkpoint), *cmd[cmd.index("-params"):]], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "Continuing from 128 steps to 256" in resumed.stdout
    continued = sorted((tmp_path / "logs" / "pvdr").glob("reach-v2_*/reach-v2.zip"))[-1]
    assert PVDR.load(continued).num_timesteps == 256
    script = (
        "import numpy as np, sb3_pvdr.envs\n"
        "from sb3_pvdr.envs import make_metaworld_env\n"
        "from sb3_pvdr.planning import PlanningWrapper\n"
        "from sb3_pvdr.pvdr import PVDR\n"
        "from stable_baselines3.common.evaluation import evaluate_policy\n"
        "from stable_baselines3.common.vec_env import DummyVecEnv\n"
        f"env = DummyVecEnv([lambda: PlanningWrapper(make_metaworld_env('reach-v2', image_size=16, max_episode_steps=60), {str(tmp_path / 'tok.pt')!r}, {str(tmp_path / 'dyn.pt')!r})])\n"
        f"model = PVDR.load({str(zips[0])!r}, env=env)\n"
        "mean, std = evaluate_policy(model, env, n_eval_episodes=1)\n"
        "print('EVAL', mean)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "EVAL" in result.stdout


def test_goal_term_in_code_space_reaches_the_prior():
    tokenizer, dynamics = tiny_models()
    x, y = torch.randint(0, 16, (2, 2, 4, 4)), torch.randint(0, 16, (2, 3, 4, 4))
    goals = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    _, parts = prior_loss(dynamics, tokenizer, x, y, goals, lambda_2=0.8, metric="codes")
    parts["goal"].backward()
    assert dynamics.prior_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tokenizer.parameters())


@pytest.mark.parametrize("conf", ["pvdr.yml", "pvdr_paper.yml"])
def test_zoo_config_is_valid_for_every_task(conf):
    from sb3_pvdr.zoo import check_hyperparams, load_zoo_file, lookup_hyperparams

    table = load_zoo_file(REPO / "zoo_configs" / conf)
    for env_id in table:
        if env_id == "default":
            continue
        hyperparams = lookup_hyperparams(table, env_id, conf)
        check_hyperparams("pvdr", PVDR, hyperparams, conf)
        assert hyperparams["lambda_2"] == 0.8 and hyperparams["lambda_3"] == 1.0
    if conf == "pvdr_paper.yml":  # the paper's sizes: 128 px frames, Table 2's aligner (dim 512, depth 3)
        reach = lookup_hyperparams(table, "reach-v2")
        assert reach["env_kwargs"]["image_size"] == 128
        assert reach["policy_kwargs"]["features_extractor_kwargs"] == {"dim": 512, "depth": 3, "heads": 4, "ff_dim": 512}
    # Table 3, task set 1 in the paper-sized config; the CPU config's deviation (clip 0.2, no entropy bonus, its header)
    reach = lookup_hyperparams(table, "reach-v2")
    assert (reach["clip_range"], reach["ent_coef"]) == ((0.6, 1e-2) if conf == "pvdr_paper.yml" else (0.2, 0.0))
    assert lookup_hyperparams(table, "plate-slide-v2")["ent_coef"] == 2.0e-4  # task set 2
    assert lookup_hyperparams(table, "drawer-open-v2")["clip_range"] == 0.5  # task set 3


def test_checkpoint_continues_phase_models_and_optimizers(tmp_path):
    """A checkpoint holds the fine-tuned models, their optimizers, the step counter and Algorithm 1's phase;
    loading it and learning on (``reset_num_timesteps=False``, what ``train.py -i`` does) continues all of them."""
    model = make_model(finetune_rollouts=1, finetune_lr=1e-3)
    model.learn(72)  # fine-tune, align, fine-tune rollouts of 24 steps
    path = tmp_path / "ckpt.zip"
    model.save(path)
    saved = {k: v.clone() for k, v in model.dynamics.state_dict().items()}
    saved_opt = model.dynamics_optimizer.state_dict()
    loaded = PVDR.load(path, env=make_env())
    assert (loaded.num_timesteps, loaded._n_rollouts) == (72, 3)
    for k, v in saved.items():
        torch.testing.assert_close(loaded.dynamics.state_dict()[k], v)
    for key, state in saved_opt["state"].items():
        torch.testing.assert_close(loaded.dynamics_optimizer.state_dict()["state"][key]["exp_avg"], state["exp_avg"])
    loaded.learn(24, reset_num_timesteps=False)  # the 4th rollout: an alignment rollout (cycle FT, AL)
    assert (loaded.num_timesteps, loaded._n_rollouts, loaded.rollout_phase) == (96, 4, "align")


def swap_change(env, **extractor_kwargs) -> float:
    """Relative change of a fresh extractor's features when two cells of the last frame's grid swap tokens."""
    from sb3_pvdr.pvdr import PVDRFeaturesExtractor

    batch = {k: torch.as_tensor(v).float() for k, v in env.reset().items()}
    tokens = batch["context_tokens"].clone()
    tokens[0, -1, 0, 0], tokens[0, -1, -1, -1] = 1.0, 2.0
    swapped = tokens.clone()
    swapped[0, -1, 0, 0], swapped[0, -1, -1, -1] = 2.0, 1.0  # the same tokens, two cells exchanged
    torch.manual_seed(0)
    extractor = PVDRFeaturesExtractor(env.observation_space, dim=16, depth=1, heads=2, ff_dim=32, **extractor_kwargs)
    a, b = extractor(dict(batch, context_tokens=tokens)), extractor(dict(batch, context_tokens=swapped))
    return ((a - b).norm() / a.norm()).item()


def test_spatial_pool_keeps_positions_that_mean_pool_blurs():
    from sb3_pvdr.pvdr import PVDRFeaturesExtractor

    env = make_env()
    change = {pool: swap_change(env, pool=pool) for pool in ("mean", "spatial")}
    m, h, w = env.observation_space["context_tokens"].shape
    assert PVDRFeaturesExtractor(env.observation_space, dim=16, pool="spatial").features_dim == m * 16 + h * w * 16
    assert change["spatial"] > 3 * change["mean"]
    with pytest.raises(ConfigError, match="pool must be one of"):
        PVDRFeaturesExtractor(env.observation_space, pool="max")


def test_cnn_arch_keeps_positions_and_codebook_embeds_tokens(tmp_path):
    from sb3_pvdr.pvdr import PVDRFeaturesExtractor

    env = make_env()
    change = {arch: swap_change(env, arch=arch, cnn_features=32) for arch in ("transformer", "cnn")}
    assert change["cnn"] > 3 * change["transformer"]
    extractor = PVDRFeaturesExtractor(env.observation_space, dim=16, arch="cnn", cnn_features=32)
    batch = {k: torch.as_tensor(v).float() for k, v in env.reset().items()}
    assert extractor.features_dim == 32 and extractor(batch).shape == (1, 32)

    tokenizer, _ = tiny_models()
    tokenizer.save(tmp_path / "tok.pt")
    extractor = PVDRFeaturesExtractor(env.observation_space, dim=16, arch="cnn", codebook=str(tmp_path / "tok.pt"))
    book = tokenizer.codebook.detach()
    torch.testing.assert_close(extractor.embed.codebook, (book - book.mean(0)) / book.std(0))
    assert all(p is not extractor.embed.codebook for p in extractor.parameters())  # frozen: a buffer
    # two codes the tokenizer holds equal embed equally; the table maps code vectors, not ids
    assert extractor.embed(torch.tensor([[3]])).shape == (1, 1, 16)
    with pytest.raises(ConfigError, match="arch must be one of"):
        PVDRFeaturesExtractor(env.observation_space, arch="mlp")


def test_token_embedding_loads_a_state_dict_saved_before_it_existed():
    from sb3_pvdr.pvdr.extractor import TokenEmbedding

    old = torch.nn.Embedding(16, 8)  # what policies saved before TokenEmbedding held under `embed`
    module = torch.nn.Module()
    module.embed = TokenEmbedding(16, 8)
    module.load_state_dict({"embed.weight": old.weight.detach().clone()})
    torch.testing.assert_close(module.embed(torch.tensor([3, 5])), old(torch.tensor([3, 5])))


def test_policy_heads_start_small_like_sb3():
    model = make_model()
    obs = model.env.reset()
    tensors, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        small = model.policy.get_distribution(tensors).distribution.mean.abs().max().item()
    torch.manual_seed(0)
    untouched = PVDRPolicy(model.observation_space, model.action_space, lambda _: 3e-4, init_heads=False,
                           features_extractor_kwargs=dict(dim=16, depth=1, heads=2, ff_dim=32))
    with torch.no_grad():
        large = untouched.get_distribution(tensors).distribution.mean.abs().max().item()
    assert small < 0.05 < large
    assert untouched._get_constructor_parameters()["init_heads"] is False


def test_rollouts_log_planning_diagnostics():
    from stable_baselines3.common.logger import configure

    model = make_model(n_candidates=3)
    model.set_logger(configure(None, []))
    collect(model)
    logged = model.logger.name_to_value
    for key in ("plan/choice_gain", "plan/spread", "plan/z_change", "plan/replans_per_step", "rollout/goal_term_std",
                "rollout/plan_term_std"):
        assert key in logged and np.isfinite(logged[key]), key
    assert logged["plan/replans_per_step"] == pytest.approx(1.0)  # replan_every=1: a new plan every step
    assert logged["plan/choice_gain"] >= 0.0


def test_subprocess_workers_plan_with_the_fine_tuned_weights():
    """--vec-env subproc: after a fine-tuning rollout the workers' planning models equal the fine-tuned ones."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    tokenizer, dynamics = tiny_models()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # forked workers start with the parent's count
    try:
        env = make_vec_env(lambda: PlanningWrapper(FakeImageGoalEnv(max_steps=10), tokenizer, dynamics, n_candidates=3),
                           n_envs=2, seed=0, vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "fork"})
    finally:
        torch.set_num_threads(threads)
    try:
        assert env.get_attr("torch_threads") == [2, 2]
        model = make_model(env, n_steps=12, finetune_rollouts=1, finetune_lr=1e-2)
        assert env.get_attr("torch_threads") == [1, 1]  # bound: one thread per worker process
        before = {k: v.clone() for k, v in model.dynamics.state_dict().items()}
        model.learn(24)  # one fine-tuning rollout (the model changes), then it is pushed to the workers
        assert any(not torch.equal(before[k], v) for k, v in model.dynamics.state_dict().items())
        for worker_planner in env.get_attr("planner"):
            for k, v in model.dynamics.state_dict().items():
                torch.testing.assert_close(worker_planner.dynamics.state_dict()[k], v)
    finally:
        env.close()


def test_bf16_runs_planning_targets_and_finetuning_in_bf16_with_fp32_results():
    model = make_model(finetune_rollouts=1, finetune_lr=1e-3, bf16=True)
    assert model.use_bf16 and model.env.get_attr("bf16")[0]  # the env's planner was bound with it
    before = {k: v.clone() for k, v in model.dynamics.state_dict().items()}
    collect(model)  # fine-tuning rollout: forward passes under autocast, fp32 weights updated
    after = model.dynamics.state_dict()
    assert all(v.dtype == before[k].dtype for k, v in after.items())
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    collect(model)  # alignment rollout
    model._compute_alignment_targets()
    assert model.rollout_buffer.latents.dtype == np.float32 and np.isfinite(model.rollout_buffer.latents).all()
    with pytest.raises(ConfigError, match="bf16 must be"):
        make_model(bf16="sometimes")


def test_update_on_finetune_trains_the_policy_on_fine_tuning_rollouts_too():
    for flag in (False, True):
        model = make_model(finetune_rollouts=1, update_on_finetune=flag)
        policy_before = {k: v.clone() for k, v in model.policy.state_dict().items()}
        collect(model)
        assert model.rollout_phase == "finetune"
        model.train()
        changed = any(not torch.equal(v, policy_before[k]) for k, v in model.policy.state_dict().items())
        assert changed == flag


def make_plan_env(models=None, replan_every: int = 1):
    tokenizer, dynamics = models if models is not None else tiny_models()
    return make_vec_env(
        lambda: PlanningWrapper(FakeImageGoalEnv(max_steps=10), tokenizer, dynamics, n_candidates=3, replan_every=replan_every,
                                observe_plan=True, seed=0),
        n_envs=1,
        seed=0,
    )


def test_observed_plan_is_the_chosen_plan_shifted_by_its_age():
    tokenizer, dynamics = tiny_models()
    env = PlanningWrapper(FakeImageGoalEnv(max_steps=10), tokenizer, dynamics, n_candidates=3, replan_every=3, observe_plan=True)
    obs, info = env.reset(seed=0)
    l = dynamics.config.l  # noqa: E741
    assert env.observation_space["plan_tokens"].shape == (l, *dynamics.grid_size)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["plan_tokens"], info["plan_tokens"])
    plan = info["plan_tokens"]
    for age in (1, 2):  # the plan is held: its first `age` frames are past, the last one fills in
        obs, *_, info = env.step(env.action_space.sample())
        assert info["plan_offset"] == age
        np.testing.assert_array_equal(obs["plan_tokens"][: l - age], plan[age:])
        np.testing.assert_array_equal(obs["plan_tokens"][l - age :], np.repeat(plan[-1:], age, axis=0))
    obs, *_, info = env.step(env.action_space.sample())  # a new plan
    assert info["plan_offset"] == 0
    np.testing.assert_array_equal(obs["plan_tokens"], info["plan_tokens"])
    assert "plan_tokens" not in PlanningWrapper(FakeImageGoalEnv(), tokenizer, dynamics).observation_space.spaces


def alignment_loss_inputs(model: PVDR, sample) -> tuple:
    """L_act on ``sample`` and the observation it handed the policy."""
    seen = {}
    original = model.policy.get_distribution
    model.policy.get_distribution = lambda obs: seen.setdefault("obs", obs) and original(obs)
    try:
        loss = model.alignment_loss(sample)
    finally:
        model.policy.get_distribution = original
    return loss, seen["obs"]


def test_plan_aligner_reads_the_plan_and_lact_feeds_it_the_real_future():
    from sb3_pvdr.pvdr import PVDRFeaturesExtractor

    models = tiny_models()
    with pytest.raises(ConfigError, match="observe_plan=True"):
        PVDRFeaturesExtractor(make_env(models).observation_space, dim=16, inputs="plan")
    env = make_plan_env(models)
    with pytest.raises(ConfigError, match="inputs must be one of"):
        PVDRFeaturesExtractor(env.observation_space, inputs="goal+z")
    extractor_kwargs = dict(dim=16, arch="cnn", cnn_features=32, inputs="plan")
    model = make_model(env, finetune_rollouts=0, policy_kwargs=dict(features_extractor_kwargs=extractor_kwargs))
    extractor = model.policy.features_extractor
    assert not hasattr(extractor, "z_proj")  # z* itself is not read
    batch = {k: torch.as_tensor(v).float() for k, v in env.reset().items()}
    other = dict(batch, plan_tokens=(batch["plan_tokens"] + 1) % (batch["plan_tokens"].max() + 2))
    with torch.no_grad():
        assert not torch.allclose(extractor(batch), extractor(other))  # the plan reaches the features
        assert torch.allclose(extractor(batch), extractor(dict(batch, z_star=batch["z_star"] + 1)))  # z* does not

    collect(model)
    model._compute_alignment_targets()
    buffer = model.rollout_buffer
    futures, mask = buffer.future_tokens()
    np.testing.assert_array_equal(buffer.futures[mask], futures[mask])
    assert not buffer.latents.any()  # no posterior z_t computed for an aligner that does not read it
    sample = next(buffer.get(batch_size=24))
    # L_act's input: the real future y_t in the plan's place (not the plan the policy acted on)
    loss, seen = alignment_loss_inputs(model, sample)
    assert loss is not None and torch.isfinite(loss)
    torch.testing.assert_close(seen["plan_tokens"], sample.futures[sample.align_mask])
    model.learn(48)  # PPO + L_act end to end


def test_goal_aligner_reads_the_goal_tokens_and_lact_keeps_them():
    from sb3_pvdr.pvdr import PVDRFeaturesExtractor

    models = tiny_models()
    tokenizer, dynamics = models
    with pytest.raises(ConfigError, match="observe_goal=True"):
        PVDRFeaturesExtractor(make_env(models).observation_space, dim=16, inputs="z+goal")
    wrapper = PlanningWrapper(FakeImageGoalEnv(max_steps=10), tokenizer, dynamics, n_candidates=3, observe_goal=True, seed=0)
    assert "goal_tokens" not in PlanningWrapper(FakeImageGoalEnv(), tokenizer, dynamics).observation_space.spaces
    obs, _ = wrapper.reset(seed=0)
    assert wrapper.observation_space.contains(obs)
    with torch.no_grad():  # the goal image's own tokens
        expected = tokenizer.encode(torch.as_tensor(wrapper.env.reset(seed=0)[0]["desired_goal"])[None])[0].numpy()
    np.testing.assert_array_equal(obs["goal_tokens"][0], expected)

    env = make_vec_env(lambda: PlanningWrapper(FakeImageGoalEnv(max_steps=10), tokenizer, dynamics, n_candidates=3,
                                               observe_goal=True, seed=0), n_envs=1, seed=0)
    extractor_kwargs = dict(dim=16, arch="cnn", cnn_features=32, inputs="z+goal")
    model = make_model(env, finetune_rollouts=0, policy_kwargs=dict(features_extractor_kwargs=extractor_kwargs))
    extractor = model.policy.features_extractor
    batch = {k: torch.as_tensor(v).float() for k, v in env.reset().items()}
    other = dict(batch, goal_tokens=(batch["goal_tokens"] + 1) % (batch["goal_tokens"].max() + 2))
    with torch.no_grad():
        assert not torch.allclose(extractor(batch), extractor(other))  # the goal reaches the features
        assert not torch.allclose(extractor(batch), extractor(dict(batch, z_star=batch["z_star"] + 1)))  # and z* does

    collect(model)
    model._compute_alignment_targets()
    sample = next(model.rollout_buffer.get(batch_size=24))
    loss, seen = alignment_loss_inputs(model, sample)
    assert loss is not None and torch.isfinite(loss)
    mask = sample.align_mask
    torch.testing.assert_close(seen["goal_tokens"], sample.observations["goal_tokens"][mask])  # L_act sees the goal
    torch.testing.assert_close(seen["z_star"], sample.latents[mask])  # and the posterior z in z*'s place
    model.learn(48)
