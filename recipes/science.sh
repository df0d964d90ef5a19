#!/usr/bin/env bash
# Issue 18: does distillation help, fine-tuned, with every baseline? (docs/results.md, top)
#
#   bash recipes/science.sh                       # resumable: rerun to continue where it stopped
#   PHASES="a b" bash recipes/science.sh          # only some phases
#   python recipes/science_tables.py runs/science --plot docs/results_pretraining.png \
#       --dose-plot docs/results_dose.png
#
# On this 2-core CPU the whole recipe is many hours (a pretraining run of 800 steps x 8 windows
# is 45-60 min on one of two busy cores; fine-tuning one model on splice, 3 replicates, 25-40
# min; on oct4_mafk ~1 h or more),
# so it spans sessions: every job skips what is done and resumes what is not, and the phases
# are ordered so that each one adds a finished comparison. With a GPU the same commands run
# there (--device auto).
#
# The store: every N-free 1,020-bp window of the embedded chrX slice (9,313), the demo teacher's
# final layer, and its predictions at the masked groups (--predictions 16: top-16 6-mers and
# per-base marginals, for the had-soft arm). Pretraining (every arm): STEPS (800) x 8 windows,
# AdamW lr 2e-3, the last 2 chunks (353 windows) held out and scored every 200 steps
# (alignment, masked-base accuracy; the context-count baseline and the teacher's own guess at
# the end). Fine-tuning: centre pooling on splice (mean on oct4_mafk, whose peaks are not
# centred), up to 20 epochs, early stopping with patience 4, the best validation epoch tested,
# 3 replicates (each its own stratified test split, shared by every model).
#
# a  store; pretrain had, mlm, distill, had-soft (seed 0); splice baselines on the same splits:
#    the student from random init, the demo teacher probed and fine-tuned, k-mer LR, one-hot LR
# b  splice: the seed-0 arms fine-tuned and linearly probed; the random-init student with
#    attention pooling (the pooling variants of point 2)
# c  dose-response: HAD (seed 0) from teachers of the demo teacher's shape and increasing
#    strength (random weights; 300 training steps; the shipped demo teacher, 1,803 steps = a's
#    had-s0), same windows and masks; HAD's gain over reconstruction only (teacher-free: mlm-s0)
# d  the arms again with pretraining seed 1, fine-tuned and probed on splice
# e  oct4_mafk: baselines and every finished arm, fine-tuned and probed
# f  dose-response, a stronger teacher: the demo shape trained STRONG_STEPS (5,000) steps, resumable
#    (3-5 h on one core; checkpoints every 100 steps), its store, HAD from it (seed 0), splice.
#    It runs in one lane, so a second copy of the recipe (PHASES=e) can use the other.
# Two lanes run side by side, one thread each, at the lowest CPU priority.
set -euo pipefail
# Run from a snapshot of this file: bash reads a script as it goes, so editing the recipe while
# it runs (it runs for hours) would otherwise change what the running copy does next.
if [ -z "${SCIENCE_ROOT:-}" ]; then
    SCIENCE_ROOT=$(cd "$(dirname "$0")/.." && pwd)
    snapshot=$(mktemp /tmp/science.XXXXXX.sh)
    cp "$0" "$snapshot"
    SCIENCE_ROOT=$SCIENCE_ROOT exec bash "$snapshot" "$@"
fi
cd "$SCIENCE_ROOT"
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/science}
STEPS=${STEPS:-800}  # ~40 min per arm on an idle core (2.9 s/step): a session's two lanes finish
# the four seed-0 arms and their splice evaluations (the first attempt, 2,400 steps, did not)
ARMS=${ARMS:-"had mlm distill had-soft"}
REPLICATES=${REPLICATES:-3}
PHASES=${PHASES:-"a b c d e f"}
STRONG_STEPS=${STRONG_STEPS:-5000}
STORE=$OUT/chrX_demo_pred.had.zarr
TEACHERS=$OUT/teachers
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# The small files every table is made from (no checkpoints; of a store only its attributes),
# copied into the repository after each phase: run folders need not outlive a session, the
# figures must.
ARCHIVE=${ARCHIVE:-docs/science_runs}
mkdir -p "$OUT/logs" "$TEACHERS" "$ARCHIVE"
archive() {
    (cd "$OUT" && find . \( \( -path "./pretrain/*" -o -path "./eval/*" -o -path "./dose/*" \) \
        \( -name val.csv -o -name held_out.json -o -name pretrain_config.json \
        -o -name results.json -o -name usage.json -o -name held_out_windows.csv \) \
        -not -path "*/step-*" \
        -o -path "./teachers/*.csv" -o -path "./teachers/*/training_summary.json" \
        -o -path "*.had.zarr/zarr.json" \) -print0 |
        xargs -0 -r cp --parents -t "$SCIENCE_ROOT/$ARCHIVE")
}

want() { [[ " $PHASES " == *" $1 "* ]]; }

# Run each "name command" line of stdin at nice 19 into $OUT/logs/<name>.log, starting one only
# while fewer than two jobs (had-train, or a teacher's training) run on this machine (a second
# copy of the recipe, or a run left from an earlier one, counts too).
busy() {
    pgrep -fc "^[^ ]*python[^ ]* ([^ ]*had-train (pretrain|eval)|scripts/train_demo_teacher.py)" ||
        true
}
lanes() {
    while read -r name cmd; do
        while [ "$(busy)" -ge 2 ]; do sleep 20; done
        nice -n 19 bash -c "$cmd" < /dev/null > "$OUT/logs/$name.log" 2>&1 &
        sleep 5
    done
    wait
    while [ "$(busy)" -ge 1 ]; do sleep 20; done  # runs this copy did not start
}

