"""Tiny models and datasets built in memory: the default suite never touches the network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast  # noqa: E402

from hf_distill import DistillationTrainingArguments  # noqa: E402

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
