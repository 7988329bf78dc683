"""Planning overhead of PVDR: env steps/s of the PVDR agent vs the pixel-PPO baseline on the same env, and
milliseconds per planning call (eq. (2)) for several numbers of candidates N.

    MUJOCO_GL=egl python benchmarks/planning_overhead.py                 # cpu profiles, reach-v2, 64x64
    MUJOCO_GL=egl python benchmarks/planning_overhead.py --steps 500 --candidates 1 4 8 16 32

Both agents act in ``reach-v2`` (one env, deterministic actions, the loop of ``collect_rollouts``: policy
forward + ``env.step``); the PVDR agent's env is wrapped in the ``PlanningWrapper`` (tokenize the new frame,
sample N latents, decode N plans of l frames, decode them to pixels, pick the closest to the goal) with the
default settings of ``zoo_configs/pvdr.yml``, on the models it names (``--tokenizer`` / ``--dynamics``: others, or
``random`` for the ``cpu`` profiles with random weights: weights do not change the cost, a config such as a
goal-conditioned prior does). PPO is SB3's ``MultiInputPolicy``
(NatureCNN per image) as in ``zoo_configs/ppo.yml``.

Two env-steps/s figures, each PVDR vs PPO in the same run:

- acting: the deterministic acting loop only (policy forward + ``env.step``), one env;
- training: ``model.learn()`` with each algorithm's ``zoo_configs/<algo>.yml`` settings for the env (2 envs x
  250 steps per rollout, 10 epochs, PVDR's fine-tuning/alignment rollouts included), i.e. SB3's ``time/fps``:
  rollouts and updates together, which is what a training run's wall clock sees. ``--train-rollouts 0`` skips it.

And a compute floor, to tell slow code from too much arithmetic: the FLOPs each agent spends per env step
(``torch.utils.flop_counter``: PPO's policy forward; PVDR's tokenizer encode of the new frame, aligner forward,
and one planning call (prior + N-candidate generation) divided by ``replan_every``), this machine's fp32 matmul
FLOP/s measured in the same run, and the raw env step time. ``best case`` is the steps/s each agent would reach
if its network ran at the matmul peak (``1 / (t_env + flops / peak)``): a ratio below the target there means
the target needs less arithmetic per step (smaller N, plans reused longer, smaller models) or faster hardware,
not faster code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional, Union

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402
from pretrain_throughput import matmul_flops_per_s  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from sb3_pvdr.common.errors import ConfigError, cli_entry  # noqa: E402
from sb3_pvdr.common.precision import BF16_CPU_FLAGS, cpu_flags  # noqa: E402
from sb3_pvdr.dynamics import DynamicsConfig, VisualDynamicsModel  # noqa: E402
from sb3_pvdr.envs import make_metaworld_env  # noqa: E402
from sb3_pvdr.planning import Planner, PlanningWrapper  # noqa: E402
from sb3_pvdr.pretrained import resolve  # noqa: E402
from sb3_pvdr.pvdr import PVDR  # noqa: E402
from sb3_pvdr.tokenizer.config import TokenizerConfig  # noqa: E402
from sb3_pvdr.tokenizer.model import VQTokenizer  # noqa: E402
from sb3_pvdr.zoo import NameStoreDict  # noqa: E402  (train.py's -params: bare model names stay strings)


@dataclass
class Args:
    env: str = "reach-v2"
    """image-goal task"""
    image_size: int = 64
    """frame size (must match the tokenizer: 64 for the cpu profile)"""
    steps: int = 300
    """env steps timed per agent (after a warm-up)"""
    warmup: int = 20
    """untimed steps first (allocations, first renders)"""
    n_candidates: int = 4
    """N of the PVDR agent (zoo_configs/pvdr.yml default)"""
    replan_every: int = 4
    """re-planning interval of the PVDR agent (zoo_configs/pvdr.yml default)"""
    plan_metric: str = "codes"
    """plan distance space of the PVDR agent (zoo_configs/pvdr.yml default); the table shows both"""
    candidates: list[int] = field(default_factory=lambda: [1, 4, 8, 16])
    """N values for the ms-per-planning-call table"""
    calls: int = 20
    """planning calls timed per N"""
    tokenizer: Optional[str] = None
    """tokenizer: a checkpoint, a shipped name, or ``random`` (the cpu profile, random weights); default: the one
    ``zoo_configs/pvdr.yml`` names for the env"""
    dynamics: Optional[str] = None
    """dynamics model: a checkpoint, a shipped name, or ``random`` (the cpu profile); default: ``zoo_configs/pvdr.yml``'s"""
    threads: int = 1
    """torch threads (train.py uses 1)"""
    train_rollouts: int = 2
    """rollouts of model.learn() timed per agent (2 = one PVDR fine-tuning + one alignment rollout)"""
    train_vec_env: str = "dummy"
    """vec env of the model.learn() figures: dummy (one process) or subproc (one process per env: both cores act
    and plan; PVDR pushes its fine-tuned weights to the workers after each fine-tuning rollout)"""
    train_threads: int = 1
    """torch threads of the main process for the model.learn() figures, both agents (1 = train.py's default; with
    --train-vec-env subproc the main process only runs the updates while the workers act, so 2 uses both cores there)"""
    aligner: Optional[str] = None
    """aligner trunk of the PVDR agent, transformer or cnn (default: zoo_configs/pvdr.yml's policy_kwargs)"""
    aligner_inputs: Optional[str] = None
    """what the PVDR aligner reads: z, plan or z+plan (the planning wrapper then observes the plan; default:
    zoo_configs/pvdr.yml's policy_kwargs)"""
    bf16: Optional[str] = None
    """bf16 autocast of the PVDR agent's planning models: true, false or auto (default: zoo_configs/pvdr.yml's bf16)"""
    pvdr_params: Optional[dict] = None
    """overrides of zoo_configs/pvdr.yml for the PVDR agent's model.learn() figures, key:value as train.py's -params
    (e.g. lambda_2:0.8 to time the paper's goal term of eq. (4) in fine-tuning)"""
    seed: int = 0
    """seed"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Args):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        name = "--" + f.name.replace("_", "-")
        if f.name == "pvdr_params":
            parser.add_argument(name, type=str, nargs="+", action=NameStoreDict, default=None)
        elif isinstance(default, list):
            parser.add_argument(name, type=int, nargs="+", default=default)
        elif default is None:
            parser.add_argument(name, default=None)
        else:
            parser.add_argument(name, type=type(default), default=default)
    return Args(**vars(parser.parse_args()))


def steps_per_second(model, env, steps: int, warmup: int) -> float:
    """Deterministic acting loop (policy forward + env.step), as in collect_rollouts."""
    obs = env.reset()
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        action, _ = model.predict(obs, deterministic=True)
        obs, _, _, _ = env.step(action)
    return steps / (time.perf_counter() - start)


def count_flops(fn) -> float:
    """FLOPs of one call of ``fn`` (matmuls and convolutions, as ``torch.utils.flop_counter`` counts them)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def raw_env_step_seconds(make, steps: int, seed: int) -> float:
    """Seconds per ``env.step`` (physics + render) with random actions, no policy."""
    env = make()
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(5):
        env.step(env.action_space.sample())
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    elapsed = (time.perf_counter() - start) / steps
    env.close()
    return elapsed


