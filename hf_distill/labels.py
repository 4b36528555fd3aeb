"""Align the teacher's label order with the student's, and refuse label sets that differ."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from transformers import PretrainedConfig

_GENERIC_LABEL = re.compile(r"LABEL_\d+")


def label_names(config: PretrainedConfig) -> list[str]:
    """The labels of a classification config in class-index order."""
    id2label = {int(i): name for i, name in (config.id2label or {}).items()}
    if len(id2label) != config.num_labels:
        return [f"LABEL_{i}" for i in range(config.num_labels)]
    return [id2label[i] for i in range(config.num_labels)]


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
