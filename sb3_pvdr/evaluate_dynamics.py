"""Model-quality report of a pre-trained visual dynamics model: does z carry the dynamics, and can planning use it?

    python -m sb3_pvdr.evaluate_dynamics --model metaworld-64 --tokenizer metaworld-64 --task reach-v2,plate-slide-v2
    python -m sb3_pvdr.evaluate_dynamics --model runs/dynamics64/dynamics.pt \
        --tokenizer runs/tokenizer64/tokenizer.pt --data data/tokens64_val --png assets/dynamics_predictions.png

Two sources of held-out data, either or both:

- ``--task``: random variants of Meta-World tasks (seeds ``--seed-base`` + i, not used in pre-training). Per
  variant the context is o_0 and o_1 (reset, one scripted-policy step; ``--context-start s``: o_s and o_{s+1}),
  the true future the next l frames of metaworld's scripted policy (no noise). Printed per task: accuracy of generated futures with the posterior z,
  the prior's mean and z = 0, overall and on the tokens that change; **plan diversity** (mean share of tokens in
  which the last frames of two prior candidates differ) next to the real change of the last frame over the same
  horizon; **plan gain** at N = 4 / 16 / 64: (goal distance of the average candidate - of the chosen z*) /
  (average candidate - the expert's posterior z), goal distance = mean |pixel| difference between the plan's
  decoded last frame and the goal image (ratio of the means over variants), printed next to the same distance of
  the last context frame and of the real future's last frame (how far l expert steps move toward the goal image at
  all). These are the gates of the shipped models (README). With ``--goal-probe EPISODES``: what the chosen z* tells about the goal (held-out ridge R^2
  of the goal position from z*, next to the prior's mean and the expert's posterior z;
  :mod:`sb3_pvdr.planning.goal_probe`). A plan gain > 0 only says the chosen plan's frames are nearer the goal
  image; the probe says whether z* then points the policy at the goal.
- ``--data``: clips of a held-out token folder, with the accuracies below and a PNG grid of
  context | true future | futures generated from several prior samples.

Accuracies (fraction of the l*h*w future tokens predicted exactly):

- ``generated``: greedy frame-by-frame generation (``model.generate``, what planning uses), compared
  with the true future tokens;
- ``teacher-forced``: argmax of ``decode_logits(x, y, z)`` (each frame predicted from the true earlier ones);
- ``changed``: generated accuracy on the tokens that differ from the last context frame, i.e. where
  something moved (copying the last frame scores 0 there);
- ``prior_mean``: z = the prior's mean (no sampling);
- ``prior best-of-S``: per clip, the best of the S prior samples (what a planner choosing among S
  candidates could reach).

A ``copy last context frame`` baseline is printed for scale. Expected after pre-training:
posterior > prior > zero.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from einops import repeat

from sb3_pvdr.common.checkpoint import load_checkpoint, read_checkpoint
from sb3_pvdr.common.errors import CheckpointError, ConfigError, cli_entry
from sb3_pvdr.dynamics import DynamicsConfig, VisualDynamicsModel
from sb3_pvdr.planning.goal_probe import (
    collect_goal_windows,
    goal_information,
    hand_space_report,
    print_goal_report,
    print_hand_report,
)
from sb3_pvdr.planning.planner import PLAN_DISTANCES
from sb3_pvdr.pretrained import resolve
from sb3_pvdr.pretrain import PRETRAIN_STATE, check_tokens_match, decode_clip_tokens, fixed_batch, load_tokenizer, tile_frames
from sb3_pvdr.video import TokenClipDataset

GOAL_PROBE_FOLDS = 6

# b - clips, s - prior samples, t - frames, h w - token grid, H W - pixels, c - channels


def load_dynamics(path: str) -> tuple[VisualDynamicsModel, Optional[int]]:
    """A model from ``dynamics.pt`` (kind ``visual_dynamics``) or a run's ``last.pt`` (``pretrain_state``),
    with the training step when the file records it.
    """
    data = read_checkpoint(path)  # data only (weights_only); CheckpointError for a missing / corrupt file
    if data["kind"] == PRETRAIN_STATE:
        model = VisualDynamicsModel(DynamicsConfig.from_dict(data["model_config"]))
        model.load_state_dict(data["state_dict"])
        return model, int(data["step"])
    model = VisualDynamicsModel.load(path)  # CheckpointError for a missing / wrong file
    last = Path(path).with_name("last.pt")
    step = None
    if last.is_file():
        try:
            step = int(load_checkpoint(last, PRETRAIN_STATE)["step"])
        except CheckpointError:
            pass
    return model, step


@torch.no_grad()
def evaluate(model: VisualDynamicsModel, x: torch.Tensor, y: torch.Tensor, n_prior: int, batch_size: int,
             generator: torch.Generator, goal: Optional[torch.Tensor] = None) -> dict[str, Any]:
    """Accuracies for z = posterior mean, z ~ prior (``n_prior`` samples) and z = 0 (``goal``: the clips' goal
    tokens ``(n, h, w)`` for a goal-conditioned prior)."""
    sums: dict[str, float] = {}
    per_frame: dict[str, torch.Tensor] = {}
    n = x.shape[0]
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        b = xb.shape[0]
        changed = yb != xb[:, -1:]  # tokens that differ from the last context frame
        post = model.posterior(xb, yb).mode()
        prior = model.prior(xb, None if goal is None else goal[start : start + batch_size])
        priors = [prior.mean + prior.std * torch.randn(prior.mean.shape, generator=generator) for _ in range(n_prior)]
        zs = {"posterior": post, "prior_mean": prior.mode(), "zero": torch.zeros_like(post)}
        prior_gen = []
        for z_name, z in [*zs.items(), *((f"prior_sample{i}", z) for i, z in enumerate(priors))]:
            gen = model.generate(xb, z)
            tf = model.decode_logits(xb, yb, z).argmax(dim=-1)
            hit = (gen == yb).float()
            key = "prior" if z_name.startswith("prior_sample") else z_name
            weight = b / (n_prior if key == "prior" else 1)
            add = {
                f"{key}/generated": hit.mean().item(),
                f"{key}/teacher_forced": (tf == yb).float().mean().item(),
                f"{key}/changed": (hit[changed].mean().item() if changed.any() else float("nan")),
            }
            for k, v in add.items():
                sums[k] = sums.get(k, 0.0) + v * weight
            frame_acc = hit.mean(dim=(2, 3)).sum(dim=0) / (n_prior if key == "prior" else 1)
            per_frame[key] = per_frame.get(key, 0) + frame_acc
            if key == "prior":
                prior_gen.append(hit.mean(dim=(1, 2, 3)))
        best = torch.stack(prior_gen).max(dim=0).values
        sums["prior/best_of_samples"] = sums.get("prior/best_of_samples", 0.0) + best.sum().item()
        copy = (repeat(xb[:, -1], "b h w -> b t h w", t=yb.shape[1]) == yb).float()
        sums["copy_last_frame/generated"] = sums.get("copy_last_frame/generated", 0.0) + copy.mean().item() * b
        sums["changed_fraction"] = sums.get("changed_fraction", 0.0) + changed.float().mean().item() * b
    result = {k: v / n for k, v in sums.items()}
    result["per_frame_generated"] = {k: (v / n).tolist() for k, v in per_frame.items()}
    return result


def expert_clip(task: str, seed: int, m: int, l: int, image_size: int, frame_step: int = 1,  # noqa: E741
                start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One held-out variant: context o_s..o_{s+m-1} and true future o_{s+m}..o_{s+m+l-1} of metaworld's scripted
    policy (no noise; the context starts ``start`` = s expert steps after reset; with ``frame_step`` k the frames
    o_s, o_{s+k}, o_{s+2k}, ...), and the goal image. :return: ``(frames (m + l, H, W, 3), goal (H, W, 3))``"""
    import warnings

    from sb3_pvdr.envs import get_scripted_policy, make_metaworld_env

    env = make_metaworld_env(task, image_size=image_size, seed=seed)
    try:
        policy = get_scripted_policy(task)
        obs, _ = env.reset(seed=seed)
        frames = [obs["observation"]]
        span = start + (m + l - 1) * frame_step + 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            while len(frames) < span:
                action = np.clip(policy.get_action(env.unwrapped.state_observation()), -1, 1).astype(np.float32)
                obs, _, terminated, truncated, _ = env.step(action)
                frames.append(obs["observation"])
                if terminated or truncated:  # solved within the clip: hold the last frame
                    frames += [frames[-1]] * (span - len(frames))
        return np.stack(frames[start::frame_step]), obs["desired_goal"]
    finally:
        env.close()