# Where a training step's time goes: (label, class, method). Timers nest (render inside env step, tokenizer and
# planning inside the planning wrapper's step): each row is the inclusive time of that call.
STAGES = (
    ("env step (physics + render)", "sb3_pvdr.envs.metaworld_env.ImageGoalMetaWorldEnv", "step"),
    ("  render", "sb3_pvdr.envs.rendering.SceneRenderer", "render"),
    ("tokenizer encode", "sb3_pvdr.planning.wrapper.PlanningWrapper", "_encode"),
    ("planning (eq. 2)", "sb3_pvdr.planning.wrapper.PlanningWrapper", "_replan"),
    ("policy forward while acting", "stable_baselines3.common.policies.ActorCriticPolicy", "forward"),
    ("PPO update (+ L_act)", "stable_baselines3.ppo.ppo.PPO", "train"),
    ("  L_act targets E(x, y)", "sb3_pvdr.pvdr.pvdr.PVDR", "_compute_alignment_targets"),
    ("fine-tuning pass", "sb3_pvdr.pvdr.callbacks.DynamicsFineTuneCallback", "finetune"),
)


@contextlib.contextmanager
def stage_timers() -> Iterator[dict[str, float]]:
    """Patch the methods of :data:`STAGES` with timers; yields label -> accumulated seconds (outermost calls)."""
    import importlib

    totals: dict[str, float] = {label: 0.0 for label, _, _ in STAGES}
    patched = []
    for label, path, name in STAGES:
        module, cls_name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), cls_name)
        original = cls.__dict__[name]
        depth = {"n": 0}

        def timed(*args, __original=original, __label=label, __depth=depth, **kwargs):
            __depth["n"] += 1
            start = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                __depth["n"] -= 1
                if __depth["n"] == 0:  # PVDR.train calls PPO.train: count the outer call once
                    totals[__label] += time.perf_counter() - start

        setattr(cls, name, timed)
        patched.append((cls, name, original))
    try:
        yield totals
    finally:
        for cls, name, original in patched:
            setattr(cls, name, original)


