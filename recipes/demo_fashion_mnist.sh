#!/usr/bin/env bash
# DeiT's premise on one CPU: a ViT learns little from 10,000 Fashion-MNIST images on its own, and more from a small
# CNN teacher. Trains the ResNet teacher, the ViT with plain CE, and the same ViT distilled from the teacher (in the
# loop, then from K cached augmented views), each evaluated on the validation split and the full test split.
# Needs the Debian package dataset-fashion-mnist (`make install-image-data`). Budget knobs: EPOCHS, TRAIN_SAMPLES, OUT.
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-outputs/fashion_mnist}
EPOCHS=${EPOCHS:-30}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
COMMON="--dataset_name fashion_mnist --max_train_samples ${TRAIN_SAMPLES:-10000} --max_eval_samples 10000
        --min_crop_scale 0.5 --per_device_train_batch_size 128 --per_device_eval_batch_size 256 --warmup_steps 20
        --weight_decay 0.05 --seed 42 --do_train --do_eval --report_to none --logging_steps 50"
RESNET='{"embedding_size": 32, "hidden_sizes": [32, 64, 128], "depths": [1, 1, 1], "layer_type": "basic"}'
VIT='{"patch_size": 4, "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 128}'
STUDENT="--num_train_epochs $EPOCHS --learning_rate 1e-3 --save_strategy no"
KD=(--teacher_model_name_or_path "$OUT/teacher" --student_model_type vit --student_config_overrides "$VIT"
    --alpha 0.5 --temperature 2)

echo "== [1/4] ResNet teacher, plain CE, 10 epochs (per-epoch snapshots in $OUT/teacher) =="
$PY recipes/train_teacher.py --modality image $COMMON --num_train_epochs 10 --learning_rate 2e-3 \
    --model_type resnet --config_overrides "$RESNET" --output_dir "$OUT/teacher"
echo "== [2/4] ViT student, plain CE =="
$PY recipes/train_teacher.py --modality image $COMMON $STUDENT --model_type vit --config_overrides "$VIT" \
    --output_dir "$OUT/vit_ce"
echo "== [3/4] ViT student distilled, teacher in the loop on the same augmented view =="
$PY recipes/image_classification.py $COMMON $STUDENT "${KD[@]}" --teacher_views 0 --output_dir "$OUT/vit_kd"
echo "== [4/4] ViT student distilled from 8 cached teacher views per image (no teacher in the loop) =="
$PY recipes/image_classification.py $COMMON $STUDENT "${KD[@]}" --teacher_views 8 --output_dir "$OUT/vit_kd_views"
$PY - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
print("| model | validation acc. | test acc. | test agreement with teacher |\n|---|---|---|---|")
for name in ("teacher", "vit_ce", "vit_kd", "vit_kd_views"):
    r = json.load(open(f"{out}/{name}/all_results.json"))
    agree = f"{r['test_agreement']:.1%}" if "test_agreement" in r else "-"
    print(f"| {name} | {r['eval_accuracy']:.1%} | {r['test_accuracy']:.1%} | {agree} |")
PY
