"""Can a cheaper tokenizer encoder stand in for the shipped one without re-training the dynamics model?

Issue "Online-stage speed" lists a tokenizer encoder sized for 64x64 frames as a lever: the shipped ``metaworld-64``
encoder costs ~211 MFLOP per frame (the planning wrapper encodes one frame per env step). The dynamics model was
trained on the shipped encoder's tokens, so a student encoder only helps if it reproduces those tokens, not merely
the frames. This probe distils a student (:class:`sb3_pvdr.tokenizer.model.Encoder` with its own patch size, width
and levels) onto the teacher's pre-quantisation latents (MSE, normalised by their variance) plus a cross-entropy on
the teacher's codes (logits: negative squared distances to the frozen codebook), then reports on held-out frames:
the share of tokens equal to the teacher's, PSNR of the teacher's decoder on the student's tokens vs on the teacher's,
the teacher's own code ambiguity (share of tokens whose second-nearest code is within 5% / 10% of the nearest
distance: no student can be expected to agree there) and one-frame encode time of both on one thread.

    python scripts/encoder_distill_probe.py --data ~/.cache/sb3_pvdr/reference/videos \
        --val-data ~/.cache/sb3_pvdr/reference/videos_val --patch-size 8 --channels 64 --channel-mult 1,1,1,1
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from sb3_pvdr.common.errors import cli_entry
from sb3_pvdr.pretrained import resolve
from sb3_pvdr.tokenizer.frames import load_frames
from sb3_pvdr.tokenizer.model import Encoder, VQTokenizer

# b - frames, d - latent channels, h w - token grid, H W c - pixels


def to_images(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(b, H, W, c)`` -> float ``(b, c, H, W)`` in [-1, 1], the encoder's input."""
    return rearrange(torch.from_numpy(frames).float() / 255.0, "b H W c -> b c H W") * 2.0 - 1.0


@torch.no_grad()
def latents(encoder: torch.nn.Module, frames: np.ndarray, chunk: int = 256) -> torch.Tensor:
    """Encoder outputs ``(b, d, h, w)`` of ``frames``, in chunks."""
    return torch.cat([encoder(to_images(frames[i : i + chunk])) for i in range(0, len(frames), chunk)])


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (Euclidean, as the shipped quantizer) per cell: ``(b, d, h, w)`` -> ``(b, h, w)``."""
    cells = rearrange(z, "b d h w -> (b h w) d")
    return torch.cdist(cells, codebook).argmin(-1).view(z.shape[0], *z.shape[2:])


def psnr(frames: torch.Tensor, target: np.ndarray) -> float:
    """Mean per-frame PSNR (dB) of decoded uint8 or [0, 1] frames against uint8 ``target``."""
    decoded = frames.float()
    decoded = decoded / 255.0 if decoded.max() > 1.5 else decoded
    mse = ((decoded - torch.from_numpy(target).float() / 255.0) ** 2).mean(dim=(1, 2, 3))
    return float((10 * torch.log10(1.0 / mse)).mean())


def encode_ms(encoder: torch.nn.Module, frame: np.ndarray, repeats: int = 100) -> float:
    """Milliseconds per one-frame encoder forward (inference mode, after 5 warm-up calls)."""
    x = to_images(frame)
    with torch.inference_mode():
        for _ in range(5):
            encoder(x)
        start = time.perf_counter()
        for _ in range(repeats):
            encoder(x)
    return 1e3 * (time.perf_counter() - start) / repeats


def distill(teacher: VQTokenizer, student: Encoder, train: np.ndarray, steps: int, batch_size: int, lr: float,
            ce_weight: float, seed: int) -> list[float]:
    """Fit ``student`` to the teacher's latents and codes on ``train`` frames (cosine-decayed Adam); the losses."""
    codebook = teacher.codebook.detach()
    targets = latents(teacher.encoder, train)
    scale = float(targets.var())
    optimizer = torch.optim.Adam(student.parameters(), lr)
    rng = np.random.default_rng(seed)
    losses = []
    student.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        idx = rng.integers(0, len(train), batch_size)
        z_teacher = targets[idx]
        z = student(to_images(train[idx]))
        logits = -torch.cdist(rearrange(z, "b d h w -> (b h w) d"), codebook) ** 2 / (2 * scale)
        loss = F.mse_loss(z, z_teacher) / scale + ce_weight * F.cross_entropy(logits, nearest_codes(z_teacher, codebook).flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    student.eval()
    return losses


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python scripts/encoder_distill_probe.py", description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", default="metaworld-64", help="teacher: shipped name or checkpoint path")
    parser.add_argument("--data", required=True, help="training videos (e.g. the reference set's videos/)")
    parser.add_argument("--val-data", required=True, help="held-out videos")
    parser.add_argument("--patch-size", type=int, default=8, help="student's space-to-depth stem")
    parser.add_argument("--channels", type=int, default=64, help="student's base width")
    parser.add_argument("--channel-mult", default="1,1,1,1", help="student's width multipliers (one per level)")
    parser.add_argument("--train-frames", type=int, default=12000)
    parser.add_argument("--val-frames", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ce-weight", type=float, default=0.1, help="weight of the code cross-entropy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the report here too")
    return parser.parse_args(argv)


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    teacher = VQTokenizer.load(resolve(args.tokenizer, "tokenizer")).eval()
    config = copy.deepcopy(teacher.config)
    config.patch_size, config.channels = args.patch_size, args.channels
    config.channel_mult = tuple(int(m) for m in args.channel_mult.split(","))
    config.validate()
    if config.grid_size != teacher.config.grid_size:
        raise SystemExit(f"error: the student's grid {config.grid_size} differs from the teacher's {teacher.config.grid_size}")
    student = Encoder(config)
    train = load_frames(args.data, teacher.image_size, frame_step=2, max_frames=args.train_frames, seed=args.seed)
    val = load_frames(args.val_data, teacher.image_size, max_frames=args.val_frames, seed=args.seed + 1)
    losses = distill(teacher, student, train, args.steps, args.batch_size, args.lr, args.ce_weight, args.seed)
    codebook = teacher.codebook.detach()
    z_teacher = latents(teacher.encoder, val)
    codes_teacher, codes_student = nearest_codes(z_teacher, codebook), nearest_codes(latents(student, val), codebook)
    cells = rearrange(z_teacher, "b d h w -> (b h w) d")
    two = torch.cdist(cells, codebook).topk(2, largest=False).values
    ratio = two[:, 1] / two[:, 0].clamp_min(1e-12)
    report = {
        "student": {"patch_size": config.patch_size, "channels": config.channels, "channel_mult": list(config.channel_mult),
                    "parameters": sum(p.numel() for p in student.parameters())},
        "teacher_parameters": sum(p.numel() for p in teacher.encoder.parameters()),
        "train_frames": len(train), "val_frames": len(val), "steps": args.steps,
        "final_loss": round(float(np.mean(losses[-50:])), 4),
        "token_agreement": round(float((codes_student == codes_teacher).float().mean()), 4),
        "teacher_ambiguity_5pct": round(float((ratio < 1.05).float().mean()), 4),
        "teacher_ambiguity_10pct": round(float((ratio < 1.10).float().mean()), 4),
        "psnr_teacher_tokens": round(psnr(teacher.decode(codes_teacher), val), 2),
        "psnr_student_tokens": round(psnr(teacher.decode(codes_student), val), 2),
        "encode_ms_teacher": round(encode_ms(teacher.encoder, val[:1]), 2),
        "encode_ms_student": round(encode_ms(student, val[:1]), 2),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