@torch.no_grad()
def evaluate_task(model: VisualDynamicsModel, tokenizer: Any, task: str, variants: int, seed_base: int,
                  candidates: tuple[int, ...], generator: torch.Generator, temperature: float = 1.0,
                  context_start: int = 0, recorded_seed: Optional[int] = None) -> dict[str, Any]:
    """Accuracy, plan diversity and plan gain on ``variants`` held-out variants of ``task`` (module docstring);
    ``context_start``: expert steps between reset and the context's first frame; ``recorded_seed``: instead of the
    held-out seeds, the variants of episodes 0, 1, ... that ``sb3_pvdr.video.record --seed recorded_seed`` recorded
    (pre-training's own variants: an over-fitting check)."""
    from sb3_pvdr.video.record import episode_seed
    m, l = model.config.m, model.config.l  # noqa: E741
    n_max = max(candidates)
    sums: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        sums.setdefault(key, []).append(float(value))

    for i in range(variants):
        seed = seed_base + i if recorded_seed is None else episode_seed(recorded_seed, task, i)
        frames, goal = expert_clip(task, seed, m, l, tokenizer.image_size, model.config.frame_step, start=context_start)
        tokens = tokenizer.encode(torch.from_numpy(frames)).long()  # (m + l, h, w)
        x, y = tokens[None, :m], tokens[None, m:]
        changed = y != x[:, -1:]
        prior = model.prior(x, tokenizer.encode(goal[None]).long())
        z_post = model.posterior(x, y).mode()
        for name, z in (("posterior", z_post), ("prior_mean", prior.mode()), ("zero", torch.zeros_like(z_post))):
            hit = (model.generate(x, z) == y).float()
            add(f"{name}/generated", hit.mean().item())
            if changed.any():
                add(f"{name}/changed", hit[changed].mean().item())
        # N prior candidates (nested: the first 4 of 16 of 64), their plans' last frames
        z = prior.mean + temperature * prior.std * torch.randn((n_max, *prior.mean.shape[1:]), generator=generator)
        plans = model.generate(x, torch.cat((z, z_post)))  # (n_max + 1, l, h, w); the last: the expert's z
        last = plans[:, -1]
        differ = (last[:n_max, None] != last[None, :n_max]).float().mean(dim=(2, 3))  # (n, n)
        add("diversity", (differ.sum() / (n_max * (n_max - 1))).item())
        add("real_change", (y[0, -1] != x[0, -1]).float().mean().item())
        goal_px = torch.from_numpy(goal).float() / 255.0
        # plus two references without z: the last context frame (no motion) and the real future's last frame (the
        # expert's own motion, through the tokenizer): is the goal image nearer after l expert steps at all?
        decoded = tokenizer.decode(torch.cat((last, x[:, -1], y[:, -1])))
        dist, ref = (decoded - goal_px).abs().mean(dim=(1, 2, 3)).split((n_max + 1, 2))  # (n_max + 1,), (2,)
        add("goal_distance/expert", dist[-1].item())
        add("goal_distance/context", ref[0].item())
        add("goal_distance/real", ref[1].item())
        for n in candidates:
            add(f"goal_distance/chosen@{n}", dist[:n].min().item())
            add(f"goal_distance/average@{n}", dist[:n].mean().item())
    result: dict[str, Any] = {k: float(np.mean(v)) for k, v in sums.items()}
    result["variants"] = variants
    result["context_start"] = context_start
    result["recorded_seed"] = recorded_seed
    result["diversity_vs_real_change"] = result["diversity"] / max(result["real_change"], 1e-9)
    for n in candidates:
        gap = result[f"goal_distance/average@{n}"] - result["goal_distance/expert"]
        gain = result[f"goal_distance/average@{n}"] - result[f"goal_distance/chosen@{n}"]
        # undefined when the expert's plan is not closer to the goal than the average candidate (e.g. z is ignored)
        result[f"plan_gain@{n}"] = gain / gap if gap > 1e-4 else float("nan")
    return result


