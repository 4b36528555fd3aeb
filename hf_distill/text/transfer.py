"""The text recipe's training set: the labelled rows, plus unlabelled rows and augmented copies for distillation."""

from __future__ import annotations

from datasets import DatasetDict

from ..data.unlabeled import combine_labeled_and_unlabeled, log_label_counts
from .augment import TextAugmentationArguments, augmented_copies


def assemble_training_set(
    raw: DatasetDict,
    text_columns: list[str],
    *,
    label_column: str = "label",
    augmentation: TextAugmentationArguments | None = None,
    mask_token: str | None = None,
    seed: int = 42,
) -> tuple[DatasetDict, tuple[int, int]]:
    """``raw`` whose ``train`` is extended by its ``unlabeled`` split (removed) and by ``augmentation.augment_copies``
    augmented copies of the labelled training texts (words masked with ``mask_token``, seeded with ``seed``).

    Returns the splits and the ``(labelled, unlabelled)`` row counts of the new ``train`` (logged).
    """
    raw = DatasetDict(raw)
    unlabeled = raw.pop("unlabeled", None)
    if "train" not in raw:
        if unlabeled is None:
            return raw, (0, 0)
        raise ValueError(
            "Unlabelled data joins a training set: give --train_file or --dataset_name with a train split."
        )
    train = raw["train"].select_columns([c for c in [*text_columns, label_column] if c in raw["train"].column_names])
    labelled = train
    if unlabeled is not None:
        train = combine_labeled_and_unlabeled(train, unlabeled, label_column)
    if augmentation is not None and augmentation.augment_copies:
        if mask_token is None:
            raise ValueError("Augmented copies need a mask_token (the tokenizer's mask or unknown token).")
        copies = augmented_copies(
            labelled,
            text_columns,
            augmentation.augment_copies,
            mask_token=mask_token,
            seed=seed,
            mask_prob=augmentation.augment_mask_prob,
            ngram_prob=augmentation.augment_ngram_prob,
            max_ngram=augmentation.augment_max_ngram,
        )
        train = combine_labeled_and_unlabeled(train, copies, label_column)
    raw["train"] = train
    return raw, log_label_counts(train, label_column)
