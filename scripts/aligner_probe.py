"""Can an actor's network read the arm's position off its input? A supervised probe of aligner designs.

Issue "Make PVDR learn", cause 1: token-input policies (the paper's token PPO, PVDR with the oracle z) stayed at 0%
on one fixed reach variant where SB3's pixel PPO reached 100%. On a fixed variant the goal never changes, so the
scripted expert's action is a function of where the hand is. This probe records frames of that variant under a
noisy expert, then regresses the expert's action (and the hand position) from each design's observation with the
real SB3 policy networks (``policy.get_distribution(obs).distribution.mean``), for as many Adam steps as PPO makes
in 10k env steps (~1000), and reports held-out R^2 along the way. A design that cannot fit this in 1000 steps
cannot be taught it by PPO's noisier gradient either.

    MUJOCO_GL=egl python scripts/aligner_probe.py --out results/aligner_probe.json

Designs (``--designs``): ``pixels`` (SB3 MultiInputPolicy, NatureCNN per image), ``tokens-mean`` /
``tokens-spatial`` (TokenGoalPolicy, transformer), ``tokens-cnn`` / ``tokens-cnn-codebook`` (TokenGoalPolicy with
the grid CNN extractor, learned or codebook embeddings).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

# b - batch, t - frames, h w - token grid


def record(task: str, variant: int, episodes: int, steps: int, noise: float, seed: int, tokenizer: Any) -> dict[str, np.ndarray]:
    """Frames, goal, hand position and the expert's clean action along noisy-expert episodes of one variant."""
    from sb3_pvdr.envs import make_metaworld_env
    from sb3_pvdr.envs.goals import get_scripted_policy

    env = make_metaworld_env(task, image_size=tokenizer.image_size, variant=variant, seed=seed, terminate_on_success=False)
    expert = get_scripted_policy(task)
    rng = np.random.default_rng(seed)
    frames, prev, hands, actions, episode = [], [], [], [], []
    goal = None
    for ep in range(episodes):
        obs, _ = env.reset()
        goal = obs["desired_goal"]
        last = obs["observation"]
        for _ in range(steps):
            state = env.unwrapped.state_observation()
            action = np.clip(expert.get_action(state), -1, 1)
            frames.append(obs["observation"])
            prev.append(last)
            hands.append(state[:3])
            actions.append(action)
            episode.append(ep)
            last = obs["observation"]
            obs, *_ = env.step(np.clip(action + noise * rng.standard_normal(action.shape), -1, 1))
    env.close()
    return {
        "frames": np.stack(frames),
        "prev": np.stack(prev),
        "goal": np.asarray(goal),
        "hand": np.stack(hands).astype(np.float32),
        "action": np.stack(actions).astype(np.float32),
        "episode": np.asarray(episode),
    }


def observations(design: str, data: dict[str, np.ndarray], tokenizer: Any) -> dict[str, th.Tensor]:
    if design == "pixels":
        # SB3 hands images to the policy channel-first (VecTransposeImage)
        frames = np.ascontiguousarray(data["frames"].transpose(0, 3, 1, 2))
        goal = np.ascontiguousarray(np.broadcast_to(data["goal"].transpose(2, 0, 1), frames.shape))
        return {"observation": th.as_tensor(frames), "desired_goal": th.as_tensor(goal)}
    with th.inference_mode():
        now = tokenizer.encode(data["frames"]).long()
        prev = tokenizer.encode(data["prev"]).long()
        goal = tokenizer.encode(data["goal"][None]).long()
    return {
        "context_tokens": th.stack((prev, now), dim=1).clone(),  # (b, m=2, h, w)
        "goal_tokens": goal[None].expand(len(now), -1, -1, -1).clone(),  # (b, 1, h, w)
    }


def make_policy(design: str, obs: dict[str, th.Tensor], tokenizer_name: str) -> th.nn.Module:
    from stable_baselines3.common.policies import MultiInputActorCriticPolicy

    from sb3_pvdr.ppo_tokens import TokenGoalPolicy

    action_space = spaces.Box(-1, 1, (4,), np.float32)
    if design == "pixels":
        shape = tuple(obs["observation"].shape[1:])
        space = spaces.Dict({k: spaces.Box(0, 255, shape, np.uint8) for k in ("observation", "desired_goal")})
        return MultiInputActorCriticPolicy(
            space, action_space, lambda _: 3e-4, net_arch=dict(pi=[256], vf=[256]),
            features_extractor_kwargs=dict(cnn_output_dim=256),
        )
    m, h, w = obs["context_tokens"].shape[1:]
    space = spaces.Dict(
        {"context_tokens": spaces.Box(0, 255, (m, h, w), np.int64), "goal_tokens": spaces.Box(0, 255, (1, h, w), np.int64)}
    )
    kwargs: dict[str, Any] = {
        "tokens-mean": dict(dim=64, depth=3, heads=4, ff_dim=128, pool="mean"),
        "tokens-spatial": dict(dim=64, depth=3, heads=4, ff_dim=128, pool="spatial"),
        "tokens-cnn": dict(arch="cnn"),
        "tokens-cnn-codebook": dict(arch="cnn", codebook=tokenizer_name),
        "tokens-spatial-codebook": dict(dim=64, depth=3, heads=4, ff_dim=128, pool="spatial", codebook=tokenizer_name),
    }[design]
    return TokenGoalPolicy(space, action_space, lambda _: 3e-4, features_extractor_kwargs=kwargs)


