#!/usr/bin/env bash
# Train and package the demo v3 cascade (issue 15): demo v2's networks (--preset demo-v2: coarse-v2,
# fine-v2, augmentation) trained on three generations of styled phantoms in turn, each stage resuming
# the last one's checkpoints. Earlier phantom generations are drawn by the commits that drew them
# (a git worktree each, used only to fill a cache); every network step runs this tree's trainer.
# Real CT is never used. Needs git, the export extra (torch) and ../shared/data/kits19.
#   1. v2 phantoms (commit d50801c; 3 styles per label map, 16 procedural): coarse 10000 steps,
#      fine 7000 steps.
#   2. same cache: fine goes on with tumor weight 10 on a 13000-step schedule, stopped at 8000.
#   3. v3 draft phantoms (commit 9d65c6b; 4 styles, 24 procedural): coarse on an 18000-step
#      schedule stopped at 14000, fine on a 16000-step one (tumor weight 10) stopped at 10500.
#   4. v3 phantoms (commit 8f3e4f1; 4 styles, 24 procedural): both go on, on the same schedules, to
#      COARSE_STOP / FINE_STOP.
# The measured run (README, "Demo v3") reached stage 1 through resumed runs (450/400, 900/1000, then
# 10000/7000 steps), so a rerun gives a comparable model, not the same bits. Usage:
#   bash scripts/build_demo_v3.sh [KITS19_DIR] [WORK_DIR] [PACKAGE_DIR]
# STAGES="1 2 3 4" picks stages.
set -euo pipefail
data=$(realpath "${1:-../shared/data/kits19}")
work=$(realpath -m "${2:-work}")
out=${3:-$work/demo_v3}
stages=${STAGES:-1 2 3 4}
coarse_stop=${COARSE_STOP:-18000}
fine_stop=${FINE_STOP:-16000}
holdout=case_00021,case_00043,case_00055,case_00063,case_00142,case_00188
skip=case_00106,case_00118,case_00123  # not trained on: their v2 phantoms were not ready in time
mkdir -p "$work"

source "$(dirname "${BASH_SOURCE[0]}")/demo_chain.sh"

if [[ " $stages " == *" 1 "* ]]; then
    fill_cache d50801c "$work/v2_cache" 3 16
    train_pair "$work/v2_cache" 3 16 "--steps 10000" "--steps 7000"
fi
if [[ " $stages " == *" 2 "* ]]; then
    nice -n 10 kitsrt train "$data" --stage fine -o "$work/fine" --steps 13000 --stop-at 8000 --tumor-weight 10 \
        --preset demo-v2 --exclude "$holdout,$skip" --styles 3 --procedural 16 --threads 1 --cache "$work/v2_cache" \
        --resume >> "$work/fine.log" 2>&1
fi
if [[ " $stages " == *" 3 "* ]]; then
    fill_cache 9d65c6b "$work/v3a_cache" 4 24
    train_pair "$work/v3a_cache" 4 24 "--steps 18000 --stop-at 14000" "--steps 16000 --stop-at 10500 --tumor-weight 10"
fi
if [[ " $stages " == *" 4 "* ]]; then
    fill_cache 8f3e4f1 "$work/v3_cache" 4 24
    train_pair "$work/v3_cache" 4 24 "--steps 18000 --stop-at $coarse_stop" \
        "--steps 16000 --stop-at $fine_stop --tumor-weight 10"
fi
note="trained by scripts/build_demo_v3.sh: v2, v3-draft and v3 styled phantoms of KiTS19 label maps (held out: $holdout; not used: $skip) and procedural maps; no real CT"
package_demo "$out" "$note" scripts/demo_v3_training_data.json
