#!/usr/bin/env bash
# Rebuild the bundled seed 004 demo package (kitsrt/packages/seed004_demo): the nested 3D V-Nets
# trained briefly on CPU on phantoms of the five smallest non-held-out KiTS19 label maps (seed =
# case number). Needs the export extra (torch) and ../shared/data/kits19. Usage:
#   bash scripts/build_seed004_demo.sh [KITS19_DIR] [WORK_DIR]
set -euo pipefail
data=${1:-../shared/data/kits19}
work=${2:-work}
cases="case_00007 case_00024 case_00034 case_00038 case_00051"
out=kitsrt/packages/seed004_demo
mkdir -p "$work/seed004_ready" "$out"
for c in $cases; do ln -sfn "$(realpath "$data/$c")" "$work/seed004_ready/$c"; done
# The two networks are independent in training (the tumor network sees the reference kidney mask),
# so they train side by side, one thread each.
kitsrt train "$work/seed004_ready" --preset seed004 --stage kidney -o "$work/seed004" --steps 250 --threads 1 \
    --cache "$work/seed004_cache" &
kitsrt train "$work/seed004_ready" --preset seed004 --stage tumor -o "$work/seed004" --steps 200 --threads 1 \
    --cache "$work/seed004_cache" &
wait
note="trained by scripts/build_seed004_demo.sh on phantoms of 5 KiTS19 label maps ($cases)"
for role in kidney tumor; do
    kitsrt export "$work/seed004/$role/checkpoint.pt" --stage $role -o "$out/$role.onnx" --demo --provenance "$note" --overwrite
done
python -m kitsrt.export.package "$out" --kind nested
# Reduced-precision variants, gated on held-out phantoms of label maps it was not trained on (9 cases,
# 3 held out, seed 0); INT8 MinMax (Entropy would keep every activation of the 56^3 patches in memory).
calib_cases="case_00018 case_00021 case_00031 case_00055 case_00075 case_00085 case_00106 case_00168 case_00187"
mkdir -p "$work/seed004_calib_cases"
for c in $calib_cases; do ln -sfn "$(realpath "$data/$c")" "$work/seed004_calib_cases/$c"; done
rm -rf "$work/seed004_calib"
kitsrt calibrate --model "$out" --cases "$work/seed004_calib_cases" -o "$work/seed004_calib" --holdout 0.34 --seed 0
kitsrt quantize --model "$out" --calibration "$work/seed004_calib" --precision fp16
kitsrt quantize --model "$out" --calibration "$work/seed004_calib" --precision int8 --method minmax \
    --target-agreement 0.99 --probe-inputs 2
kitsrt quantize --model "$out" --calibration "$work/seed004_calib" --precision bf16   # OpenVINO, a CPU with BF16
