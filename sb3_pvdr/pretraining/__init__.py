"""Pre-training of the visual dynamics model (paper §4.1, eq. (1)), behind ``python -m sb3_pvdr.pretrain``.

Modules, in the order a run uses them:

- :mod:`~sb3_pvdr.pretraining.config`: :class:`PretrainConfig` (profiles ``cpu`` / ``paper``, yaml files);
- :mod:`~sb3_pvdr.pretraining.data`: ``--data`` checks against the tokenizer, videos tokenized once, DDP-sharded
  resumable clip batches;
- :mod:`~sb3_pvdr.pretraining.distributed`: the ``torchrun`` process group, averaged scalars, the DDP loss module;
- :mod:`~sb3_pvdr.pretraining.state`: tokenizer and model of a run, RNG states, ``last.pt`` / ``dynamics.pt``, run files;
- :mod:`~sb3_pvdr.pretraining.loop`: :func:`pretrain` (resume, prepare, train steps, logs, validation, grids, saves);
- :mod:`~sb3_pvdr.pretraining.evaluation`: image grids (context | true future | predictions) and held-out loss terms;
- :mod:`~sb3_pvdr.pretraining.cli`: the command line (``main``).

Every name is also importable from :mod:`sb3_pvdr.pretrain` (the entry point), as before the split.
"""

from sb3_pvdr.pretraining.cli import config_from_args, main, parse_args
from sb3_pvdr.pretraining.config import SCHEDULE_KEYS, PretrainConfig
from sb3_pvdr.pretraining.data import (
    ClipBatches,
    DataSource,
    check_data_source,
    check_enough_clips,
    check_tokens_match,
    fixed_batch,
    is_token_folder,
    read_token_meta,
    resolve_token_folder,
)
from sb3_pvdr.pretraining.distributed import DistInfo, LossModule, all_reduce_mean, init_distributed
from sb3_pvdr.pretraining.evaluation import decode_clip_tokens, evaluate_loss, prediction_grid, prediction_rows, tile_frames
from sb3_pvdr.pretraining.loop import MetricLog, PretrainResult, TrainingRun, prepare_run, pretrain, resume_state, train_step
from sb3_pvdr.pretraining.state import (
    PRETRAIN_STATE,
    build_model,
    load_tokenizer,
    rng_state,
    save_training_state,
    seed_everything,
    set_rng_state,
    warmup_lambda,
    write_run_files,
)

__all__ = [
    "PRETRAIN_STATE",
    "SCHEDULE_KEYS",
    "ClipBatches",
    "DataSource",
    "DistInfo",
    "LossModule",
    "MetricLog",
    "PretrainConfig",
    "PretrainResult",
    "TrainingRun",
    "all_reduce_mean",
    "build_model",
    "check_data_source",
    "check_enough_clips",
    "check_tokens_match",
    "config_from_args",
    "decode_clip_tokens",
    "evaluate_loss",
    "fixed_batch",
    "init_distributed",
    "is_token_folder",
    "load_tokenizer",
    "main",
    "parse_args",
    "prediction_grid",
    "prediction_rows",
    "prepare_run",
    "pretrain",
    "read_token_meta",
    "resolve_token_folder",
    "resume_state",
    "rng_state",
    "save_training_state",
    "seed_everything",
    "set_rng_state",
    "tile_frames",
    "train_step",
    "warmup_lambda",
    "write_run_files",
]
