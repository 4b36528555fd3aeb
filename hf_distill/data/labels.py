"""Labels: align the teacher's label order with the student's, refuse label sets that differ, and the one encoder
of raw label cells into class ids (text data, image data and `hf-distill compare` all use it)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from datasets import ClassLabel, Dataset, Value
from transformers import PretrainedConfig

_GENERIC_LABEL = re.compile(r"LABEL_\d+")


def label_names(config: PretrainedConfig) -> list[str]:
    """The labels of a classification config in class-index order."""
    id2label = {int(i): name for i, name in (config.id2label or {}).items()}
    if len(id2label) != config.num_labels:
        return [f"LABEL_{i}" for i in range(config.num_labels)]
    return [id2label[i] for i in range(config.num_labels)]


def label_config(labels: Sequence[str]) -> dict[str, Any]:
    """The label fields of a classifier's config over ``labels``, in this order: ``num_labels``, ``id2label`` and
    ``label2id``."""
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def _is_generic(labels: list[str]) -> bool:
    return all(_GENERIC_LABEL.fullmatch(name) for name in labels)


def teacher_to_student_permutation(teacher_labels: list[str], student_labels: list[str]) -> list[int] | None:
    """Indices that reorder teacher logits into the student's label order, or ``None`` when no reordering is needed.

    Unnamed labels (transformers' default ``LABEL_i``) on either side are taken as aligned by index; only the class
    counts must then agree. Named labels must be the same set, in any order.
    """
    if len(teacher_labels) != len(student_labels):
        raise ValueError(
            f"The teacher has {len(teacher_labels)} classes {teacher_labels} but the student has "
            f"{len(student_labels)} {student_labels}. Build the student with the teacher's id2label/label2id."
        )
    if teacher_labels == student_labels or _is_generic(teacher_labels) or _is_generic(student_labels):
        return None
    if sorted(teacher_labels) != sorted(student_labels):
        raise ValueError(
            f"The teacher's labels {teacher_labels} and the student's labels {student_labels} are different sets. "
            "Build the student with the teacher's id2label/label2id, or use a teacher trained on the same labels."
        )
    return [teacher_labels.index(name) for name in student_labels]


def to_student_order(
    values: torch.Tensor, permutation: Sequence[int] | torch.Tensor | None, *, class_indices: bool = False
) -> torch.Tensor:
    """Teacher logits ``(..., C)`` in the student's label order, given :func:`teacher_to_student_permutation`.

    With ``class_indices=True``, ``values`` are teacher class ids (a top-k column's indices) and become the student's
    ids (the inverse permutation). ``None`` returns ``values`` unchanged. Pass the permutation as a tensor on the
    values' device to avoid a host-to-device copy per call.
    """
    if permutation is None:
        return values
    permutation = torch.as_tensor(permutation, device=values.device)
    if not class_indices:
        return values.index_select(-1, permutation)
    inverse = torch.empty_like(permutation)
    inverse[permutation] = torch.arange(len(permutation), device=values.device)
    return inverse[values]


def check_label_names(names: list[str], model_labels: list[str], column: str = "label") -> None:
    """Refuse a dataset's `ClassLabel` names that are not the model's labels in the model's order.

    Ids of a column whose names come in another order would be read as the wrong classes; unnamed labels on either
    side are taken as aligned by index.
    """
    if names == model_labels or _is_generic(names) or _is_generic(model_labels):
        return
    if sorted(names) == sorted(model_labels):
        raise ValueError(
            f"Column {column!r} names the classes {names}, the student {model_labels}: the same classes in another "
            f"order, so its ids would be read as the wrong classes. Realign it by name: "
            f"dataset = dataset.align_labels_with_mapping(model.config.label2id, {column!r})."
        )
    raise ValueError(
        f"Column {column!r} names the classes {names}, but the student has the labels {model_labels}. Build the "
        "student with the dataset's labels (id2label/label2id), or use data of the student's classes."
    )


def encoding_order(data_labels: list[str], model_labels: list[str]) -> list[str]:
    """The label order to encode a dataset's labels in: the model's, when both name the same classes.

    A model with unnamed labels (``LABEL_i``) keeps the data's order, by index. Different classes are refused.
    """
    if _is_generic(model_labels):
        if len(data_labels) != len(model_labels):
            raise ValueError(
                f"The data has {len(data_labels)} classes {data_labels} but the model has {len(model_labels)}."
            )
        return data_labels
    if sorted(data_labels) != sorted(model_labels):
        raise ValueError(
            f"The data's labels {data_labels} are not the model's labels {model_labels}. Use a teacher (and "
            "student) trained on the data's classes, or relabel the data."
        )
    return model_labels


# ---- the label encoder: raw label values of a dataset column -> class ids of a model ----

UNLABELED = -100
"""The label id of an unlabelled row: the cross-entropy skips it, the distillation term still uses it."""


def is_unlabeled(value: Any, feature: Any = None) -> bool:
    """Whether a raw label cell marks an unlabelled row: empty (None, NaN, blank text), or -1 in a `ClassLabel`
    column (its missing-label marker, as in GLUE's test splits). ``-100`` (already encoded) counts too; a plain
    integer or text ``-1`` is a class of its own (sentiment data often has -1/0/1)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value == UNLABELED or (isinstance(feature, ClassLabel) and value == -1)


def _name(value: Any, names: list[str] | None) -> str:
    """A labelled cell as a class name: a `ClassLabel`'s name, an integer id (also one read as a float from a csv
    column with empty cells) as its digits, text as it is."""
    if names is not None:
        return names[value]
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(
                f"Label {value} is a fraction; classification needs class names or integer ids (regression is not "
                "supported). Write the labels as names or integers."
            )
        return str(int(value))
    return str(value)


def class_names(dataset: Dataset, label_column: str = "label") -> list[str]:
    """The classes of ``label_column``: its `ClassLabel` names, else the sorted distinct values of its labelled
    cells (integer ids sort as numbers; empty cells are unlabelled rows, see :func:`is_unlabeled`)."""
    if label_column not in dataset.column_names:
        raise ValueError(
            f"The dataset has no label column {label_column!r}; its columns are {dataset.column_names}. Name the "
            "label column (--label_column / --label_column_name), or distil without labels (alpha=0)."
        )
    feature = dataset.features[label_column]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    values = {v for v in dataset.unique(label_column) if not is_unlabeled(v, feature)}
    if not values:
        raise ValueError(
            f"Label column {label_column!r} has no labelled row. Drop it for pure distillation (alpha=0), or give "
            "labelled data."
        )
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [_name(v, None) for v in sorted(values)]
    return sorted(_name(v, None) for v in values)


def label_ids(values: list[Any], labels: list[str], feature: Any = None) -> list[int]:
    """Raw label cells of a column with ``feature`` as ids in the order of ``labels``; unlabelled cells become
    :data:`UNLABELED` (-100). Unknown classes raise, naming them."""
    names = feature.names if isinstance(feature, ClassLabel) else None
    raw = [None if is_unlabeled(v, feature) else _name(v, names) for v in values]
    label2id = {name: i for i, name in enumerate(labels)}
    unknown = sorted({v for v in raw if v is not None} - set(label2id))
    if unknown:
        raise ValueError(f"Labels {unknown} are not among the model's labels {labels}.")
    return [UNLABELED if v is None else label2id[v] for v in raw]


def encode_label_column(dataset: Dataset, column: str, labels: list[str], output_column: str = "label") -> Dataset:
    """``dataset`` with ``column`` replaced by ``output_column`` of int64 class ids in the order of ``labels``
    (:func:`label_ids`; -100 for unlabelled rows), whatever the column held: a `ClassLabel`, names, integer ids."""
    feature = dataset.features[column]
    ids = label_ids(dataset[column], labels, feature)
    dataset = dataset.remove_columns(column)
    return dataset.add_column(output_column, ids, feature=Value("int64"))


def count_labeled(dataset: Dataset, column: str = "label") -> tuple[int, int]:
    """``(labelled, unlabelled)`` rows of ``dataset`` (all unlabelled when it has no ``column``)."""
    if column not in dataset.column_names:
        return 0, len(dataset)
    feature = dataset.features[column]
    unlabeled = sum(is_unlabeled(v, feature) for v in dataset[column])
    return len(dataset) - unlabeled, unlabeled
