#!/usr/bin/env bash
# Issue 21: what does storing less cost the student? (docs/results.md, "Cache economics")
#
#   bash recipes/cache_economics.sh                    # resumable: rerun to continue
#   python recipes/cache_economics.py table runs/cache_econ --plot docs/results_cache_econ.png
#   python recipes/cache_economics.py table docs/cache_econ_runs    # the same from the archive
#
# Six ways to feed the same student the same compute (STEPS x BATCH windows, AdamW lr 2e-3,
# SEEDS), on the embedded chrX slice with the demo teacher (D = 192):
#   (a) fp16, one record per window of the training part (each record reused ~STEPS*BATCH/windows x)
#   (b) fp16 replay: STEPS x BATCH records, each a fresh (window, offset, strand, mask) draw
#   (c) int8 replay (rotation + per-token scale)   (d) pca-int8 replay at R = D/4
#   (e) unmasked teacher: one pass per window, masks drawn per step (D measured, printed)
#   (f) online: the teacher in memory, a fresh mask every draw (the paper's recipe)
# Every arm trains on the slice minus its last 1,020,000 bases; every run is scored on a store
# of those held-out bases (fp16, masked teacher: HAD's own targets), in the full teacher space,
# then its encoder is linearly probed on the UCI splice task (REPLICATES splits).
#
# On this 2-core CPU (sized to fit one session): the stores take ~15 min (demo teacher, ~35
# windows/s; replay stores hold STEPS x BATCH = 3,200 records); one pretraining run of 400 steps
# x 8 is ~20 min on an idle core (2.9 s/step), so 6 arms x 2 seeds ~ 2 h on two lanes. Every step
# skips what is finished and resumes what is not. Tiny check of the whole flow:
#   STEPS=4 BATCH=4 MAX_WINDOWS=64 SEEDS=0 REPLICATES=1 OUT=/tmp/ce bash recipes/cache_economics.sh
# With a GPU the same commands run there (--device auto picks it); at the paper's scale use
# BATCH=1024 STEPS=10000 and hg38 (`had-cache plan` first).
set -euo pipefail
# Run from a snapshot of this file: bash reads a script as it goes, so editing the recipe while
# it runs (for hours) would otherwise change what the running copy does next.
if [ -z "${CACHE_ECON_ROOT:-}" ]; then
    CACHE_ECON_ROOT=$(cd "$(dirname "$0")/.." && pwd)
    snapshot=$(mktemp /tmp/cache_economics.XXXXXX.sh)
    cp "$0" "$snapshot"
    CACHE_ECON_ROOT=$CACHE_ECON_ROOT exec bash "$snapshot" "$@"
fi
cd "$CACHE_ECON_ROOT"
BIN=${BIN:-.venv/bin}
PY=${PY:-$BIN/python}
OUT=${OUT:-runs/cache_econ}
STEPS=${STEPS:-400}
BATCH=${BATCH:-8}
SEEDS=${SEEDS:-"0 1"}
REPLICATES=${REPLICATES:-3}
MAX_WINDOWS=${MAX_WINDOWS:-}
# The small files the table is made from, copied into the repository after every job: run
# folders need not outlive a session, the figures must.
# (a run elsewhere, such as the tiny check above, archives beside itself)
default_archive=$OUT/archive
[ "$OUT" = runs/cache_econ ] && default_archive=docs/cache_econ_runs
ARCHIVE=${ARCHIVE:-$default_archive}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
HIDDEN=$("$PY" -c "import json; print(json.load(open('had_cache/assets/demo_teacher/config.json'))['hidden_size'])")
PCA_DIM=$((HIDDEN / 4))
RECORDS=$((STEPS * BATCH))  # replay: every draw of the run stored once
LIMIT=${MAX_WINDOWS:+--max-windows $MAX_WINDOWS}
mkdir -p "$OUT/logs" "$OUT/stores" "$OUT/pretrain" "$OUT/eval"

[ -f "$OUT/fasta/eval.fa" ] || "$PY" recipes/cache_economics.py split "$OUT/fasta"

store() {  # name fasta options... : extract, resume, or leave a complete store alone
    local name=$1 fasta=$2
    shift 2
    "$BIN/had-cache" inspect "$OUT/stores/$name.had.zarr" 2>/dev/null | grep -q "(complete" && return
    echo "store $name"
    nice -n 19 "$BIN/had-cache" extract --fasta "$fasta" --teacher demo --batch-size 32 \
        --chunk-records 256 $LIMIT --out "$OUT/stores/$name.had.zarr" "$@" \
        > "$OUT/logs/store-$name.log" 2>&1
}

store eval "$OUT/fasta/eval.fa"
store fp16-once "$OUT/fasta/train.fa"
store fp16-replay "$OUT/fasta/train.fa" --records "$RECORDS"
store int8-replay "$OUT/fasta/train.fa" --records "$RECORDS" --codec int8
store pca-replay "$OUT/fasta/train.fa" --records "$RECORDS" --codec pca-int8 --pca-dim "$PCA_DIM"
store unmasked "$OUT/fasta/train.fa" --teacher-input full

job() {  # arm seed source-options... -> pretrain (or resume), score, probe on splice
    local arm=$1 seed=$2
    shift 2
    local run="$OUT/pretrain/$arm-s$seed" resume=""
    if [ ! -f "$run/heldout_reference.json" ]; then
        [ -d "$run" ] && resume="--resume"
        nice -n 19 "$BIN/had-train" pretrain "$@" --out "$run" --seed "$seed" --steps "$STEPS" \
            --batch-size "$BATCH" --lr 2e-3 --save-every 200 --keep-last 2 $resume \
            > "$OUT/logs/$arm-s$seed.log" 2>&1
        "$PY" recipes/cache_economics.py score "$OUT" "$run" >> "$OUT/logs/$arm-s$seed.log" 2>&1
    fi
    [ -f "$OUT/eval/$arm-s$seed/results.json" ] && return
    nice -n 19 "$BIN/had-train" eval --checkpoint "$run" --tasks splice --mode linear \
        --replicates "$REPLICATES" --pooling center --no-tsne --models student \
        --out "$OUT/eval/$arm-s$seed" > "$OUT/logs/eval-$arm-s$seed.log" 2>&1
    "$PY" recipes/cache_economics.py archive "$OUT" "$ARCHIVE"
}

arms() {  # seed -> the six arms, one line each
    local s=$1
    echo "a-fp16-once $s --cache $OUT/stores/fp16-once.had.zarr"
    echo "b-fp16-replay $s --cache $OUT/stores/fp16-replay.had.zarr"
    echo "c-int8-replay $s --cache $OUT/stores/int8-replay.had.zarr"
    echo "d-pca-replay $s --cache $OUT/stores/pca-replay.had.zarr"
    echo "e-unmasked $s --cache $OUT/stores/unmasked.had.zarr"
    echo "f-online $s --online-teacher demo --fasta $OUT/fasta/train.fa --chunk-records 256 $LIMIT"
}

# Two lanes, one thread each: odd and even jobs side by side.
lines=$(for s in $SEEDS; do arms "$s"; done)
lane() { echo "$lines" | awk -v l="$1" 'NR % 2 == l' | while read -r arm seed rest; do
    echo "run $arm-s$seed"
    # shellcheck disable=SC2086
    job "$arm" "$seed" $rest || echo "FAILED $arm-s$seed (see $OUT/logs)"
done; }
lane 0 &
lane 1
wait
"$PY" recipes/cache_economics.py archive "$OUT" "$ARCHIVE"
"$PY" recipes/cache_economics.py table "$OUT"