def print_task_report(task: str, r: dict[str, Any], candidates: tuple[int, ...]) -> None:
    which = "held-out" if r.get("recorded_seed") is None else f"pre-training (record --seed {r['recorded_seed']})"
    print(f"{task}: {r['variants']} {which} variants")
    print(f"  accuracy (generated)   all     changing tokens")
    for name in ("posterior", "prior_mean", "zero"):
        print(f"  {name:<20}{r[f'{name}/generated']:>7.4f}{r.get(f'{name}/changed', float('nan')):>12.4f}")
    print(f"  plan diversity {r['diversity']:.4f} vs real change {r['real_change']:.4f} "
          f"({r['diversity_vs_real_change']:.2f} of it)")
    print("  plan gain " + ", ".join(f"N={n}: {r[f'plan_gain@{n}']:.2f}" for n in candidates)
          + f" (goal distance: expert z {r['goal_distance/expert']:.4f}, "
          + ", ".join(f"chosen@{n} {r[f'goal_distance/chosen@{n}']:.4f} avg {r[f'goal_distance/average@{n}']:.4f}"
                      for n in candidates) + ")")
    print(f"  goal distance without z: last context frame {r['goal_distance/context']:.4f}, real future's last frame "
          f"{r['goal_distance/real']:.4f} (plan gain is undefined where no plan gets nearer the goal than the average "
          "candidate)")


