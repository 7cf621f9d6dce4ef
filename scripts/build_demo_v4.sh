#!/usr/bin/env bash
# Train and package the demo v4 candidate (issue 15): the demo v3 chain (scripts/build_demo_v3.sh,
# stages 1-4), then two more stages on the same demo-v2 networks, each resuming the last checkpoints.
# Real CT is never used. Needs git, the export extra (torch) and ../shared/data/kits19.
#   5. v3 phantoms again: both networks on a longer schedule (30000 steps, a warm restart of the
#      learning rate), stopped at coarse 21700 / fine 18300.
#   6. v4 phantoms (commit d2ec9e0: renal sinus, renal vessels, horseshoe kidney, no kidneys, cut
#      fields of view; 4 styles per label map, 24 procedural): the same schedule, to COARSE_STOP /
#      FINE_STOP.
# The measured run reached stage 5 in two resumed runs, so a rerun gives a comparable model, not the
# same bits. Usage:
#   bash scripts/build_demo_v4.sh [KITS19_DIR] [WORK_DIR] [PACKAGE_DIR]
# STAGES="1 2 3 4 5 6" picks stages (1-4 also package demo v3 in WORK_DIR/demo_v3).
set -euo pipefail
data=$(realpath "${1:-../shared/data/kits19}")
work=$(realpath -m "${2:-work}")
out=${3:-$work/demo_v4}
stages=${STAGES:-1 2 3 4 5 6}
coarse_stop=${COARSE_STOP:-30000}
fine_stop=${FINE_STOP:-26250}
holdout=case_00021,case_00043,case_00055,case_00063,case_00142,case_00188
skip=case_00106,case_00118,case_00123
source "$(dirname "${BASH_SOURCE[0]}")/demo_chain.sh"

v3_stages=$(for s in $stages; do [[ $s -le 4 ]] && printf '%s ' "$s"; done)
if [ -n "$v3_stages" ]; then
    STAGES="$v3_stages" bash "$(dirname "${BASH_SOURCE[0]}")/build_demo_v3.sh" "$data" "$work" "$work/demo_v3"
fi
if [[ " $stages " == *" 5 "* ]]; then
    fill_cache 8f3e4f1 "$work/v3_cache" 4 24
    train_pair "$work/v3_cache" 4 24 "--steps 30000 --stop-at 21700" "--steps 30000 --stop-at 18300 --tumor-weight 10"
fi
if [[ " $stages " == *" 6 "* ]]; then
    fill_cache d2ec9e0 "$work/v4_cache" 4 24
    train_pair "$work/v4_cache" 4 24 "--steps 30000 --stop-at $coarse_stop" \
        "--steps 30000 --stop-at $fine_stop --tumor-weight 10"
fi
note="trained by scripts/build_demo_v4.sh: v2, v3-draft, v3 and v4 styled phantoms of KiTS19 label maps (held out: $holdout; not used: $skip) and procedural maps; no real CT"
package_demo "$out" "$note" scripts/demo_v4_training_data.json