def r2(pred: th.Tensor, target: th.Tensor) -> float:
    return float(1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())


def probe(design: str, train: dict[str, th.Tensor], val: dict[str, th.Tensor], y_train: th.Tensor, y_val: th.Tensor,
          steps: int, batch: int, tokenizer_name: str, seed: int) -> dict[str, Any]:
    th.manual_seed(seed)
    policy = make_policy(design, train, tokenizer_name)
    optimizer = th.optim.Adam(policy.parameters(), lr=3e-4)
    n = len(y_train)
    gen = th.Generator().manual_seed(seed)
    curve, start = [], time.perf_counter()

    def predict(obs: dict[str, th.Tensor]) -> th.Tensor:
        processed = {k: v.float() if k != "observation" and k != "desired_goal" else v for k, v in obs.items()}
        tensors, _ = policy.obs_to_tensor({k: v.numpy() for k, v in processed.items()})
        return policy.get_distribution(tensors).distribution.mean

    for step in range(1, steps + 1):
        idx = th.randint(0, n, (batch,), generator=gen)
        pred = predict({k: v[idx] for k, v in train.items()})
        loss = ((pred - y_train[idx]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in (50, 100, 250, 500, 1000, 2000) or step == steps:
            with th.no_grad():
                preds = th.cat([predict({k: v[i : i + 256] for k, v in val.items()}) for i in range(0, len(y_val), 256)])
            curve.append({"step": step, "val_r2": round(r2(preds, y_val), 4), "train_mse": round(float(loss), 5)})
            print(f"  {design:24s} step {step:5d} val R^2 {curve[-1]['val_r2']:+.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return {"curve": curve, "seconds": round(time.perf_counter() - start, 1), "parameters": sum(p.numel() for p in policy.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="reach-v2")
    parser.add_argument("--variant", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--val-episodes", type=int, default=6)
    parser.add_argument("--steps-per-episode", type=int, default=100)
    parser.add_argument("--noise", type=float, default=1.0, help="std of the Gaussian added to the expert's actions")
    parser.add_argument("--target", choices=("action", "hand"), default="action")
    parser.add_argument("--designs", default="pixels,tokens-mean,tokens-spatial,tokens-cnn,tokens-cnn-codebook")
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--tokenizer", default="metaworld-64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    th.set_num_threads(1)

    from sb3_pvdr.pretrained import resolve
    from sb3_pvdr.tokenizer import VQTokenizer

    tokenizer = VQTokenizer.load(resolve(args.tokenizer, "tokenizer")).eval()
    t0 = time.perf_counter()
    train_data = record(args.task, args.variant, args.episodes, args.steps_per_episode, args.noise, args.seed, tokenizer)
    val_data = record(args.task, args.variant, args.val_episodes, args.steps_per_episode, args.noise, args.seed + 1000, tokenizer)
    print(f"recorded {len(train_data['frames'])} + {len(val_data['frames'])} frames in {time.perf_counter() - t0:.0f} s", flush=True)
    y_train, y_val = th.as_tensor(train_data[args.target]), th.as_tensor(val_data[args.target])
    if args.target == "hand":  # standardise: R^2 is scale-free, the loss is not
        mu, sd = y_train.mean(0), y_train.std(0)
        y_train, y_val = (y_train - mu) / sd, (y_val - mu) / sd
    results: dict[str, Any] = {
        "task": args.task, "variant": args.variant, "target": args.target, "noise": args.noise,
        "train_frames": len(y_train), "val_frames": len(y_val), "train_steps": args.train_steps,
        "batch_size": args.batch_size, "tokenizer": args.tokenizer, "designs": {},
    }
    for design in args.designs.split(","):
        train_obs = observations(design, train_data, tokenizer)
        val_obs = observations(design, val_data, tokenizer)
        results["designs"][design] = probe(design, train_obs, val_obs, y_train, y_val, args.train_steps, args.batch_size, args.tokenizer, args.seed)
    print(json.dumps(results, indent=1))
    if args.out is not None:
        from sb3_pvdr.experiments.results import write_json_atomic

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, results)


if __name__ == "__main__":
    main()
