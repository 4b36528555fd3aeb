"""Unlabelled rows in a training set (a transfer set): the teacher labels them, the student learns from its logits.

Tang et al., "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks" (2019) and Turc et al.,
"Well-Read Students Learn Better" (2019): distilling on in-domain text that has no labels lets a small student learn
from far more examples than were labelled. Unlabelled rows carry the label id -100 once encoded: the cross-entropy is
the mean over the labelled rows of a batch, the distillation term the mean over all its rows.
"""

from __future__ import annotations

import logging

from datasets import ClassLabel, Dataset, concatenate_datasets

from .labels import count_labeled, is_unlabeled

logger = logging.getLogger(__name__)


def combine_labeled_and_unlabeled(labeled: Dataset, unlabeled: Dataset, label_column: str = "label") -> Dataset:
    """The rows of ``labeled`` then those of ``unlabeled``, with ``labeled``'s features (its label feature kept).

    ``unlabeled`` needs the input columns of ``labeled`` (cast to their types) and no labels: its label column, if
    any, must be empty (it is dropped). Unlabelled rows get the label column's missing value: -1 in a `ClassLabel`
    column, else an empty cell; :func:`hf_distill.data.labels.label_ids` encodes both as -100. A ``labeled`` set without
    a label column (pure distillation) is simply extended.
    """
    if label_column in unlabeled.column_names:
        feature = unlabeled.features[label_column]
        labelled = [v for v in unlabeled.unique(label_column) if not is_unlabeled(v, feature)]
        if labelled:
            raise ValueError(
                f"The unlabelled set has labels in {label_column!r} (e.g. {labelled[:3]}). Add labelled rows to the "
                "training set instead, or empty the column."
            )
        unlabeled = unlabeled.remove_columns(label_column)
    inputs = [c for c in labeled.column_names if c != label_column]
    missing = [c for c in inputs if c not in unlabeled.column_names]
    if missing:
        raise ValueError(
            f"The unlabelled set lacks the column(s) {missing} of the labelled set (it has {unlabeled.column_names}). "
            "Rename its columns, or drop those columns from the labelled set."
        )
    unlabeled = unlabeled.select_columns(inputs)
    if label_column in labeled.column_names:
        feature = labeled.features[label_column]
        fill = -1 if isinstance(feature, ClassLabel) else None
        unlabeled = unlabeled.add_column(label_column, [fill] * len(unlabeled), feature=feature)
    try:
        unlabeled = unlabeled.cast(labeled.features)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"The unlabelled rows cannot take the labelled rows' types ({error}): unlabelled {unlabeled.features}, "
            f"labelled {labeled.features}. Give both in the same form (e.g. images as files in both)."
        ) from None
    return concatenate_datasets([labeled, unlabeled]) if len(labeled) else unlabeled


def log_label_counts(dataset: Dataset, label_column: str = "label", name: str = "train") -> tuple[int, int]:
    """Log and return ``(labelled, unlabelled)`` row counts of a split."""
    labelled, unlabelled = count_labeled(dataset, label_column)
    logger.info("%s: %s labelled and %s unlabelled rows", name, f"{labelled:,}", f"{unlabelled:,}")
    return labelled, unlabelled


def training_data_summary(labelled: int, unlabelled: int) -> str:
    """The model card's ``training_data`` row, e.g. ``2,000 labelled and 18,000 unlabelled examples``.

    Worded without a verb: the same row serves a distilled student and a CE-only baseline (which has no unlabelled
    rows; :func:`check_alpha_for_unlabeled` refuses them)."""
    if not unlabelled:
        return f"{labelled:,} labelled examples"
    return f"{labelled:,} labelled and {unlabelled:,} unlabelled examples"


def check_alpha_for_unlabeled(labelled: int, unlabelled: int, alpha: float, alpha_end: float | None = None) -> None:
    """Refuse, before training, an objective that ignores the rows it is given: unlabelled rows with ``alpha=1``
    (no distillation term: they would be ignored), or a CE weight with no labelled row."""
    alphas = [alpha] if alpha_end is None else [alpha, alpha_end]
    if unlabelled and all(a == 1.0 for a in alphas):
        raise ValueError(
            f"The training set has {unlabelled:,} unlabelled rows, but alpha=1 trains on the labels alone: those rows "
            "would be ignored. Lower --alpha (e.g. 0.5, or 0 for pure distillation), or drop the unlabelled set."
        )
    if not labelled and any(a > 0 for a in alphas):
        raise ValueError(
            f"The training set has no labelled row, but alpha={alpha} weighs a cross-entropy on labels. Set "
            "--alpha 0 (pure distillation), or give labelled data."
        )