@torch.no_grad()
def labelled_grid(model: VisualDynamicsModel, tokenizer: Any, x: torch.Tensor, y: torch.Tensor, n_prior: int,
                  generator: torch.Generator, goal: Optional[torch.Tensor] = None) -> np.ndarray:
    """For each clip: row 'true' = context | true future; row 'post' = context | future from the posterior
    mean; rows 'prior i' = context | future from prior sample i. A label strip on the left."""
    import cv2

    prior = model.prior(x, goal)
    preds = [model.generate(x, model.posterior(x, y).mode())]
    preds += [model.generate(x, prior.mean + prior.std * torch.randn(prior.mean.shape, generator=generator))
              for _ in range(n_prior)]
    ctx, fut = decode_clip_tokens(tokenizer, x), decode_clip_tokens(tokenizer, y)
    pred_frames = [decode_clip_tokens(tokenizer, p) for p in preds]
    labels = ["true", "post."] + [f"prior {i + 1}" for i in range(n_prior)]
    rows = []
    for i in range(x.shape[0]):
        rows.append(torch.cat([ctx[i], fut[i]]))
        rows += [torch.cat([ctx[i], p[i]]) for p in pred_frames]
    image = tile_frames(torch.stack(rows))
    row_h = image.shape[0] // len(rows)
    strip = np.full((image.shape[0], 56, 3), 255, dtype=np.uint8)
    for r in range(len(rows)):
        cv2.putText(strip, labels[r % len(labels)], (2, r * row_h + row_h // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    # a dark bar marks where the context ends and the future begins
    frame_w = image.shape[1] // (x.shape[1] + y.shape[1])
    image[:, x.shape[1] * frame_w - 2 : x.shape[1] * frame_w] = (200, 0, 0)
    return np.concatenate([strip, image], axis=1)


@cli_entry
def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="dynamics.pt, a run's last.pt, or a shipped model's name")
    parser.add_argument("--tokenizer", required=True, help="the tokenizer the model was pre-trained with (path or name)")
    parser.add_argument("--data", default=None, help="held-out token folder (clip accuracies and the PNG grid)")
    parser.add_argument("--task", default=None, help="comma-separated Meta-World tasks for the planning report, e.g. reach-v2,plate-slide-v2")
    parser.add_argument("--variants", type=int, default=20, help="held-out variants per task (default 20)")
    parser.add_argument("--seed-base", type=int, default=100_000, help="env seeds of the held-out variants start here")
    parser.add_argument("--recorded-variants", type=int, default=None, metavar="SEED",
                        help="with --task: evaluate on the variants `sb3_pvdr.video.record --seed SEED` recorded (episodes "
                             "0, 1, ...; the reference data: 0) instead of held-out ones: is the model over-fitted to them?")
    parser.add_argument("--context-start", type=int, default=0,
                        help="expert steps between reset and the context's first frame (default 0: plan from reset; "
                             "e.g. 24 on plate-slide, where the expert first walks away from the goal to the puck)")
    parser.add_argument("--candidates", default="4,16,64", help="N of the plan gain (default 4,16,64)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="prior std scale of the candidates (PVDR's prior_temperature; default 1)")
    parser.add_argument("--goal-probe", type=int, default=0, metavar="EPISODES",
                        help="with --task: also probe what z* tells about the goal on this many held-out episodes "
                             "(sb3_pvdr.planning.goal_probe; ~6 s per episode on one core; 0: off)")
    parser.add_argument("--probe-candidates", default="1,4,16", help="N of the goal probe's planned z* (default 1,4,16)")
    parser.add_argument("--hand-candidates", type=int, default=16,
                        help="with --goal-probe: prior candidates per window whose last plan frame a hand locator reads "
                             "(where eq. (2)'s candidates put the hand; 0: off)")
    parser.add_argument("--probe-distance", default="mean", choices=list(PLAN_DISTANCES),
                        help="eq. (2)'s plan-to-goal distance in the goal probe (PVDR's plan_distance; default mean)")
    parser.add_argument("--probe-steps", type=int, default=60, help="agent steps per goal-probe episode (a window every 6)")
    parser.add_argument("--probe-metric", default="codes", choices=["codes", "pixels"],
                        help="plan distance of the goal probe's planning (PVDR's plan_metric; default codes)")
    parser.add_argument("--clips", type=int, default=256, help="held-out clips, spread evenly over the folder")
    parser.add_argument("--prior-samples", type=int, default=4, help="z samples from the prior per clip")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--png", default=None, help="write the prediction grid here (e.g. assets/dynamics_predictions.png)")
    parser.add_argument("--grid-clips", type=int, default=2, help="clips in the PNG grid (those with the most motion)")
    parser.add_argument("--png-colors", type=int, default=256, help="palette size of the PNG (0: full RGB)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 beside training runs)")
    args = parser.parse_args(argv)

    if args.data is None and args.task is None:
        raise ConfigError("give --task (held-out env variants) and/or --data (a held-out token folder)")
    candidates = tuple(int(n) for n in args.candidates.split(","))
    if args.recorded_variants is not None and (args.recorded_variants < 0 or not args.task):
        raise ConfigError(f"--recorded-variants needs --task and a seed >= 0, got {args.recorded_variants}")
    if args.context_start < 0:
        raise ConfigError(f"--context-start must be >= 0, got {args.context_start}")
    if min(candidates) < 1 or args.variants < 1:
        raise ConfigError(f"--candidates and --variants must be positive, got {args.candidates} and {args.variants}")
    probe_candidates = tuple(int(n) for n in args.probe_candidates.split(","))
    if min(probe_candidates) < 1 or args.goal_probe < 0:
        raise ConfigError(f"--probe-candidates and --goal-probe must be positive, got {args.probe_candidates} and {args.goal_probe}")
    if args.goal_probe and not args.task:
        raise ConfigError("--goal-probe needs --task (the env whose variants it probes)")
    if args.hand_candidates < 0:
        raise ConfigError(f"--hand-candidates must be >= 0, got {args.hand_candidates}")
    if 0 < args.goal_probe < GOAL_PROBE_FOLDS:
        raise ConfigError(f"--goal-probe needs at least {GOAL_PROBE_FOLDS} episodes (one fold each), got {args.goal_probe}")
    if args.task:  # headless rendering, as the other entry points (before metaworld imports mujoco)
        os.environ.setdefault("MUJOCO_GL", "egl")
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, step = load_dynamics(resolve(args.model, "dynamics"))
    model.eval()
    tokenizer = load_tokenizer(resolve(args.tokenizer, "tokenizer"), torch.device("cpu"))
    model.check_tokenizer(tokenizer)
    report: dict[str, Any] = {"model": str(args.model), "tokenizer": str(args.tokenizer), "step": step}
    if args.task:
        generator = torch.Generator().manual_seed(args.seed)
        for task in [t.strip() for t in args.task.split(",") if t.strip()]:
            report[task] = evaluate_task(model, tokenizer, task, args.variants, args.seed_base, candidates, generator,
                                         args.temperature, context_start=args.context_start,
                                         recorded_seed=args.recorded_variants)
            print_task_report(task, report[task], candidates)
            if args.goal_probe:
                data = collect_goal_windows(task, tokenizer, model, episodes=args.goal_probe, steps=args.probe_steps,
                                            candidates=probe_candidates, hand_candidates=args.hand_candidates,
                                            distance=args.probe_distance,
                                            metric=args.probe_metric, temperature=args.temperature,
                                            seed=args.seed_base + args.seed)
                probe = goal_information(data, probe_candidates, folds=GOAL_PROBE_FOLDS)
                probe["settings"] = {"episodes": args.goal_probe, "steps": args.probe_steps, "candidates": list(probe_candidates),
                                     "metric": args.probe_metric, "distance": args.probe_distance,
                                     "temperature": args.temperature}
                report[task]["goal_probe"] = probe
                print_goal_report(task, probe)
                if args.hand_candidates:
                    hand_ns = tuple(n for n in probe_candidates if 1 < n <= args.hand_candidates) or (args.hand_candidates,)
                    hand = hand_space_report(data, tokenizer, hand_ns, folds=GOAL_PROBE_FOLDS)
                    report[task]["hand_probe"] = hand
                    print_hand_report(task, hand, hand_ns)
    if args.data is None:
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return
    check_tokens_match(Path(args.data), tokenizer)
    dataset = TokenClipDataset(args.data, model.config.m, model.config.l, frame_step=model.config.frame_step,
                               goal=model.config.prior_goal)
    x, y, *goal = fixed_batch(dataset, args.clips)
    goal = goal[0] if goal else None
    generator = torch.Generator().manual_seed(args.seed)

    result = evaluate(model, x, y, args.prior_samples, args.batch_size, generator, goal)
    result.update(model=str(args.model), step=step, clips=int(x.shape[0]), prior_samples=args.prior_samples,
                  data=str(args.data))
    result.update({k: v for k, v in report.items() if k not in result})
    print(f"model {args.model} (step {step}), {x.shape[0]} held-out clips from {args.data}, "
          f"{result['changed_fraction']:.1%} of future tokens differ from the last context frame")
    print(f"{'z':<18}{'generated':>11}{'teacher-forced':>16}{'changed':>9}")
    for key in ("posterior", "prior", "prior_mean", "zero"):
        print(f"{key:<18}{result[f'{key}/generated']:>11.4f}{result[f'{key}/teacher_forced']:>16.4f}"
              f"{result[f'{key}/changed']:>9.4f}")
    print(f"{'prior best-of-' + str(args.prior_samples):<18}{result['prior/best_of_samples']:>11.4f}")
    print(f"{'copy last frame':<18}{result['copy_last_frame/generated']:>11.4f}{'':>16}{0.0:>9.4f}")
    ordered = result["posterior/generated"] > result["prior/generated"] > result["zero/generated"]
    print(f"posterior > prior > zero (generated): {ordered}")

    if args.png:
        # show the evaluated clips where most tokens move (a static clip shows nothing about z)
        motion = (y != x[:, -1:]).float().mean(dim=(1, 2, 3))
        pick = motion.argsort(descending=True)[: args.grid_clips]
        gx, gy = x[pick], y[pick]
        image = labelled_grid(model, tokenizer, gx, gy, args.prior_samples, generator,
                              None if goal is None else goal[pick])
        from PIL import Image

        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(image)
        if args.png_colors > 0:  # an adaptive palette: ~1/3 of the RGB file size, for a repository asset
            pil = pil.quantize(colors=args.png_colors)
        pil.save(args.png, optimize=True)
        print(f"wrote {args.png} ({image.shape[1]}x{image.shape[0]} px)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