store() {  # teacher out: extract, or resume an interrupted extraction; a complete store stays
    # --min-teacher-accuracy 0: the dose-response's random teacher is the point, not an accident.
    "$BIN/had-cache" inspect "$2" 2>/dev/null | grep -q "(complete" && return
    "$BIN/had-cache" extract --fasta demo --teacher "$1" --layer -1 --predictions 16 \
        --batch-size 32 --chunk-records 256 --min-teacher-accuracy 0 --out "$2" \
        2> "$OUT/logs/$(basename "$2").log"
}

pretrain() {  # store run objective seed -> a job line, unless the run is finished
    [ -f "$2/held_out.json" ] && return
    local resume="" name=${2#"$OUT"/}
    [ -d "$2" ] && resume="--resume"
    echo "${name//\//-} [ -f $2/held_out.json ] || $BIN/had-train pretrain --cache $1 --out $2 --objective $3 --seed $4 --steps $STEPS --batch-size 8 --lr 2e-3 \
--holdout-chunks 2 --val-every 200 --save-every 200 --keep-last 2 $resume"
}

eval_common() {  # task mode
    local pooling=center
    [ "$1" = splice ] || pooling=mean
    echo -n "--tasks $1 --replicates $REPLICATES --pooling $pooling --mode $2 --no-tsne"
    [ "$2" = finetune ] && echo -n " --epochs 20 --patience 4"
    echo
}

baselines() {  # task -> job lines: fine-tuned (random init, teacher probe + fine-tune, k-mer,
    # one-hot) and linear (the random encoder's probe; the rest does not depend on the mode)
    echo "$1-finetune-baselines $BIN/had-train eval --checkpoint none $(eval_common "$1" finetune) \
--teacher demo --out $OUT/eval/$1-finetune/baselines"
    echo "$1-linear-baselines $BIN/had-train eval --checkpoint none $(eval_common "$1" linear) \
--models student --out $OUT/eval/$1-linear/baselines"
}

student_evals() {  # task run name -> job lines for a finished pretraining run, both modes
    [ -f "$2/held_out.json" ] || return 0
    for mode in finetune linear; do
        echo "$1-$mode-$3 [ -f $OUT/eval/$1-$mode/$3/results.json ] || $BIN/had-train eval --checkpoint $2 $(eval_common "$1" "$mode") \
--models student --out $OUT/eval/$1-$mode/$3"
    done
}

if want a; then
    store demo "$STORE"
    {
        for arm in $ARMS; do pretrain "$STORE" "$OUT/pretrain/$arm-s0" "$arm" 0; done
        baselines splice
    } | lanes
    archive
fi
if want b; then
    {
        for arm in $ARMS; do student_evals splice "$OUT/pretrain/$arm-s0" "$arm-s0"; done
        # Point 2's last variant: the random-init student with learned attention pooling.
        echo "splice-finetune-attention [ -f $OUT/eval/splice-finetune/attention/results.json ] || \
$BIN/had-train eval --checkpoint none $(eval_common splice finetune | sed 's/center/attention/') \
--models student --out $OUT/eval/splice-finetune/attention"
    } | lanes
    archive
fi
if want c; then
    [ -f "$TEACHERS/random/model.safetensors" ] || "$BIN/python" -c \
        "from had_cache import ntv2; ntv2.make_random_teacher('$TEACHERS/random', 'demo', seed=0)"
    [ -f "$TEACHERS/steps300/model.safetensors" ] || nice -n 19 "$BIN/python" \
        scripts/train_demo_teacher.py --max-steps 300 --out "$TEACHERS/steps300" \
        --log "$TEACHERS/steps300.csv" > "$OUT/logs/teacher-steps300.log" 2>&1
    for teacher in random steps300; do
        store "$TEACHERS/$teacher" "$OUT/dose/$teacher.had.zarr"
    done
    for teacher in random steps300; do
        pretrain "$OUT/dose/$teacher.had.zarr" "$OUT/dose/$teacher/had-s0" had 0
    done | lanes
    for teacher in random steps300; do
        student_evals splice "$OUT/dose/$teacher/had-s0" "dose-$teacher"
    done | grep finetune | lanes
    archive
fi
if want d; then
    for arm in $ARMS; do pretrain "$STORE" "$OUT/pretrain/$arm-s1" "$arm" 1; done | lanes
    for arm in $ARMS; do student_evals splice "$OUT/pretrain/$arm-s1" "$arm-s1"; done | lanes
    archive
fi
if want e; then
    {
        baselines oct4_mafk
        for run in "$OUT"/pretrain/*-s*; do student_evals oct4_mafk "$run" "$(basename "$run")"; done
    } | lanes
    archive
fi
if want f; then
    strong=$TEACHERS/steps$STRONG_STEPS
    # one lane; resumes from its checkpoint (train_demo_teacher.py --resume) after an interruption
    echo "teacher-steps$STRONG_STEPS [ -f $strong/model.safetensors ] || { r=; \
[ -f $strong.checkpoint.pt ] && r=--resume; $BIN/python \
scripts/train_demo_teacher.py --max-steps $STRONG_STEPS --threads 1 --checkpoint-every 100 \
--out $strong --log $TEACHERS/steps$STRONG_STEPS.csv \$r; }" | lanes
    store "$strong" "$OUT/dose/steps$STRONG_STEPS.had.zarr"
    pretrain "$OUT/dose/steps$STRONG_STEPS.had.zarr" "$OUT/dose/steps$STRONG_STEPS/had-s0" had 0 |
        lanes
    student_evals splice "$OUT/dose/steps$STRONG_STEPS/had-s0" "dose-steps$STRONG_STEPS" |
        grep finetune | lanes
    archive
fi
"$BIN/python" recipes/science_tables.py "$OUT"
