"""Image datasets, models from configs and their pixel formats; the image recipes end to end (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from transformers import ViTImageProcessorPil

from hf_distill.vision import (
    ImageDataArguments,
    class_names,
    image_model_from_config,
    image_shape,
    load_fashion_mnist,
    load_image_processor,
    load_sklearn_digits,
    parse_config_overrides,
    pixel_format_for,
    prepare_image_splits,
)
from hf_distill.vision.datasets import FASHION_MNIST_DIR
from tests.conftest import LABELS, load_recipe, tiny_vit

ROOT = Path(__file__).resolve().parents[2]


def test_digits_are_split_subsampled_and_named():
    pytest.importorskip("sklearn")
    args = ImageDataArguments(dataset_name="sklearn_digits", train_val_split=0.2, max_train_samples=100)
    splits, labels = prepare_image_splits(args, seed=0)
    assert list(splits) == ["train", "validation"] and len(splits["train"]) == 100
    assert len(splits["validation"]) == 360 and labels == [str(i) for i in range(10)]
    assert image_shape(splits) == (8, 8)
    assert max(max(row) for row in splits["train"][0]["image"]) <= 255


def test_image_folders_load_with_their_class_names(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    for split, n in (("train", 3), ("val", 2)):
        for name in ("cat", "dog"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                image_module.fromarray(np.full((6, 5, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    args = ImageDataArguments(train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "val"))
    splits, labels = prepare_image_splits(args, seed=0)
    assert labels == ["cat", "dog"] and len(splits["train"]) == 6 and len(splits["validation"]) == 4
    assert image_shape(splits) == (6, 5)


def test_missing_columns_and_datasets_are_explained():
    with pytest.raises(ValueError, match="--dataset_name"):
        prepare_image_splits(ImageDataArguments(), seed=0)
    pytest.importorskip("sklearn")
    with pytest.raises(ValueError, match="--image_column_name"):
        prepare_image_splits(ImageDataArguments(dataset_name="sklearn_digits", image_column_name="img"), seed=0)
    with pytest.raises(ValueError, match="no label column 'y'"):
        class_names(load_sklearn_digits()["train"], "y")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason="needs the Debian package dataset-fashion-mnist")
def test_fashion_mnist_loads_from_the_debian_package():
    data = load_fashion_mnist()
    assert {k: len(v) for k, v in data.items()} == {"train": 60000, "test": 10000}
    assert class_names(data["train"])[9] == "Ankle boot" and np.asarray(data["test"][0]["image"]).shape == (28, 28)


def test_fashion_mnist_names_its_package_when_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_models_from_configs_take_rgb_and_their_image_processors_round_trip(tmp_path):
    overrides = parse_config_overrides('{"patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1}')
    vit = image_model_from_config("vit", ["a", "b"], image_size=12, overrides=overrides)
    assert vit.config.image_size == 12 and vit.config.num_channels == 3 and vit.config.id2label[1] == "b"
    processor = pixel_format_for(vit.config).processor
    assert (processor.size.height, processor.size.width) == (12, 12) and list(processor.image_mean) == [0.5] * 3
    assert processor.do_convert_rgb
    resnet = image_model_from_config("resnet", ["a", "b"], overrides={"hidden_sizes": [8, 16]})
    assert pixel_format_for(resnet.config, default_size=20).processor.size.height == 20
    imagenet = ViTImageProcessorPil(size={"height": 16, "width": 12}, image_mean=[0.485, 0.456, 0.406])
    imagenet.save_pretrained(tmp_path)
    loaded = pixel_format_for(resnet.config, load_image_processor(str(tmp_path))).processor
    assert loaded.to_dict() == imagenet.to_dict()
    assert load_image_processor(str(tmp_path / "none")) is None
    with pytest.raises(ValueError, match="model_type='deit'"):
        image_model_from_config("vit", ["a", "b"], with_distillation_token=True)
    with pytest.raises(ValueError, match="JSON object"):
        parse_config_overrides("hidden_size=16")


@pytest.mark.slow
def test_image_recipes_train_a_teacher_then_distil_it(tmp_path):
    """train_image_teacher.py, then image_classification.py in the loop (ViT) and from 2 cached views (DeiT)."""
    pytest.importorskip("sklearn")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    common = ["--dataset_name", "sklearn_digits", "--max_train_samples", "128", "--max_eval_samples", "64",
              "--per_device_train_batch_size", "32", "--report_to", "none", "--use_cpu", "--do_train", "--do_eval",
              "--num_train_epochs", "1", "--min_crop_scale", "0.5"]  # fmt: skip
    teacher = tmp_path / "teacher"
    subprocess.run(
        [sys.executable, str(ROOT / "recipes/train_teacher.py"), "--modality", "image", *common, "--model_type", "resnet",
         "--config_overrides", '{"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}',
         "--image_size", "16", "--output_dir", str(teacher)],
        check=True, env=env,
    )  # fmt: skip
    assert (teacher / "checkpoint-4").is_dir() and (teacher / "preprocessor_config.json").exists()
    vit = '{"patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}'
    for student_type, views in (("vit", "0"), ("deit", "2")):
        out = tmp_path / student_type
        subprocess.run(
            [sys.executable, str(ROOT / "recipes/image_classification.py"), *common, "--teacher_model_name_or_path",
             str(teacher), "--student_model_type", student_type, "--student_config_overrides", vit,
             "--teacher_views", views, "--save_strategy", "no", "--output_dir", str(out)],
            check=True, env=env,
        )  # fmt: skip
        metrics = json.loads((out / "all_results.json").read_text())
        assert 0 <= metrics["eval_accuracy"] <= 1 and 0 <= metrics["eval_agreement"] <= 1


def test_image_recipe_distils_a_vit_teacher_hidden_states_and_attention(tmp_path):
    """The image recipe's --hidden_state_loss / --attention_loss flags, ViT teacher (wider, deeper) to ViT student."""
    pytest.importorskip("sklearn")

    teacher = tiny_vit(1, channels=1, hidden=24, layers=2, labels=LABELS)
    teacher.config.id2label = {i: str(i) for i in range(10)}
    teacher.config.label2id = {str(i): i for i in range(10)}
    teacher.config.num_labels = 10
    type(teacher)(teacher.config).save_pretrained(tmp_path / "teacher")
    student = '{"patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}'
    load_recipe("image_classification").main(
        ["--dataset_name", "sklearn_digits", "--max_train_samples", "32", "--max_eval_samples", "16",
         "--per_device_train_batch_size", "16", "--report_to", "none", "--use_cpu", "--do_train", "--do_eval",
         "--max_steps", "2", "--teacher_model_name_or_path", str(tmp_path / "teacher"),
         "--student_config_overrides", student, "--save_strategy", "no", "--output_dir", str(tmp_path / "out"),
         "--hidden_state_loss", "mse", "--attention_loss", "kl", "--layer_map", "0:1"]
    )  # fmt: skip
    metrics = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert metrics["eval_loss_hidden_state"] > 0 and metrics["eval_loss_attention"] >= 0
