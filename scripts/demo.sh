#!/usr/bin/env bash
# The PVDR demo on the embedded CPU default, end to end, in one command:
#   1. record a small in-domain action-free video set (scripted reach policy + noise),
#   2. train the VQ frame tokenizer on it,
#   3. tokenize the videos and pre-train the visual dynamics model (CVAE, eq. (1)),
#   4. train PVDR online: python train.py --algo pvdr --env reach-v2.
# Each stage is cached: a stage whose `.done` marker exists is skipped, an interrupted one resumes.
# Outputs go to $DEMO_DIR (default ~/.cache/sb3_pvdr/demo, where zoo_configs/pvdr.yml looks for the models).
#
# Sizes (override by environment variables): 32-45 minutes on an idle 2-core CPU (record 1 min, tokenizer 5-7,
# pre-training 18-27, PVDR 7-9; measured 2026-11-25 and 2026-11-29 on two machines of different speed).
#   DEMO_EPISODES=40 DEMO_TOKENIZER_STEPS=500 DEMO_PRETRAIN_STEPS=600 DEMO_RL_STEPS=2000 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL="${MUJOCO_GL:-egl}"

DEMO_DIR="${DEMO_DIR:-$HOME/.cache/sb3_pvdr/demo}"
EPISODES="${DEMO_EPISODES:-40}"
EPISODE_STEPS="${DEMO_EPISODE_STEPS:-80}"
TOKENIZER_STEPS="${DEMO_TOKENIZER_STEPS:-500}"
PRETRAIN_STEPS="${DEMO_PRETRAIN_STEPS:-600}"
RL_STEPS="${DEMO_RL_STEPS:-2000}"
NPROC="${DEMO_NPROC:-2}"
mkdir -p "$DEMO_DIR"

STAGE_DIR="$DEMO_DIR"
# shellcheck source=scripts/stages.sh
source scripts/stages.sh

stage record python -m sb3_pvdr.video.record --tasks reach-v2 --episodes "$EPISODES" \
    --max-steps "$EPISODE_STEPS" --full-episodes --out "$DEMO_DIR/videos" --no-progress
stage record_val python -m sb3_pvdr.video.record --tasks reach-v2 --episodes 3 --seed 1 \
    --max-steps "$EPISODE_STEPS" --full-episodes --out "$DEMO_DIR/videos_val" --no-progress

stage tokenizer python -m sb3_pvdr.tokenizer.train --data "$DEMO_DIR/videos" --val-data "$DEMO_DIR/videos_val" \
    --out "$DEMO_DIR/tokenizer" --config cpu --steps "$TOKENIZER_STEPS" --threads 1 --no-progress \
    $(resume_flag "$DEMO_DIR/tokenizer")

stage tokenize python -m sb3_pvdr.tokenizer.tokenize --tokenizer "$DEMO_DIR/tokenizer/tokenizer.pt" \
    --data "$DEMO_DIR/videos" --out "$DEMO_DIR/tokens" --overwrite --threads 2 --no-progress
stage tokenize_val python -m sb3_pvdr.tokenizer.tokenize --tokenizer "$DEMO_DIR/tokenizer/tokenizer.pt" \
    --data "$DEMO_DIR/videos_val" --out "$DEMO_DIR/tokens_val" --overwrite --threads 2 --no-progress

# Data-parallel over the 2 cores (gloo); GPU users: --device auto and nproc = number of GPUs.
stage pretrain torchrun --standalone --nproc_per_node "$NPROC" -m sb3_pvdr.pretrain \
    --data "$DEMO_DIR/tokens" --val-data "$DEMO_DIR/tokens_val" --tokenizer "$DEMO_DIR/tokenizer/tokenizer.pt" \
    --out "$DEMO_DIR/pretrain" --config cpu --steps "$PRETRAIN_STEPS" --threads 1 --no-progress \
    $(resume_flag "$DEMO_DIR/pretrain")

stage pvdr python train.py --algo pvdr --env reach-v2 -n "$RL_STEPS" --eval-episodes 2 \
    --log-folder "$DEMO_DIR/logs" \
    -params "env_wrapper:{'sb3_pvdr.planning.PlanningWrapper': {'tokenizer': '$DEMO_DIR/tokenizer/tokenizer.pt', 'dynamics': '$DEMO_DIR/pretrain/dynamics.pt'}}"

echo "== demo finished: models and logs under $DEMO_DIR (tensorboard --logdir $DEMO_DIR/logs)"
