"""Shared fixtures and helpers: tiny models and datasets built in memory (the default suite never touches the
network), trainers on them, the recipes' assets and flags, and tiny image classifiers."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import (  # noqa: E402
    AutoImageProcessor,
    AutoModelForImageClassification,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    pipeline,
)

from hf_distill import DataCollatorForDistillation, DistillationTrainer, DistillationTrainingArguments  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
WORDS = ["good", "bad", "fine", "great", "awful", "ok", "movie", "food", "the", "was", "very", "not"]


def tiny_bert(
    seed: int = 0, labels: list[str] = LABELS, vocab_size: int = 32, layers: int = 2, hidden: int = 16
) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    return BertForSequenceClassification(config).eval()


def permuted_teacher(teacher: BertForSequenceClassification, order: list[int]) -> BertForSequenceClassification:
    """The same function as ``teacher`` with its classes stored in ``order`` (new class i = old class order[i])."""
    import copy

    other = copy.deepcopy(teacher)
    with torch.no_grad():
        other.classifier.weight.copy_(teacher.classifier.weight[order])
        other.classifier.bias.copy_(teacher.classifier.bias[order])
    names = [label_names_of(teacher)[i] for i in order]
    other.config.id2label = dict(enumerate(names))
    other.config.label2id = {name: i for i, name in enumerate(names)}
    return other


def label_names_of(model) -> list[str]:
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


def tiny_text_dataset(n: int = 16, seed: int = 0, vocab_size: int = 32, ragged: bool = True, labels: bool = True):
    g = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "attention_mask": [], "text": []}
    for i in range(n):
        length = int(torch.randint(3, 12, (1,), generator=g)) if ragged else 8
        ids = [2, *torch.randint(5, vocab_size, (length - 2,), generator=g).tolist(), 3]
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * length)
        rows["text"].append(f"example {i}")
    if labels:
        rows["label"] = torch.randint(0, 3, (n,), generator=g).tolist()
    return Dataset.from_dict(rows)


def make_args(tmp_path, **overrides) -> DistillationTrainingArguments:
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        report_to=[],
        use_cpu=True,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    return DistillationTrainingArguments(**{**defaults, **overrides})


@pytest.fixture
def word_tokenizer(tmp_path) -> BertTokenizerFast:
    """A real WordPiece tokenizer over a 17-token vocabulary, written to disk (no Hub)."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizerFast(vocab=str(vocab), do_lower_case=True)  # transformers 5 ignores vocab_file=


def varied_bert(seed: int = 0, **kwargs) -> BertForSequenceClassification:
    """A tiny BERT initialised with std 1, so that its predictions vary between inputs (``tiny_bert``'s rarely do)."""
    config = tiny_bert(seed, **kwargs).config
    config.initializer_range = 1.0
    torch.manual_seed(seed)
    return BertForSequenceClassification(config).eval()


@pytest.fixture
def scaled_kl():
    """A loss registered for one test with a keyword-only hyperparameter that is no training-argument field."""
    from hf_distill.losses import _LOSSES, kl_divergence_loss, register_loss

    @register_loss("scaled_kl")
    def scaled_kl_loss(student_logits, teacher_logits, temperature, labels=None, *, scale: float):
        """The KL divergence times ``scale``."""
        return scale * kl_divergence_loss(student_logits, teacher_logits, temperature, labels)

    yield "scaled_kl"
    del _LOSSES["scaled_kl"]


@pytest.fixture
def data():
    """16 tokenized rows of ``tiny_text_dataset`` with labels and no text column."""
    return tiny_text_dataset(16).remove_columns("text")


def trainer_for(tmp_path, student, data, teacher=None, **arg_overrides) -> DistillationTrainer:
    """A `DistillationTrainer` of ``student`` that trains and evaluates on ``data``, with ``make_args`` overridden."""
    return DistillationTrainer(
        model=student,
        args=make_args(tmp_path, **arg_overrides),
        teacher_model=teacher,
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorForDistillation(),
    )


