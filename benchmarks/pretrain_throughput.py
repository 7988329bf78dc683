"""Pre-training throughput of the visual dynamics model: tokens/s and achieved FLOP/s against this
machine's matmul FLOP/s, measured in the same run, in fp32 and under bf16 autocast.

    python benchmarks/pretrain_throughput.py                       # default cpu config (batch 16)
    python benchmarks/pretrain_throughput.py --threads 1           # a busy shared CPU: 1 thread is faster
    python benchmarks/pretrain_throughput.py --config paper --batch-size 8 --device cuda

One step is what ``python -m sb3_pvdr.pretrain`` does per batch: eq. (1) forward (encoder, prior, decoder
with teacher forcing), backward, gradient clipping and an AdamW update. FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward (matmuls and fused attention,
which is what the peak is measured on); element-wise work and the optimizer are not counted, so the
ratio is a lower bound on how busy the matmul units are.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sb3_pvdr.dynamics import DynamicsConfig, VisualDynamicsModel
from sb3_pvdr.pretrain import LossModule, PretrainConfig


@dataclass
class Args:
    config: str = "cpu"
    """pre-training profile (``cpu``, ``paper``) or yaml file; the model sizes come from it"""
    batch_size: int = 0
    """clips per step (0: the profile's batch size)"""
    steps: int = 5
    """timed steps per precision"""
    warmup: int = 2
    """untimed steps first (allocator, thread pools, oneDNN kernel selection)"""
    matmul_size: int = 2048
    """side of the square matrices of the peak matmul measurement"""
    device: str = "cpu"
    """cpu or cuda"""
    precisions: str = "fp32,bf16"
    """comma-separated: fp32 (no autocast) and/or bf16 (autocast)"""
    threads: int = 0
    """torch threads (0: torch's default)"""
    force_bf16: bool = False
    """time the bf16 step even where bf16 matmuls are slower than fp32 ones (no native bf16 on the CPU)"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in vars(Args()).items():
        if isinstance(default, bool):
            parser.add_argument(f"--{name.replace('_', '-')}", action="store_true")
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    return Args(**vars(parser.parse_args()))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------
# Peak: a large square matmul in the same precision
# ----------------------------------------------------------------------------------------------


def matmul_flops_per_s(n: int, dtype: torch.dtype, device: torch.device, min_time: float = 1.0) -> float:
    """FLOP/s of ``a @ b`` for ``n x n`` matrices (2 n^3 FLOPs), best of several timed repeats.

    ``n`` shrinks (down to 256) when one product would take over ~0.2 s: CPUs without native bf16
    instructions run bf16 matmuls through slow fallbacks.
    """
    if device.type == "cpu":
        probe = 256
        a = torch.randn(probe, probe).to(dtype)
        t0 = time.perf_counter()
        a @ a
        rate = 2 * probe**3 / max(time.perf_counter() - t0, 1e-9)
        while n > 256 and 2 * n**3 / rate > 0.2:
            n //= 2
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    sync(device)
    best, spent = float("inf"), 0.0
    while spent < min_time:
        t0 = time.perf_counter()
        a @ b
        sync(device)
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return 2 * n**3 / best


# ----------------------------------------------------------------------------------------------
# One pre-training step
# ----------------------------------------------------------------------------------------------


def make_step(model: VisualDynamicsModel, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              bf16: bool, lambda_1: float, grad_clip: float):  # noqa: ANN201
    loss_module = LossModule(model, lambda_1)
    autocast = torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(with_optimizer: bool = True) -> float:
        with autocast:
            total, _ = loss_module(x, y)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if with_optimizer:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        return float(total.detach())

    return step


def measure(args: Args, dyn_cfg: DynamicsConfig, batch_size: int, bf16: bool, device: torch.device,
            lambda_1: float) -> dict[str, float]:
    """Median step time, and the median over steps of (step FLOP/s) / (matmul FLOP/s measured right after
    that step): on a shared CPU the load drifts, so each step is compared with a peak taken at the same time.
    """
    torch.manual_seed(0)
    model = VisualDynamicsModel(dyn_cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    h, w = dyn_cfg.grid
    x = torch.randint(0, dyn_cfg.codebook_size, (batch_size, dyn_cfg.m, h, w), device=device)
    y = torch.randint(0, dyn_cfg.codebook_size, (batch_size, dyn_cfg.l, h, w), device=device)
    step = make_step(model, optimizer, x, y, bf16, lambda_1, grad_clip=1.0)

    with FlopCounterMode(display=False) as counter:
        step(with_optimizer=False)
    flops = counter.get_total_flops()
    for _ in range(args.warmup):
        step()
    sync(device)
    times, peaks, ratios = [], [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
        peaks.append(matmul_flops_per_s(args.matmul_size, torch.bfloat16 if bf16 else torch.float32, device, min_time=0.3))
        ratios.append(flops / times[-1] / peaks[-1])
    median = float(np.median(times))
    tokens = batch_size * (dyn_cfg.m + dyn_cfg.l) * h * w
    return {"ms": median * 1e3, "best_ms": min(times) * 1e3, "tokens_per_s": tokens / median, "gflop": flops / 1e9,
            "flops_per_s": flops / median, "peak": float(np.median(peaks)), "ratio": float(np.median(ratios))}


def load_average() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = PretrainConfig.load(args.config)
    dyn_cfg = cfg.dynamics_config()
    batch_size = args.batch_size or cfg.batch_size
    n_params = sum(p.numel() for p in VisualDynamicsModel(dyn_cfg).parameters())
    print(f"config {args.config}: {dyn_cfg}")
    print(f"{n_params / 1e6:.2f} M parameters, batch {batch_size} clips x {dyn_cfg.m + dyn_cfg.l} frames x "
          f"{dyn_cfg.grid[0]}x{dyn_cfg.grid[1]} tokens, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"load before: {load_average()}")

    rows = []
    peaks: dict[str, float] = {}
    for precision in [p.strip() for p in args.precisions.split(",")]:
        bf16 = precision == "bf16"
        peaks[precision] = peak = matmul_flops_per_s(args.matmul_size, torch.bfloat16 if bf16 else torch.float32, device)
        if bf16 and "fp32" in peaks and peak < peaks["fp32"] / 2 and not args.force_bf16:
            print(f"bf16: matmul peak {peak / 1e9:.1f} GFLOP/s is below half the fp32 one ({peaks['fp32'] / 1e9:.1f}): "
                  "no native bf16 instructions on this CPU, so --bf16 would slow pre-training down; "
                  "step not timed (--force-bf16 times it anyway)")
            rows.append((precision, None, peak))
            continue
        print(f"{precision}: timing {args.warmup} + {args.steps} steps ...", flush=True)
        rows.append((precision, measure(args, dyn_cfg, batch_size, bf16, device, cfg.lambda_1), peak))

    print(f"load after:  {load_average()}")
    print()
    header = f"{'precision':<10}{'ms/step':>9}{'best ms':>9}{'tokens/s':>11}{'GFLOP/step':>12}{'GFLOP/s':>9}" \
             f"{'matmul GFLOP/s':>16}{'ratio':>7}"
    print(header)
    print("-" * len(header))
    for precision, r, peak in rows:
        if r is None:
            print(f"{precision:<10}{'-':>9}{'-':>9}{'-':>11}{'-':>12}{'-':>9}{peak / 1e9:>16.1f}{'-':>7}")
            continue
        print(f"{precision:<10}{r['ms']:>9.1f}{r['best_ms']:>9.1f}{r['tokens_per_s']:>11.0f}{r['gflop']:>12.2f}"
              f"{r['flops_per_s'] / 1e9:>9.1f}{r['peak'] / 1e9:>16.1f}{r['ratio']:>7.2f}")
    print("\nmatmul GFLOP/s: median of the peaks measured right after each timed step; ratio: median over steps "
          "of step FLOP/s / that peak (FLOPs of matmuls and attention only, from FlopCounterMode)")


if __name__ == "__main__":
    main()
