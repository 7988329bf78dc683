"""Pre-training state: the model and tokenizer of a run, RNG states, the ``last.pt`` / ``dynamics.pt``
checkpoints (``--resume``) and the run files ``config.yml`` / ``args.yml`` / ``command.txt``."""

from __future__ import annotations

import random
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import yaml
from torch import nn

from sb3_pvdr.common.checkpoint import atomic_write_bytes, save_checkpoint
from sb3_pvdr.pretraining.config import PretrainConfig

PRETRAIN_STATE = "pretrain_state"


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states (for an exact ``--resume`` of a 1-process run), as plain data that
    ``load_checkpoint`` reads back with ``weights_only=True`` (numpy's uint32 key array as a list of ints)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached_gaussian)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (also the numpy tuple with an ndarray that sb3_pvdr <= 0.1.0 saved)."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def warmup_lambda(warmup_steps: int):  # noqa: ANN201 - a LambdaLR factor
    """Linear warm-up over ``warmup_steps`` steps, then constant (the paper trains with a constant Adam lr)."""
    return lambda step: min(1.0, (step + 1) / max(1, warmup_steps))


def save_training_state(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler, step: int, cfg: PretrainConfig,
                        tokenizer_path: str) -> None:
    """Atomically write ``OUT/last.pt`` (everything ``--resume`` needs) and ``OUT/dynamics.pt`` (the model)."""
    save_checkpoint(
        out / "last.pt",
        PRETRAIN_STATE,
        config=asdict(cfg),
        model_config=asdict(model.config),
        state_dict=model.state_dict(),
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        step=step,
        rng=rng_state(),
        tokenizer=str(tokenizer_path),
    )
    model.save(out / "dynamics.pt")


def load_tokenizer(path: Union[str, Path], device: torch.device) -> Any:
    """``VQTokenizer.load`` in eval mode with frozen weights."""
    from sb3_pvdr.tokenizer import VQTokenizer

    tokenizer = VQTokenizer.load(path, map_location="cpu").to(device).eval()
    tokenizer.requires_grad_(False)
    return tokenizer


def build_model(cfg: PretrainConfig, tokenizer: Any, model_config: Optional[dict[str, Any]] = None) -> nn.Module:
    """The dynamics model of ``cfg`` (or of a saved ``model_config``), checked against ``tokenizer``."""
    from sb3_pvdr.dynamics import DynamicsConfig, VisualDynamicsModel

    dyn_cfg = DynamicsConfig.from_dict(model_config) if model_config is not None else cfg.dynamics_config()
    model = VisualDynamicsModel(dyn_cfg)
    model.check_tokenizer(tokenizer)  # CheckpointError on a codebook-size / grid mismatch
    return model


def write_run_files(out: Path, cfg: PretrainConfig, model: nn.Module, world_size: int = 1,
                    run_args: Optional[dict[str, Any]] = None) -> None:
    """``config.yml`` (training + full model config), ``args.yml`` (the command-line arguments, when given)
    and ``command.txt`` (rl-zoo's convention)."""
    config = {**asdict(cfg), "betas": list(cfg.betas), "model": _plain(asdict(model.config))}
    atomic_write_bytes(out / "config.yml", yaml.safe_dump(config, sort_keys=False).encode())
    if run_args is not None:
        atomic_write_bytes(out / "args.yml", yaml.safe_dump(run_args, sort_keys=False).encode())
    launcher = ["torchrun", f"--nproc_per_node={world_size}"] if world_size > 1 else ["python"]
    command = " ".join([*launcher, "-m", "sb3_pvdr.pretrain", *sys.argv[1:]])
    atomic_write_bytes(out / "command.txt", (command + "\n").encode())


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (yaml.safe_dump writes plain lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


__all__ = [
    "PRETRAIN_STATE",
    "build_model",
    "load_tokenizer",
    "rng_state",
    "save_training_state",
    "seed_everything",
    "set_rng_state",
    "warmup_lambda",
    "write_run_files",
]