def on_device(trainer: DistillationTrainer, batch: dict) -> dict:
    """A collated ``batch`` with its tensors on the trainer's device, as the training loop passes it to
    ``compute_loss``."""
    return {k: v.to(trainer.args.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ---- the recipes: scripts loaded from recipes/, their tiny assets on disk and their common flags ----

ROOT = Path(__file__).resolve().parents[1]


def load_recipe(name: str):
    """The module of ``recipes/<name>.py`` (its ``main(argv)`` runs the recipe in this process)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def write_csv(path: Path, n: int, seed: int) -> None:
    """``n`` rows of ``text,label``: four random words plus one that gives the label away."""
    rng = random.Random(seed)
    rows = ["text,label"]
    for _ in range(n):
        label = rng.choice(LABELS)
        words = rng.sample(WORDS, 4) + [{"negative": "awful", "neutral": "ok", "positive": "great"}[label]]
        rows.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def assets(tmp_path, word_tokenizer):
    """A saved teacher, a pretrained-style student with another tokenizer, train.csv and validation.csv."""
    teacher = tiny_bert(seed=1, vocab_size=word_tokenizer.vocab_size)
    teacher.save_pretrained(tmp_path / "teacher")
    word_tokenizer.save_pretrained(tmp_path / "teacher")
    # A pretrained-style student with another vocabulary and tokenizer.
    vocab = tmp_path / "student_vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(WORDS, reverse=True)]) + "\n")
    student_tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    tiny_bert(seed=5, vocab_size=student_tokenizer.vocab_size, layers=1).save_pretrained(tmp_path / "student_base")
    student_tokenizer.save_pretrained(tmp_path / "student_base")
    write_csv(tmp_path / "train.csv", 24, seed=0)
    write_csv(tmp_path / "validation.csv", 12, seed=1)
    return tmp_path


def common_flags(assets: Path, out: str) -> list[str]:
    return [
        "--teacher_model_name_or_path",
        str(assets / "teacher"),
        "--train_file",
        str(assets / "train.csv"),
        "--validation_file",
        str(assets / "validation.csv"),
        "--output_dir",
        str(assets / out),
        "--do_train",
        "--do_eval",
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "8",
        "--report_to",
        "none",
        "--use_cpu",
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
        "--max_seq_length",
        "16",
    ]


# ---- images: tiny ViT / ResNet / DeiT classifiers, image folders and the image pipeline ----

CLASSES = ["a", "b", "c"]
DIGITS = [str(i) for i in range(10)]


def label_kwargs(labels: list[str] = CLASSES) -> dict:
    return dict(
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)}
    )


def tiny_vit(
    seed: int = 0, channels: int = 3, hidden: int = 16, layers: int = 1, heads: int = 2, labels: list[str] = CLASSES
) -> ViTForImageClassification:
    """A ViT of 8x8 images in 4x4 patches, without dropout."""
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=8, patch_size=4, num_channels=channels, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=2 * hidden, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, **label_kwargs(labels),
    )  # fmt: skip
    return ViTForImageClassification(config)


def tiny_resnet(seed: int = 1) -> ResNetForImageClassification:
    torch.manual_seed(seed)
    config = ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", **label_kwargs()
    )
    return ResNetForImageClassification(config).eval()


def tiny_deit(seed: int = 0) -> DeiTForImageClassificationWithTeacher:
    torch.manual_seed(seed)
    config = DeiTConfig(
        image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, hidden_dropout_prob=0.0, **label_kwargs(),
    )  # fmt: skip
    return DeiTForImageClassificationWithTeacher(config)


def write_image_folders(root, classes: list[str], per_class: int = 4) -> None:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png``: random 10x12 RGB pictures."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(
                    root / split / name / f"{i}.png"
                )


def check_image_pipeline(path: str, labels: list[str]) -> None:
    """A grey 8x8 digit-like picture and a 40x30 RGB photo-like one, as PIL images (the pipeline makes them RGB)."""
    model = AutoModelForImageClassification.from_pretrained(path)
    assert model.config.num_channels == 3
    AutoImageProcessor.from_pretrained(path)
    classifier = pipeline("image-classification", model=path, top_k=len(labels))
    rng = np.random.default_rng(0)
    grey = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L")
    photo = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), mode="RGB")
    for image in (grey, photo):
        predictions = classifier(image)
        assert sorted(p["label"] for p in predictions) == sorted(labels)
        assert abs(sum(p["score"] for p in predictions) - 1) < 1e-4


def image_flags(teacher: str, out, *extra: str) -> list[str]:
    return [
        "--teacher_model_name_or_path", teacher, "--max_train_samples", "16", "--max_eval_samples", "8",
        "--per_device_train_batch_size", "8", "--max_steps", "2", "--report_to", "none", "--use_cpu",
        "--save_strategy", "no", "--do_train", "--do_eval", "--output_dir", str(out), *extra,
    ]  # fmt: skip