def print_breakdown(label: str, totals: dict[str, float], steps: int, elapsed: float) -> None:
    print(f"  {label}: ms per env step (inclusive; {steps} steps, {1000 * elapsed / steps:.1f} ms in all)")
    for stage, seconds in totals.items():
        if seconds > 0:
            print(f"    {stage:<32s}{1000 * seconds / steps:8.2f}")


def yaml_hyperparams(algo: str, env_id: str) -> dict:
    """``zoo_configs/<algo>.yml``'s entry for ``env_id`` merged over its ``default:`` (as train.py reads it)."""
    from sb3_pvdr.zoo import default_conf_file, load_zoo_file, lookup_hyperparams

    return lookup_hyperparams(load_zoo_file(default_conf_file(algo)), env_id)


def pvdr_yaml_policy_kwargs(env_id: str, aligner: Optional[str], inputs: Optional[str] = None) -> dict:
    """``zoo_configs/pvdr.yml``'s policy_kwargs for ``env_id``, with the aligner's ``arch`` / ``inputs`` replaced when given."""
    from sb3_pvdr.zoo import resolve_policy_kwargs

    kwargs = resolve_policy_kwargs(yaml_hyperparams("pvdr", env_id).get("policy_kwargs", {}))
    if aligner is not None:
        if aligner not in ("transformer", "cnn"):
            raise ConfigError(f"--aligner must be transformer or cnn, got {aligner!r}")
        kwargs["features_extractor_kwargs"] = {**kwargs.get("features_extractor_kwargs", {}), "arch": aligner}
    if inputs is not None:
        from sb3_pvdr.pvdr.extractor import INPUTS

        if inputs not in INPUTS:
            raise ConfigError(f"--aligner-inputs must be one of {INPUTS}, got {inputs!r}")
        kwargs["features_extractor_kwargs"] = {**kwargs.get("features_extractor_kwargs", {}), "inputs": inputs}
    return kwargs


def pvdr_yaml_models(env_id: str) -> dict[str, str]:
    """The ``tokenizer`` / ``dynamics`` that ``zoo_configs/pvdr.yml``'s PlanningWrapper loads for ``env_id``."""
    wrappers = yaml_hyperparams("pvdr", env_id).get("env_wrapper", [])
    for entry in wrappers if isinstance(wrappers, list) else [wrappers]:
        if isinstance(entry, dict) and "sb3_pvdr.planning.PlanningWrapper" in entry:
            kwargs = entry["sb3_pvdr.planning.PlanningWrapper"] or {}
            return {part: str(kwargs[part]) for part in ("tokenizer", "dynamics") if part in kwargs}
    return {}


def pvdr_yaml_bf16(env_id: str, bf16: Optional[str]) -> Union[bool, str]:
    """``--bf16`` as PVDR's ``bf16`` argument, or ``zoo_configs/pvdr.yml``'s value for ``env_id`` (false if absent)."""
    if bf16 is None:
        return yaml_hyperparams("pvdr", env_id).get("bf16", False)
    value = {"true": True, "false": False, "auto": "auto"}.get(bf16.lower())
    if value is None:
        raise ConfigError(f"--bf16 must be true, false or auto, got {bf16!r}")
    return value


def process_cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of process ``pid`` so far (all its threads; Linux ``/proc``), None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15 of proc(5))


