#!/usr/bin/env bash
# Rebuild the bundled demo package (kitsrt/packages/demo) from the shared KiTS19 label maps.
# Needs the export extra (torch) and ../shared/data/kits19. Phantoms are synthesized per case
# (seed = case number), so the training data is reproducible. Usage:
#   bash scripts/build_demo_model.sh [KITS19_DIR] [WORK_DIR]
set -euo pipefail
data=${1:-../shared/data/kits19}
work=${2:-work}
# Held out from training: used to report the demo's Dice on unseen anatomy.
holdout=case_00021,case_00043,case_00055,case_00063,case_00142,case_00188
out=kitsrt/packages/demo
kitsrt train "$data" --stage coarse -o "$work/coarse" --exclude "$holdout" --steps 1200 --threads 1 --cache "$work/cache"
kitsrt train "$data" --stage fine -o "$work/fine" --exclude "$holdout" --steps 1800 --cache "$work/cache"
note="trained by scripts/build_demo_model.sh on phantoms of 24 KiTS19 label maps (held out: $holdout)"
mkdir -p "$out"
kitsrt export "$work/coarse/checkpoint.pt" --stage coarse -o "$out/coarse.onnx" --demo --provenance "$note" --training-data scripts/demo_training_data.json --overwrite
kitsrt export "$work/fine/checkpoint.pt" --stage fine -o "$out/fine.onnx" --demo --provenance "$note" --training-data scripts/demo_training_data.json --overwrite
python -m kitsrt.export.package "$out"
# Reduced-precision variants, gated on held-out phantoms: a calibration set from 12 label maps,
# 4 of them held out (seed 0), VOIs placed by the new coarse network.
calib_cases="case_00007 case_00018 case_00021 case_00024 case_00034 case_00040 case_00043 case_00055 case_00063 case_00142 case_00188 case_00201"
mkdir -p "$work/calib_cases"
for c in $calib_cases; do ln -sfn "$(realpath "$data/$c")" "$work/calib_cases/$c"; done
rm -rf "$work/calib_kits"
kitsrt calibrate --cases "$work/calib_cases" -o "$work/calib_kits" --holdout 0.34 --seed 0
kitsrt quantize --calibration "$work/calib_kits" --precision fp16
kitsrt quantize --calibration "$work/calib_kits" --precision int8 --method entropy --target-agreement 0.99
