"""Pre-training CLI of the visual dynamics model (paper §4.1, eq. (1), Appendix A.1-A.2).

    python -m sb3_pvdr.pretrain --data TOKENS_OR_VIDEOS --tokenizer tokenizer.pt --out runs/dynamics
    torchrun --nproc_per_node 2 -m sb3_pvdr.pretrain --data ... --tokenizer ... --out ...   # DDP

``--data`` is a token folder made by ``python -m sb3_pvdr.tokenizer.tokenize`` (``tokens.npy``,
``episodes.npy``, ``meta.json``) or a folder of videos, which is tokenized once into ``OUT/tokens``.

Writes into ``OUT``: ``last.pt`` (kind ``"pretrain_state"``: model, optimizer, scheduler, step, RNG;
``--resume`` continues from it), ``dynamics.pt`` (kind ``"visual_dynamics"``, what users load),
``config.yml`` / ``args.yml`` / ``command.txt`` (rl-zoo convention) and tensorboard logs under ``OUT/tb``
(every loss term, token accuracy, and an image grid context | true future | predicted futures).
Every input (config, tokenizer, ``--data``/``--val-data`` against the tokenizer, clip counts) is checked
before anything is written: a refused run leaves ``OUT`` as it was.

Under ``torchrun`` the model is wrapped in ``DistributedDataParallel`` (gloo on CPU, nccl on GPU), every
process reads its own shard through a ``DistributedSampler``, and only rank 0 logs and saves.

The code lives in :mod:`sb3_pvdr.pretraining` (``config``, ``data``, ``distributed``, ``state``, ``loop``,
``evaluation``, ``cli``); this module is the ``python -m sb3_pvdr.pretrain`` entry point and keeps every name
importable from here (``from sb3_pvdr.pretrain import pretrain, PretrainConfig, ...``).
"""

from sb3_pvdr.pretraining import *  # noqa: F403 (the public names, listed in __all__)
from sb3_pvdr.pretraining import __all__ as _names
from sb3_pvdr.pretraining.cli import main

__all__ = list(_names)

if __name__ == "__main__":
    main()