def workers_cpu_seconds(env) -> Optional[float]:
    """CPU seconds of a SubprocVecEnv's worker processes so far (None for a DummyVecEnv or without ``/proc``)."""
    processes = getattr(env, "processes", None)
    if not processes:
        return None
    times = [process_cpu_seconds(p.pid) for p in processes]
    return None if any(t is None for t in times) else float(sum(times))


def training_steps_per_second(algo: str, env_id: str, rollouts: int, seed: int,
                              **overrides) -> tuple[float, Optional[float]]:
    """``model.learn()`` env steps/s (SB3's ``time/fps``) with the yaml settings of ``algo`` for ``env_id``, and the CPU
    seconds per env step of all its processes (main + SubprocVecEnv workers; None where the workers' are unreadable)."""
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_pvdr.zoo import resolve_policy_kwargs

    hp = yaml_hyperparams(algo, env_id)
    for key in ("n_timesteps", "env_wrapper", "callback", "monitor_kwargs", "normalize", "frame_stack"):
        hp.pop(key, None)
    n_envs, env_kwargs = hp.pop("n_envs", 1), hp.pop("env_kwargs", {})
    hp["policy_kwargs"] = resolve_policy_kwargs(hp.get("policy_kwargs", {}))
    wrapper = overrides.pop("wrapper", None)
    vec_env = overrides.pop("vec_env", "dummy")
    from stable_baselines3.common.vec_env import SubprocVecEnv

    env = make_vec_env(lambda: make_metaworld_env(env_id, seed=seed, **env_kwargs), n_envs=n_envs, seed=seed, wrapper_class=wrapper,
                       vec_env_cls=SubprocVecEnv if vec_env == "subproc" else DummyVecEnv)
    model = (PVDR if algo == "pvdr" else PPO)(env=env, seed=seed, device="cpu", **{**hp, **overrides})
    steps = rollouts * model.n_steps * n_envs
    with stage_timers() as totals:
        workers_start = workers_cpu_seconds(env)
        cpu_start, start = time.process_time(), time.perf_counter()
        model.learn(steps)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        workers_end = workers_cpu_seconds(env)
    print_breakdown(algo, totals, steps, elapsed)
    # CPU time of this process (all its threads): above the stages' sum when idle OpenMP threads spin-wait (try
    # OMP_WAIT_POLICY=PASSIVE where the cores are shared)
    print(f"    {'main process CPU time':<32s}{1000 * cpu / steps:8.2f}")
    workers = None if workers_start is None or workers_end is None else workers_end - workers_start
    if workers is not None:
        print(f"    {'workers CPU time (env, planning)':<32s}{1000 * workers / steps:8.2f}")
    env.close()
    return steps / elapsed, (None if workers is None else (cpu + workers) / steps)


