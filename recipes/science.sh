#!/usr/bin/env bash
# Issue 18: does distillation help, fine-tuned, with every baseline? (docs/results.md, top)
#
#   bash recipes/science.sh                 # resumable: rerun to continue where it stopped
#   STAGES="pretrain" bash recipes/science.sh   # only some stages
#
# On this 2-core CPU the whole recipe is many hours (a pretraining run of 2,400 steps x 8
# windows is ~2 h on one core; fine-tuning one model on splice ~10 min, on oct4_mafk ~1 h), so it
# spans sessions: every stage skips what is done and resumes what is not. With a GPU, the same
# commands run there (--device auto).
#
# 1. store     one store of every N-free 1,020-bp window of the embedded chrX slice (9,313), the
#              demo teacher's final layer, and its predictions at the masked groups
#              (--predictions 16: top-16 6-mers and per-base marginals, for the had-soft arm).
# 2. pretrain  arms had, mlm, distill, had-soft at equal compute (same store, steps, batch, lr),
#              seeds 0 and 1; the last 2 chunks (353 windows) held out and scored every 200 steps
#              (alignment, masked-base accuracy; the context-count baseline at the end).
# 3. splice    fine-tuned (centre pooling, up to 20 epochs, early stopping with patience 4, the
#              best validation epoch tested), 3 replicates (one shared stratified test split per
#              replicate seed), each pretrained arm; the baselines on the same splits: the same
#              student from random init, the demo teacher probed and fine-tuned, k-mer LR,
#              positional one-hot LR. Then the linear probe of every arm.
# 4. oct4      the same on oct4_mafk (200 bp; mean pooling, the peaks are not centred).
# 5. dose      dose-response: HAD (seed 0, same budget) from teachers of the demo teacher's shape
#              and increasing strength: random weights, 300 training steps, and the shipped demo
#              teacher (1,803 steps, = stage 2's had-s0); each store has the same windows and
#              masks; HAD's gain over reconstruction-only (teacher-free, stage 2's mlm-s0) on the
#              held-out region and fine-tuned on splice.
# Two lanes run side by side, one thread each, at the lowest CPU priority.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/science}
STEPS=${STEPS:-2400}
ARMS=${ARMS:-"had mlm distill had-soft"}
SEEDS=${SEEDS:-"0 1"}
REPLICATES=${REPLICATES:-3}
STAGES=${STAGES:-"store pretrain splice dose oct4"}
STORE=$OUT/chrX_demo_pred.had.zarr
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT/logs"

want() { [[ " $STAGES " == *" $1 "* ]]; }

# Run "$@" for each job line on stdin in up to 2 lanes (nice 19), logging to $OUT/logs/<name>.log.
lanes() {
    while read -r name cmd; do
        nice -n 19 bash -c "$cmd" > "$OUT/logs/$name.log" 2>&1 &
        while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 10; done
    done
    wait
}

if want store; then  # resumes an interrupted store; a complete one is only re-gated (seconds)
    "$BIN/had-cache" extract --fasta demo --teacher demo --layer -1 --predictions 16 \
        --batch-size 32 --chunk-records 256 --out "$STORE" 2> "$OUT/logs/store.log"
fi

pretrain_job() {  # arm seed -> a command that trains, resumes, or does nothing if finished
    local run=$OUT/pretrain/$1-s$2
    local resume=""
    [ -f "$run/held_out.json" ] && { echo "true"; return; }
    [ -d "$run" ] && resume="--resume"
    echo "$BIN/had-train pretrain --cache $STORE --out $run --objective $1 --seed $2 \
--steps $STEPS --batch-size 8 --lr 2e-3 --holdout-chunks 2 --val-every 200 --save-every 200 \
--keep-last 2 $resume"
}

if want pretrain; then
    for seed in $SEEDS; do
        for arm in $ARMS; do
            echo "pretrain-$arm-s$seed $(pretrain_job "$arm" "$seed")"
        done
    done | lanes
fi

suite() {  # task pooling mode -> job lines: the baselines, then every pretrained arm's student
    local task=$1 pooling=$2 mode=$3 common baselines
    common="--tasks $task --replicates $REPLICATES --pooling $pooling --mode $mode --no-tsne"
    # Fine-tuned: random init (`student` of --checkpoint none), the teacher probed and fine-tuned,
    # k-mer and one-hot LR. Linear: the random encoder's probe (the rest is mode-independent).
    baselines="--teacher demo"
    if [ "$mode" = finetune ]; then
        common="$common --epochs 20 --patience 4"
    else
        baselines="--models student"
    fi
    echo "$task-$mode-baselines $BIN/had-train eval --checkpoint none $common $baselines \
--out $OUT/eval/$task-$mode/baselines"
    for seed in $SEEDS; do
        for arm in $ARMS; do
            run=$OUT/pretrain/$arm-s$seed
            [ -f "$run/held_out.json" ] || continue
            echo "$task-$mode-$arm-s$seed $BIN/had-train eval --checkpoint $run $common \
--models student --out $OUT/eval/$task-$mode/$arm-s$seed"
        done
    done
}

if want splice; then
    { suite splice center finetune; suite splice center linear; } | lanes
fi
if want dose; then
    TEACHERS=$OUT/teachers
    mkdir -p "$TEACHERS"
    [ -f "$TEACHERS/random/model.safetensors" ] || "$BIN/python" -c \
        "from had_cache import ntv2; ntv2.make_random_teacher('$TEACHERS/random', 'demo', seed=0)"
    [ -f "$TEACHERS/steps300/model.safetensors" ] || nice -n 19 "$BIN/python" \
        scripts/train_demo_teacher.py --max-steps 300 --out "$TEACHERS/steps300" \
        --log "$TEACHERS/steps300.csv" > "$OUT/logs/teacher-steps300.log" 2>&1
    for teacher in random steps300; do
        # The gate's floor would refuse the random teacher: that is this stage's point.
        "$BIN/had-cache" extract --fasta demo --teacher "$TEACHERS/$teacher" --layer -1 \
            --predictions 16 --batch-size 32 --chunk-records 256 --min-teacher-accuracy 0 \
            --out "$OUT/dose/$teacher.had.zarr" 2> "$OUT/logs/store-$teacher.log"
    done
    for teacher in random steps300; do
        run=$OUT/dose/$teacher/had-s0
        if [ ! -f "$run/held_out.json" ]; then
            resume=""; [ -d "$run" ] && resume="--resume"
            echo "dose-$teacher $BIN/had-train pretrain --cache $OUT/dose/$teacher.had.zarr \
--out $run --objective had --seed 0 --steps $STEPS --batch-size 8 --lr 2e-3 --holdout-chunks 2 \
--val-every 200 --save-every 200 --keep-last 2 $resume"
        fi
    done | lanes
    for teacher in random steps300; do
        run=$OUT/dose/$teacher/had-s0
        [ -f "$run/held_out.json" ] || continue
        echo "dose-splice-$teacher $BIN/had-train eval --checkpoint $run --tasks splice \
--replicates $REPLICATES --pooling center --mode finetune --epochs 20 --patience 4 --no-tsne \
--models student --out $OUT/eval/splice-finetune/dose-$teacher"
    done | lanes
fi
if want oct4; then
    { suite oct4_mafk mean finetune; suite oct4_mafk mean linear; } | lanes
fi
"$BIN/python" recipes/science_tables.py "$OUT"
