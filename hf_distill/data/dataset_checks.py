"""Checks of a training or evaluation dataset against the student, which return what they found.

:func:`inspect_dataset` refuses teacher-logits columns and labels that do not fit the student (wrong width, NaN,
ragged rows, labels out of range or in another class order) and returns :class:`DatasetFindings`: for each logits
column, the label order and top-k storage its provenance records (:class:`ColumnFindings`), and whether the data has
labels. It writes no state; :class:`~hf_distill.plan.DistillationPlan` turns the findings into the run's rules (label
permutations, temperatures, several columns). Everything here reads Arrow: no Python pass over the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from transformers.utils import logging

from ..losses import IGNORE_INDEX
from .labels import check_label_names
from .provenance import read_logits_info
from .streaming import first_rows
from .top_k import check_top_k_column, indices_column

logger = logging.get_logger(__name__)

# Rows of a streamed dataset read (and, for a lazily precomputed column, run through the teacher) to check it.
STREAM_CHECK_ROWS = 64
LABEL_COLUMNS = ("labels", "label")


@dataclass(frozen=True)
class ColumnFindings:
    """What a logits column's provenance says: the teacher's label order (``None``: unknown, no provenance) and, for
    top-k storage, K and the temperature of the stored rest bucket."""

    labels: list[str] | None
    top_k: int | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class DatasetFindings:
    """The logits columns a dataset holds (by name) and whether it has labels (``None``: cannot tell)."""

    columns: dict[str, ColumnFindings] = field(default_factory=dict)
    has_labels: bool | None = None


def inspect_dataset(dataset: Any, logits_columns: list[str], student_labels: list[str]) -> DatasetFindings | None:
    """Check ``dataset`` and return its findings; ``None`` for a dataset that cannot be read before training.

    A `datasets.Dataset` is checked whole; a stream (`datasets.IterableDataset`) by its first ``STREAM_CHECK_ROWS``
    rows; a `torch.utils.data.Dataset` that wraps others (``Subset``'s ``dataset``, ``ConcatDataset``'s
    ``datasets``) through what it wraps; another map-style dataset by its first row, whose logits columns then have no
    known label order.
    """
    if isinstance(dataset, datasets.IterableDataset):
        dataset = first_rows(dataset, STREAM_CHECK_ROWS)
    if isinstance(dataset, datasets.Dataset):
        return _inspect_arrow(dataset, logits_columns, student_labels)
    inner = getattr(dataset, "datasets", None) or ([dataset.dataset] if hasattr(dataset, "dataset") else None)
    if inner:
        found = [inspect_dataset(part, logits_columns, student_labels) for part in inner]
        return merge_findings([f for f in found if f is not None]) if all(f is not None for f in found) else None
    return _inspect_first_row(dataset, logits_columns)


def merge_findings(findings: list[DatasetFindings]) -> DatasetFindings:
    """The findings of datasets whose rows are read together (a ``ConcatDataset``); their columns must agree."""
    columns: dict[str, ColumnFindings] = {}
    for found in findings:
        for name, column in found.columns.items():
            if columns.setdefault(name, column) != column:
                raise ValueError(
                    f"The joined datasets' {name!r} columns were stored differently ({columns[name]} and {column}); "
                    "their rows cannot be read alike. Precompute every part with the same teacher and storage."
                )
    labelled = {found.has_labels for found in findings}
    return DatasetFindings(columns, labelled.pop() if len(labelled) == 1 else None)


def _inspect_first_row(dataset: Any, logits_columns: list[str]) -> DatasetFindings | None:
    try:
        row = dataset[0]
    except (IndexError, KeyError, TypeError, NotImplementedError):  # cannot be indexed (or empty): read when training
        return None
    if not isinstance(row, dict):
        return None
    present = {column: ColumnFindings(labels=None) for column in logits_columns if column in row}
    if present:
        logger.warning(
            f"{type(dataset).__name__} holds the logits column(s) {list(present)} without provenance (it is not a "
            "datasets.Dataset); its logits are assumed to follow the student's label order."
        )
    return DatasetFindings(present, any(name in row for name in LABEL_COLUMNS))


def _inspect_arrow(dataset: datasets.Dataset, logits_columns: list[str], student_labels: list[str]) -> DatasetFindings:
    present = [column for column in logits_columns if column in dataset.column_names]
    if present and len(present) < len(logits_columns):
        raise ValueError(
            f"The dataset has the teacher logits columns {present} but not "
            f"{sorted(set(logits_columns) - set(present))}: precompute every teacher's column, or list only those in "
            "teacher_logits_columns."
        )
    columns = {column: _check_logits_column(dataset, column, student_labels) for column in present}
    labelled = [name for name in LABEL_COLUMNS if name in dataset.column_names]
    for name in labelled:
        _check_labels(dataset, name, student_labels)
    return DatasetFindings(columns, bool(labelled))


def _check_logits_column(dataset: datasets.Dataset, column: str, student_labels: list[str]) -> ColumnFindings:
    num_classes = len(student_labels)
    info = read_logits_info(dataset, column)
    top_k = check_top_k_column(dataset, column, info) if indices_column(column) in dataset.column_names else None
    feature, values = dataset.features[column], dataset.data.column(column)
    while isinstance(getattr(feature, "feature", None), datasets.List):  # K logits rows per example (K views)
        feature, values = feature.feature, pc.list_flatten(values)
    width = getattr(feature, "length", -1)
    if width == -1 and len(values):
        lengths = pc.min_max(pc.list_value_length(values)).as_py()
        if lengths["min"] != lengths["max"] or values.null_count:
            raise ValueError(
                f"Column {column!r} is ragged: its rows hold from {lengths['min']} to {lengths['max']} values "
                f"(or none). Every row needs one logit per class; precompute it again with precompute_teacher_logits."
            )
        width = lengths["max"]
    if top_k is not None and width != top_k + 1:
        raise ValueError(
            f"Column {column!r} holds {width} values per example, but top-{top_k} storage has {top_k + 1} (the "
            f"top-{top_k} logits and the rest bucket). Precompute it again with precompute_teacher_logits."
        )
    if top_k is None and width != num_classes:
        raise ValueError(
            f"Column {column!r} holds {width} logits per example but the student has {num_classes} classes "
            f"{student_labels}. Precompute the logits with a teacher of the same labels."
        )
    if not pc.all(pc.is_finite(pc.list_flatten(values).cast(pa.float32()))).as_py():
        raise ValueError(f"Column {column!r} contains NaN or inf teacher logits; precompute them again in float32.")
    if info is None:
        logger.warning(
            f"Column {column!r} carries no provenance (it was not made by precompute_teacher_logits); "
            "its logits are assumed to follow the student's label order."
        )
        return ColumnFindings(labels=None)
    return ColumnFindings(labels=info.labels, top_k=info.top_k, temperature=info.temperature)


def _check_labels(dataset: datasets.Dataset, name: str, student_labels: list[str]) -> None:
    """Labels must be integer class ids in the student's range (or -100), and a `ClassLabel` column must name the
    student's classes in the student's order."""
    labels, feature = dataset.data.column(name), dataset.features[name]
    if not pa.types.is_integer(labels.type):
        raise TypeError(
            f"Column {name!r} holds {labels.type} values, but labels must be integer class ids (or -100 to ignore "
            f"a row) of the student's classes {student_labels}. Encode them with "
            f"dataset.cast_column({name!r}, ClassLabel(names=...)) or map them through model.config.label2id."
        )
    if labels.null_count:
        raise ValueError(f"Column {name!r} has {labels.null_count} missing labels; set them to -100 to ignore them.")
    if isinstance(feature, datasets.ClassLabel):
        check_label_names(feature.names, student_labels, name)
    num_classes = len(student_labels)
    out_of_range = pc.or_(
        pc.greater_equal(labels, num_classes), pc.and_(pc.less(labels, 0), pc.not_equal(labels, IGNORE_INDEX))
    )
    if pc.any(out_of_range).as_py():
        bounds = pc.min_max(labels).as_py()
        raise ValueError(
            f"Column {name!r} has labels from {bounds['min']} to {bounds['max']}, but the student has "
            f"{num_classes} classes {student_labels}: labels must be in [0, {num_classes}) or -100. "
            "Build the student with num_labels / id2label matching the data."
        )
