"""Augmented copies of training texts for a transfer set, labelled by the teacher (Tang et al., "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks", 2019, section 3.3).

Each word is masked with probability ``mask_prob`` (replaced by the tokenizer's mask token, else its unknown token),
then with probability ``ngram_prob`` the text is cut to a random n-gram of 1 to ``max_ngram`` words. Tang et al.'s
third rule (part-of-speech-guided word replacement) needs a tagger and is left out. The copies carry no label: the
student learns them from the teacher's logits of the augmented text (precomputed with the rest of the training set).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from datasets import Dataset
from transformers import PreTrainedTokenizerBase


@dataclass
class TextAugmentationArguments:
    """``--augment_copies K`` adds K augmented, unlabelled copies of each labelled training text."""

    augment_copies: int = field(
        default=0,
        metadata={
            "help": "K augmented copies of each labelled training text (Tang et al. 2019: word masking and n-gram "
            "sampling), labelled by the teacher only (distillation term; needs alpha < 1). 0: none."
        },
    )
    augment_mask_prob: float = field(default=0.1, metadata={"help": "Probability of masking each word."})
    augment_ngram_prob: float = field(
        default=0.25, metadata={"help": "Probability of cutting a copy to a random n-gram."}
    )
    augment_max_ngram: int = field(default=5, metadata={"help": "Longest n-gram (words) kept by n-gram sampling."})

    def __post_init__(self) -> None:
        if self.augment_copies < 0:
            raise ValueError(f"augment_copies must be >= 0, got {self.augment_copies}.")
        for name in ("augment_mask_prob", "augment_ngram_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
        if self.augment_max_ngram < 1:
            raise ValueError(f"augment_max_ngram must be >= 1, got {self.augment_max_ngram}.")


def augment_text(
    text: str,
    rng: np.random.Generator,
    mask_token: str,
    mask_prob: float = 0.1,
    ngram_prob: float = 0.25,
    max_ngram: int = 5,
) -> str:
    """One augmented copy of ``text`` (whitespace-separated words): masking, then n-gram sampling."""
    if not isinstance(text, str) or not text.split():
        return text  # empty cells are refused, naming the row, when the texts are tokenized
    words = text.split()
    masks = rng.random(len(words)) < mask_prob
    words = [mask_token if masked else word for word, masked in zip(words, masks, strict=True)]
    if rng.random() < ngram_prob and len(words) > 1:
        n = int(rng.integers(1, min(max_ngram, len(words)) + 1))
        start = int(rng.integers(0, len(words) - n + 1))
        words = words[start : start + n]
    return " ".join(words)


def mask_token_of(tokenizer: PreTrainedTokenizerBase) -> str:
    """The token that masks a word: the tokenizer's mask token, else its unknown token."""
    token = tokenizer.mask_token or tokenizer.unk_token
    if token is None:
        raise ValueError(f"{type(tokenizer).__name__} has neither a mask nor an unknown token to mask words with.")
    return token


def augmented_copies(
    dataset: Dataset,
    text_columns: list[str],
    copies: int,
    *,
    mask_token: str,
    seed: int,
    mask_prob: float = 0.1,
    ngram_prob: float = 0.25,
    max_ngram: int = 5,
) -> Dataset:
    """``copies`` augmented copies of every row of ``dataset`` (copy-major: all first copies, then all second ...),
    with the ``text_columns`` only and no labels. Row ``i``'s copy ``k`` depends on ``(seed, i, k)`` alone."""
    texts = {column: dataset[column] for column in text_columns}
    out: dict[str, list[str]] = {column: [] for column in text_columns}
    for copy in range(copies):
        for row in range(len(dataset)):
            rng = np.random.default_rng([seed, row, copy])
            for column in text_columns:
                out[column].append(augment_text(texts[column][row], rng, mask_token, mask_prob, ngram_prob, max_ngram))
    return Dataset.from_dict(out, features=dataset.select_columns(text_columns).features)
