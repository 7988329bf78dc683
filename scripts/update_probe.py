"""Why does one PVDR policy update move the policy so far? A fitted update, or a general one?

Every PVDR row's updates have a median approx_kl of 0.3-1.2 (results/*/table.md; SB3's pixel PPO on the same tasks:
0.02-0.04), with L_act (eq. 5) on or off. This probe loads a ``train.py`` run (as ``enjoy.py`` does), collects two
alignment rollouts with its policy, A and B, then runs the algorithm's own ``train()`` (10 epochs over A, PPO's clipped
loss + ``act_coef`` x L_act, fresh Adam state) from the same starting weights under a few settings, and reports how far the update moved
the policy on A (the samples it was fitted to) and on B (states it never saw):

    approx_kl = mean((r - 1) - log r), r = pi_new(a|s) / pi_old(a|s)   (SB3's estimate; SB3 logs it on A's last epoch)

A KL on A far above B's means the update fits its own samples (per-sample memorisation, e.g. through z*, which changes
at random every re-plan) rather than moving the policy as a whole. Settings: ``as trained``; ``vf_coef 0`` (the value
loss's gradient no longer reaches the shared trunk); ``act_coef 0`` (no L_act); ``z* zeroed`` (A and B re-labelled
with z* = 0 and old log-probs recomputed, so the policy cannot tell samples apart by z*); ``lr / 10``; ``1 epoch``.

    MUJOCO_GL=egl python scripts/update_probe.py -f results/fixed/runs/pvdr/reach-v2/seed0 --json probe.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch as th

from sb3_pvdr.common.errors import cli_entry


def log_probs(model: Any, obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
    """The current policy's log-probabilities of ``actions`` in ``obs``."""
    with th.no_grad():
        obs_t = {k: th.as_tensor(v, device=model.device) for k, v in obs.items()}
        _, log_prob, _ = model.policy.evaluate_actions(obs_t, th.as_tensor(actions, device=model.device))
    return log_prob.cpu().numpy()


def kl_on(model: Any, obs: dict[str, np.ndarray], actions: np.ndarray, old_log_prob: np.ndarray) -> float:
    """SB3's approx_kl of the current policy against ``old_log_prob`` on the given samples."""
    log_ratio = log_probs(model, obs, actions) - old_log_prob
    return float(np.mean(np.exp(log_ratio) - 1 - log_ratio))


def flat(buffer: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A rollout buffer's observations, actions and old log-probs, (n_steps * n_envs, ...)."""
    n = buffer.buffer_size * buffer.n_envs
    obs = {k: v.reshape(n, *v.shape[2:]).copy() for k, v in buffer.observations.items()}
    return obs, buffer.actions.reshape(n, -1).copy(), buffer.log_probs.reshape(n).copy()


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-f", "--folder", required=True, help="a PVDR run's train.py -f folder")
    parser.add_argument("--env", default="reach-v2")
    parser.add_argument("--seed", type=int, default=123, help="env seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    th.set_num_threads(args.threads)
    th.manual_seed(args.seed)
    import yaml

    from sb3_pvdr.enjoy import load_run
    from sb3_pvdr.pvdr import PVDR
    from sb3_pvdr.pvdr.interface import ALIGN

    _, env, path = load_run("pvdr", args.env, folder=args.folder, seed=args.seed)  # the run's env, as enjoy.py makes it
    config = yaml.safe_load((Path(path).parent / Path(path).stem / "config.yml").read_text())
    lr, clip = float(config["learning_rate"]), float(config["clip_range"])  # the run's constants (saved as lambdas)
    model = PVDR.load(path, env=env, seed=args.seed, custom_objects={  # with its env: one-env buffers
        "learning_rate": lr, "lr_schedule": lambda _: lr, "clip_range": lambda _: clip})
    model.tensorboard_log, model.verbose = None, 0  # log nothing into the run's folder
    _, callback = model._setup_learn(10**9, None, reset_num_timesteps=True)
    callback.on_training_start(locals(), globals())
    align_index = model.finetune_rollouts  # the first alignment rollout of Algorithm 1's cycle
    rollouts = []
    for _ in range(2):
        model._n_rollouts = align_index
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        rollouts.append((copy.deepcopy(model.rollout_buffer), flat(model.rollout_buffer)))
    assert model.rollout_phase == ALIGN
    start = copy.deepcopy(model.policy.state_dict())
    settings = {"as trained": {}, "vf_coef 0": {"vf_coef": 0.0}, "act_coef 0": {"act_coef": 0.0},
                "act_coef 0, vf_coef 0": {"act_coef": 0.0, "vf_coef": 0.0}, "z* zeroed": {"zero_z": True},
                "lr / 10": {"lr_scale": 0.1}, "1 epoch": {"n_epochs": 1}}
    result: dict[str, Any] = {"run": args.folder, "model": path, "samples_per_rollout": int(len(rollouts[0][1][2])),
                              "n_epochs": model.n_epochs, "batch_size": model.batch_size}
    defaults = {"vf_coef": model.vf_coef, "act_coef": model.act_coef, "n_epochs": model.n_epochs}
    for name, setting in settings.items():
        model.policy.load_state_dict(start)
        lr_now = lr * setting.get("lr_scale", 1.0)
        model.lr_schedule = lambda _, lr_now=lr_now: lr_now  # train() sets the optimizer's lr from it
        model.policy.optimizer = model.policy.optimizer_class(model.policy.parameters(), lr=lr_now,
                                                              **model.policy.optimizer_kwargs)
        model.n_epochs = setting.get("n_epochs", defaults["n_epochs"])
        model.vf_coef = setting.get("vf_coef", defaults["vf_coef"])
        model.act_coef = setting.get("act_coef", defaults["act_coef"])
        buffer = copy.deepcopy(rollouts[0][0])
        (obs_a, act_a, logp_a), (obs_b, act_b, logp_b) = rollouts[0][1], rollouts[1][1]
        if setting.get("zero_z"):
            buffer.observations["z_star"][:] = 0.0
            obs_a, obs_b = ({**o, "z_star": np.zeros_like(o["z_star"])} for o in (obs_a, obs_b))
            logp_a = log_probs(model, obs_a, act_a)
            buffer.log_probs[:] = logp_a.reshape(buffer.log_probs.shape)
            logp_b = log_probs(model, obs_b, act_b)
        model.rollout_buffer = buffer
        model.train()
        logged = model.logger.name_to_value
        figures = {"approx_kl_A": kl_on(model, obs_a, act_a, logp_a), "approx_kl_B": kl_on(model, obs_b, act_b, logp_b),
                   "sb3_logged_approx_kl": logged.get("train/approx_kl", float("nan")),
                   "clip_fraction": logged.get("train/clip_fraction", float("nan"))}
        result[name] = {key: float(f"{float(value):.4g}") for key, value in figures.items()}
        print(name, result[name], flush=True)
    env.close()
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