@cli_entry
def main() -> None:
    args = parse_args()
    if args.pvdr_params:  # a typo fails here in one line, not after the acting benchmarks
        from sb3_pvdr.zoo import check_hyperparams

        check_hyperparams("pvdr", PVDR, {"policy": "PVDRPolicy", **args.pvdr_params}, source="--pvdr-params")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    # ------------------------------------------------------------------ models
    yaml_models = pvdr_yaml_models(args.env)
    tokenizer_spec = args.tokenizer or yaml_models.get("tokenizer", "random")
    dynamics_spec = args.dynamics or yaml_models.get("dynamics", "random")
    if tokenizer_spec == "random":
        tokenizer = VQTokenizer(TokenizerConfig.profile("cpu", image_size=args.image_size, kmeans_init=False)).eval()
    else:
        tokenizer = VQTokenizer.load(resolve(tokenizer_spec, "tokenizer")).eval()
    if dynamics_spec == "random":
        dynamics = VisualDynamicsModel(DynamicsConfig.profile("cpu")).eval()
    else:
        dynamics = VisualDynamicsModel.load(resolve(dynamics_spec, "dynamics")).eval()
    print(f"models: tokenizer {tokenizer_spec}, dynamics {dynamics_spec} (prior sees the goal: {dynamics.config.prior_goal})")
    make = lambda: make_metaworld_env(args.env, image_size=args.image_size, seed=args.seed)  # noqa: E731

    # ------------------------------------------------------------------ agents
    ppo_env = DummyVecEnv([make])
    ppo = PPO("MultiInputPolicy", ppo_env, seed=args.seed, device="cpu", policy_kwargs=dict(features_extractor_kwargs=dict(cnn_output_dim=256), net_arch=dict(pi=[256], vf=[256])))
    pvdr_policy_kwargs = pvdr_yaml_policy_kwargs(args.env, args.aligner, args.aligner_inputs)
    observe_plan = "plan" in pvdr_policy_kwargs.get("features_extractor_kwargs", {}).get("inputs", "z")
    pvdr_env = DummyVecEnv([lambda: PlanningWrapper(make(), tokenizer, dynamics, seed=args.seed, observe_plan=observe_plan)])
    bf16 = pvdr_yaml_bf16(args.env, args.bf16)
    pvdr = PVDR("PVDRPolicy", pvdr_env, seed=args.seed, device="cpu", n_candidates=args.n_candidates, replan_every=args.replan_every,
                plan_metric=args.plan_metric, policy_kwargs=pvdr_policy_kwargs, bf16=bf16)
    print(f"PVDR aligner: {pvdr_policy_kwargs['features_extractor_kwargs']}")
    native = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags()]
    print(f"PVDR bf16 autocast: {pvdr.use_bf16} (bf16={bf16!r}; CPU native bf16: {', '.join(native) if native else 'no (avx2/avx512 only: emulated, slower)'})")

    # ------------------------------------------------------------------ env steps/s
    ppo_sps = steps_per_second(ppo, ppo_env, args.steps, args.warmup)
    pvdr_sps = steps_per_second(pvdr, pvdr_env, args.steps, args.warmup)
    print(f"env steps/s on {args.env} ({args.image_size}x{args.image_size}, {args.threads} torch thread(s), {args.steps} steps):")
    print(f"  pixel PPO                          {ppo_sps:8.1f}")
    label = f"PVDR (N={args.n_candidates}, replan every {args.replan_every}, {args.plan_metric})"
    print(f"  {label:<35s}{pvdr_sps:8.1f}   ratio {pvdr_sps / ppo_sps:.2f}x (target >= 0.5x)")

    # ------------------------------------------------------------------ compute floor
    peak = matmul_flops_per_s(512, torch.float32, torch.device("cpu"), min_time=0.3)
    t_env = raw_env_step_seconds(make, args.steps, args.seed)
    ppo_obs, _ = ppo.policy.obs_to_tensor(ppo_env.reset())
    pvdr_first = pvdr_env.reset()  # one reset (it plans) for the aligner's input and the planning context
    pvdr_obs, _ = pvdr.policy.obs_to_tensor(pvdr_first)
    probe_env = make()
    first = probe_env.reset(seed=args.seed)[0]
    new_frame = first["observation"][None]
    planner = Planner(tokenizer, dynamics, args.plan_metric)
    goal_target = planner.frame_target(torch.from_numpy(first["desired_goal"])[None])[0]
    context = torch.as_tensor(pvdr_first["context_tokens"][0])
    # a goal-conditioned prior (prior_goal) reads the goal's tokens, as the wrapper passes them
    goal_tokens = tokenizer.encode(first["desired_goal"][None])[0] if dynamics.config.prior_goal else None
    plan_flops = count_flops(lambda: planner.plan(context, goal_target, args.n_candidates, goal_tokens=goal_tokens))
    ppo_flops = count_flops(lambda: ppo.policy(ppo_obs, deterministic=True))
    pvdr_flops = {
        "encode": count_flops(lambda: tokenizer.encode(new_frame)),
        "aligner": count_flops(lambda: pvdr.policy(pvdr_obs, deterministic=True)),
        f"plan/{args.replan_every}": plan_flops / args.replan_every,
    }
    pvdr_total = sum(pvdr_flops.values())
    ppo_best = 1.0 / (t_env + ppo_flops / peak)
    pvdr_best = 1.0 / (t_env + pvdr_total / peak)
    parts = ", ".join(f"{k} {v / 1e6:.0f}" for k, v in pvdr_flops.items())
    print(f"compute floor (fp32 matmul peak {peak / 1e9:.1f} GFLOP/s, raw env step {1000 * t_env:.1f} ms):")
    print(f"  pixel PPO    {ppo_flops / 1e6:7.0f} MFLOP/step   best case {ppo_best:6.1f} steps/s")
    print(f"  PVDR         {pvdr_total / 1e6:7.0f} MFLOP/step   best case {pvdr_best:6.1f} steps/s   ratio {pvdr_best / ppo_best:.2f}x   ({parts})")
    achieved = pvdr_total / max(1.0 / pvdr_sps - t_env, 1e-9)
    print(f"  PVDR network FLOP/s while acting: {achieved / 1e9:.1f} G ({achieved / peak:.2f} of peak)")

    # ------------------------------------------------------------------ training env steps/s (SB3 time/fps)
    if args.train_rollouts > 0:
        wrapper = lambda env: PlanningWrapper(env, tokenizer, dynamics, seed=args.seed, observe_plan=observe_plan)  # noqa: E731
        if args.train_vec_env not in ("dummy", "subproc"):
            raise ConfigError(f"--train-vec-env must be dummy or subproc, got {args.train_vec_env!r}")
        torch.set_num_threads(args.train_threads)
        ppo_fps, ppo_cpu = training_steps_per_second("ppo", args.env, args.train_rollouts, args.seed,
                                                     vec_env=args.train_vec_env)
        pvdr_fps, pvdr_cpu = training_steps_per_second("pvdr", args.env, args.train_rollouts, args.seed, wrapper=wrapper,
                                             vec_env=args.train_vec_env,
                                             **{"policy_kwargs": pvdr_policy_kwargs, "bf16": bf16, **(args.pvdr_params or {})})
        torch.set_num_threads(args.threads)
        print(f"training env steps/s (model.learn, zoo_configs settings, {args.train_rollouts} rollouts each, "
              f"{args.train_vec_env} vec env, {args.train_threads} torch thread(s) in the main process; breakdowns "
              "above: in subproc workers' env time is not seen):")
        print(f"  pixel PPO                          {ppo_fps:8.1f}")
        label = "PVDR" + "".join(f" {k}={v}" for k, v in (args.pvdr_params or {}).items())
        print(f"  {label:<35s}{pvdr_fps:8.1f}   ratio {pvdr_fps / ppo_fps:.2f}x")
        if ppo_cpu is not None and pvdr_cpu is not None:
            # with every process busy all the time, steps/s = cores / CPU seconds per step: the ratio no scheduling
            # (overlap of fine-tuning with acting, more workers) can beat on these cores without less CPU work per step
            print(f"  CPU ms per env step, all processes: pixel PPO {1000 * ppo_cpu:.1f}, PVDR {1000 * pvdr_cpu:.1f}   "
                  f"CPU-work ratio {ppo_cpu / pvdr_cpu:.2f}x (the model.learn ratio if every core were busy throughout; "
                  f"{os.cpu_count()} cores)")

    # ------------------------------------------------------------------ ms per planning call
    context = tokenizer.encode(np.repeat(first["observation"][None], dynamics.config.m, axis=0))
    generator = torch.Generator().manual_seed(args.seed)
    print(f"ms per planning call (m={dynamics.config.m}, l={dynamics.config.l}, grid {dynamics.grid_size}, mean of {args.calls} calls):")
    # "pixels last": plan_distance last/last_blurred decodes the N last frames, then the chosen plan's l frames
    columns = [("codes", "mean", False), ("pixels", "mean", False), ("pixels", "last", False), ("codes", "mean", True),
               ("pixels", "mean", True)]
    print(f"  {'N':>4s} {'codes':>10s} {'pixels':>10s} {'pixels last':>12s} {'codes bf16':>12s} {'pixels bf16':>12s}")
    for n in args.candidates:
        row = []
        for metric, distance, use_bf16 in columns:
            planner = Planner(tokenizer, dynamics, metric, distance)
            goal = planner.frame_target(torch.from_numpy(first["desired_goal"])[None])[0]
            planner.plan(context, goal, n, generator, bf16=use_bf16, goal_tokens=goal_tokens)  # warm-up
            start = time.perf_counter()
            for _ in range(args.calls):
                planner.plan(context, goal, n, generator, bf16=use_bf16, goal_tokens=goal_tokens)
            row.append(1000 * (time.perf_counter() - start) / args.calls)
        print(f"  {n:>4d} {row[0]:>8.1f}ms {row[1]:>8.1f}ms {row[2]:>10.1f}ms {row[3]:>10.1f}ms {row[4]:>10.1f}ms")
    for env in (probe_env, ppo_env, pvdr_env):
        env.close()


if __name__ == "__main__":
    main()
