# Shared by the demo build scripts (sourced, not run): fill a phantom cache from a given commit's
# tree and train the demo-v2 coarse/fine pair side by side. The caller sets data, work, holdout, skip.

# fill_cache COMMIT CACHE STYLES PROCEDURAL: the phantoms of COMMIT's tree, preprocessed into CACHE.
fill_cache() {
    local src="$work/src_$1"
    [ -d "$src" ] || git worktree add --detach "$src" "$1"
    (cd "$src" && PYTHONPATH="$src" python - "$data" "$2" "$3" "$4" "$holdout,$skip" <<'PY'
import sys
from pathlib import Path
from kitsrt.training.data import prepare_styled, styled_cases
from kitsrt.training.trainer import training_plan
data, cache, styles, procedural, exclude = sys.argv[1:]
spec, _ = training_plan("demo-v2", "coarse")  # the cascade spec; every role is prepared
cases = styled_cases(Path(data), set(exclude.split(",")), int(styles), int(procedural))
prepare_styled(cases, spec, Path(cache))
import kitsrt
print(f"{len(cases)} phantoms in {cache}, drawn by {Path(kitsrt.__file__).parent}")
PY
    )
}

# train_pair CACHE STYLES PROCEDURAL COARSE_ARGS FINE_ARGS: coarse and fine side by side, one thread each.
train_pair() {
    local common=(--preset demo-v2 --exclude "$holdout,$skip" --styles "$2" --procedural "$3" --threads 1
                  --cache "$1" --resume)
    nice -n 10 kitsrt train "$data" --stage coarse -o "$work/coarse" $4 "${common[@]}" >> "$work/coarse.log" 2>&1 &
    local coarse=$!
    nice -n 10 kitsrt train "$data" --stage fine -o "$work/fine" $5 "${common[@]}" >> "$work/fine.log" 2>&1 &
    local fine=$!
    wait "$coarse"
    wait "$fine"
}

# package_demo OUT NOTE TRAINING_DATA: export both checkpoints of $work into the package folder OUT.
package_demo() {
    mkdir -p "$1"
    for stage in coarse fine; do
        kitsrt export "$work/$stage/checkpoint.pt" --stage $stage -o "$1/$stage.onnx" --demo --provenance "$2" \
            --training-data "$3" --overwrite
    done
    python -m kitsrt.export.package "$1"
}
