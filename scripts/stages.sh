# Cached pipeline stages, sourced by scripts/demo.sh and scripts/pretrain_reference.sh.
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
