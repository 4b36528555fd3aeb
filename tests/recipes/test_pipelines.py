"""Every student type the recipes produce (text, ViT, DeiT, LoRA text) is saved, reloaded with the Auto classes and
run in `pipeline()` on a real input, giving the teacher's label names."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    pipeline,
)

from hf_distill.vision import default_image_processor
from tests.conftest import DIGITS, LABELS, check_image_pipeline, common_flags, image_flags, load_recipe

TINY_VIT = (
    '{"patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}'
)


def check_text_pipeline(path: str) -> None:
    AutoModelForSequenceClassification.from_pretrained(path)
    AutoTokenizer.from_pretrained(path)
    predictions = pipeline("text-classification", model=path, top_k=None)(["the food was not good"])[0]
    assert sorted(p["label"] for p in predictions) == sorted(LABELS)


def test_text_student_runs_in_a_pipeline(assets):  # noqa: F811
    flags = common_flags(assets, "text-student") + ["--student_init", "teacher_layers", "--student_num_layers", "1"]
    load_recipe("text_classification").main(flags)
    check_text_pipeline(str(assets / "text-student"))


def test_lora_text_student_runs_in_a_pipeline(assets):  # noqa: F811
    """The text recipe's --use_peft output: an adapter folder that pipeline() puts on its base model."""
    pytest.importorskip("peft")
    from peft import AutoPeftModelForSequenceClassification

    flags = common_flags(assets, "lora") + ["--student_init", "pretrained", "--use_peft", "--lora_r", "4"]
    flags += ["--student_model_name_or_path", str(assets / "student_base"), "--lora_target_modules", "query", "value"]
    load_recipe("text_classification").main(flags)
    out = assets / "lora"
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    reloaded = AutoPeftModelForSequenceClassification.from_pretrained(out)
    assert [reloaded.config.id2label[i] for i in range(3)] == LABELS
    check_text_pipeline(str(out))


@pytest.fixture
def grey_teacher(tmp_path) -> str:
    """A ResNet trained on grey images (one input channel) with its processor, as older recipes saved it."""
    pytest.importorskip("sklearn")
    torch.manual_seed(0)
    config = ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
        num_labels=10, id2label=dict(enumerate(DIGITS)), label2id={d: i for i, d in enumerate(DIGITS)},
    )  # fmt: skip
    ResNetForImageClassification(config).save_pretrained(tmp_path / "teacher")
    default_image_processor((8, 8), num_channels=1).save_pretrained(tmp_path / "teacher")
    return str(tmp_path / "teacher")


@pytest.mark.parametrize("student_type, views", [("vit", "0"), ("deit", "2")])
def test_image_students_of_a_grey_dataset_run_in_a_pipeline(tmp_path, grey_teacher, student_type, views):
    """sklearn's grey digits, a one-channel teacher: the student still takes RGB and its processor converts."""
    out = tmp_path / student_type
    flags = ["--dataset_name", "sklearn_digits", "--student_model_type", student_type]
    flags += ["--student_config_overrides", TINY_VIT, "--teacher_views", views, "--min_crop_scale", "0.5"]
    load_recipe("image_classification").main(image_flags(grey_teacher, out, *flags))
    check_image_pipeline(str(out), DIGITS)


def test_pretrained_image_student_with_another_head_trains(tmp_path):
    """A ViT saved with 5 classes distilled from a 3-class teacher on an image folder: its head is rebuilt."""
    classes = ["bird", "cat", "dog"]
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(4):
                picture = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
                Image.fromarray(picture).save(tmp_path / split / name / f"{i}.png")
    torch.manual_seed(0)
    teacher_config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3,
        id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)},
    )  # fmt: skip
    ResNetForImageClassification(teacher_config).save_pretrained(tmp_path / "teacher")
    five = [f"imagenet_{i}" for i in range(5)]
    vit_config = ViTConfig(
        image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=5, id2label=dict(enumerate(five)), label2id={c: i for i, c in enumerate(five)},
    )  # fmt: skip
    pretrained = ViTForImageClassification(vit_config)
    pretrained.save_pretrained(tmp_path / "vit5")
    default_image_processor((8, 8)).save_pretrained(tmp_path / "vit5")
    out = tmp_path / "student"
    flags = ["--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val")]
    flags += ["--student_model_name_or_path", str(tmp_path / "vit5")]
    metrics = load_recipe("image_classification").main(image_flags(str(tmp_path / "teacher"), out, *flags))
    assert 0 <= metrics["eval_accuracy"] <= 1 and metrics["train_loss"] > 0
    student = AutoModelForImageClassification.from_pretrained(out)
    assert student.config.id2label == dict(enumerate(classes))
    kept = pretrained.vit.embeddings.patch_embeddings.projection.weight
    assert not torch.equal(student.vit.embeddings.patch_embeddings.projection.weight, kept)  # it trained
    check_image_pipeline(str(out), classes)
