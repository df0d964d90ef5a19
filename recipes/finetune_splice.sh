#!/usr/bin/env bash
# Fine-tuning recipe on the built-in splice task (issue 18, point 2): the random-init paper-preset
# student, pooled three ways, beside the k-mer and positional one-hot baselines on the same split.
#
#   bash recipes/finetune_splice.sh        # two runs side by side, one thread each
#
# One replicate: one stratified 80/20 test split (seed 0) shared by every model, a 90/10
# train/validation split of the rest, up to 20 epochs, early stopping after 4 epochs without a
# better validation accuracy, the best epoch tested. The curves are in
# $OUT/<pooling>/splice/student/replicate-0.json ("curve").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/finetune-splice}
POOLINGS=${POOLINGS:-"center mean attention"}  # measured: center, mean (docs/results.md)
run() {
    OMP_NUM_THREADS=1 "$BIN/had-train" eval --checkpoint none --tasks splice --replicates 1 \
        --epochs 20 --patience 4 --pooling "$1" --out "$OUT/$1" --no-tsne
}
for pooling in $POOLINGS; do
    run "$pooling" &
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 5; done
done
wait
