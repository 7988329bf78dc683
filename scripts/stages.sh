# Cached pipeline stages, sourced by scripts/demo.sh, scripts/pretrain_reference.sh and scripts/pretrain_domain_gap.sh.
# Set STAGE_DIR first: a stage whose "$STAGE_DIR/.NAME.done" marker exists is skipped.

stage() {  # stage NAME COMMAND...: run COMMAND unless NAME is done, then mark it done
    local name="$1"; shift
    if [ -f "$STAGE_DIR/.$name.done" ]; then
        echo "== $name: cached ($STAGE_DIR/.$name.done), skipped"
        return
    fi
    echo "== $name: $*"
    local start=$SECONDS
    "$@"
    echo "== $name: done in $((SECONDS - start)) s"
    touch "$STAGE_DIR/.$name.done"
}

resume_flag() { [ -f "$1/last.pt" ] && echo "--resume" || true; }  # --resume when a run folder has a checkpoint

# dynamics_stages DIR TOKENIZER PRETRAIN_STEPS PRIOR_LONG_STEPS THREADS [NPROC]: the four training stages of a shipped
# visual dynamics model on DIR/tokens (held out: DIR/tokens_val), each resumable from its run folder's last.pt:
#   pretrain            eq. (1) on every module (configs/pretrain_reference.yml), NPROC processes (torchrun, default 1)
#   prior_forward       the prior alone re-fitted with the forward KL (configs/prior_forward.yml, E and D untouched):
#                       eq. (1)'s reverse KL leaves prior samples near-copies of each other
#   prior_forward_long  PRIOR_LONG_STEPS more steps of the same re-fit from those weights (fresh Adam state)
#   prior_decode        600 steps of the prior with a decoding loss on its mean (configs/prior_decode.yml,
#                       DynamicsConfig.prior_decode 10; results/prior_decode)
# The model to ship is DIR/prior_decode/dynamics.pt.
dynamics_stages() {
    local dir="$1" tokenizer="$2" steps="$3" long_steps="$4" threads="$5" nproc="${6:-1}"
    local common=(--data "$dir/tokens" --val-data "$dir/tokens_val" --tokenizer "$tokenizer" --threads "$threads" --no-progress)
    stage pretrain torchrun --standalone --nproc_per_node "$nproc" -m sb3_pvdr.pretrain "${common[@]}" \
        --out "$dir/pretrain" --config configs/pretrain_reference.yml --steps "$steps" $(resume_flag "$dir/pretrain")
    stage prior_forward python -m sb3_pvdr.pretrain "${common[@]}" --out "$dir/prior_forward" \
        --config configs/prior_forward.yml --init-from "$dir/pretrain/dynamics.pt" $(resume_flag "$dir/prior_forward")
    stage prior_forward_long python -m sb3_pvdr.pretrain "${common[@]}" --out "$dir/prior_forward_long" \
        --config configs/prior_forward.yml --init-from "$dir/prior_forward/dynamics.pt" --steps "$long_steps" \
        $(resume_flag "$dir/prior_forward_long")
    stage prior_decode python -m sb3_pvdr.pretrain "${common[@]}" --out "$dir/prior_decode" \
        --config configs/prior_decode.yml --init-from "$dir/prior_forward_long/dynamics.pt" $(resume_flag "$dir/prior_decode")
}
