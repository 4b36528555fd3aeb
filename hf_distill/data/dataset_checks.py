"""Checks of a training or evaluation dataset against the student, which return what they found.

:func:`inspect_dataset` refuses teacher-logits columns and labels that do not fit the student (wrong width, NaN,
ragged rows, labels out of range or in another class order) and returns :class:`DatasetFindings`: for each logits
column, the label order and top-k storage its provenance records (:class:`ColumnFindings`), and whether the data has
labels. It writes no state; :class:`~hf_distill.plan.DistillationPlan` turns the findings into the run's rules (label
permutations, temperatures, several columns). Everything here reads Arrow: no Python pass over the rows.
"""

from __future__ import annotations

import dataclasses
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
    """The logits columns a dataset holds (by name), whether it has labels (a label column with at least one label
    other than -100; ``None``: cannot tell), the inputs it holds for the teacher alone (``teacher_inputs``: names
    with ``teacher_input_prefix``, such as ``teacher_input_ids`` for a teacher with another tokenizer) and whether
    every logit its rows can give was read and found finite (``logits_checked``: a whole `datasets.Dataset` without a
    transform, whose batches then need no finite check of their own)."""

    columns: dict[str, ColumnFindings] = field(default_factory=dict)
    has_labels: bool | None = None
    teacher_inputs: tuple[str, ...] = ()
    logits_checked: bool = False


def inspect_dataset(
    dataset: Any, logits_columns: list[str], student_labels: list[str], teacher_prefix: str = "teacher_"
) -> DatasetFindings | None:
    """Check ``dataset`` and return its findings; ``None`` for a dataset that cannot be read before training.

    A `datasets.Dataset` is checked whole; a stream (`datasets.IterableDataset`) by its first ``STREAM_CHECK_ROWS``
    rows; a `torch.utils.data.Dataset` that wraps others (``Subset``'s ``dataset``, ``ConcatDataset``'s
    ``datasets``) through what it wraps; another map-style dataset by its first row, whose logits columns then have no
    known label order.
    """
    streamed = isinstance(dataset, datasets.IterableDataset)
    if streamed:
        dataset = first_rows(dataset, STREAM_CHECK_ROWS)
    if isinstance(dataset, datasets.Dataset):
        findings = _inspect_arrow(dataset, logits_columns, student_labels)
        names = dataset.column_names
        if streamed:  # later rows may hold labels, and logits not read yet
            unlabelled = not findings.has_labels and any(name in names for name in LABEL_COLUMNS)
            findings = dataclasses.replace(
                findings, has_labels=None if unlabelled else findings.has_labels, logits_checked=False
            )
    else:
        inner = getattr(dataset, "datasets", None) or ([dataset.dataset] if hasattr(dataset, "dataset") else None)
        if inner:
            found = [inspect_dataset(part, logits_columns, student_labels, teacher_prefix) for part in inner]
            return merge_findings([f for f in found if f is not None]) if all(f is not None for f in found) else None
        row = _first_row(dataset)
        if row is None:
            return None
        findings, names = _inspect_first_row(dataset, row, logits_columns), list(row)
    stored = {*logits_columns, *(indices_column(column) for column in logits_columns)}
    teacher_inputs = tuple(name for name in names if name.startswith(teacher_prefix) and name not in stored)
    return dataclasses.replace(findings, teacher_inputs=teacher_inputs)


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
    has_labels = True if True in labelled else (labelled.pop() if len(labelled) == 1 else None)
    teacher_inputs = tuple(dict.fromkeys(name for found in findings for name in found.teacher_inputs))
    return DatasetFindings(columns, has_labels, teacher_inputs, all(found.logits_checked for found in findings))


def _first_row(dataset: Any) -> dict[str, Any] | None:
    try:
        row = dataset[0]
    except (IndexError, KeyError, TypeError, NotImplementedError):  # cannot be indexed (or empty): read when training
        return None
    return row if isinstance(row, dict) else None


def _inspect_first_row(dataset: Any, row: dict[str, Any], logits_columns: list[str]) -> DatasetFindings:
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
    has_labels = any(pc.any(pc.not_equal(dataset.data.column(name), IGNORE_INDEX)).as_py() for name in labelled)
    # Every stored value was checked (the whole table, whatever `select` maps); a transform may return others.
    return DatasetFindings(columns, has_labels, logits_checked=dataset.format["type"] != "custom")


def _check_logits_column(dataset: datasets.Dataset, column: str, student_labels: list[str]) -> ColumnFindings:
    num_classes = len(student_labels)
    info = read_logits_info(dataset, column)
    top_k = check_top_k_column(dataset, column, info) if indices_column(column) in dataset.column_names else None
    feature, values = dataset.features[column], dataset.data.column(column)
    rows_per_example = []
    while isinstance(getattr(feature, "feature", None), datasets.List):  # K logits rows per example (K views)
        if len(values):
            rows_per_example.append(pc.max(pc.list_value_length(values)).as_py())
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
    if rows_per_example and dataset.format["type"] != "custom":
        _refuse_views_without_transform(column, (*rows_per_example, width))
    if not pc.all(pc.is_finite(pc.list_flatten(values).cast(pa.float32()))).as_py():
        raise ValueError(f"Column {column!r} contains NaN or inf teacher logits; precompute them again in float32.")
    if info is None:
        logger.warning(
            f"Column {column!r} carries no provenance (it was not made by precompute_teacher_logits); "
            "its logits are assumed to follow the student's label order."
        )
        return ColumnFindings(labels=None)
    return ColumnFindings(labels=info.labels, top_k=info.top_k, temperature=info.temperature)


def _refuse_views_without_transform(column: str, row_shape: tuple[int, ...]) -> None:
    """Logits of shape ``row_shape`` per example (several rows: K views, or an extra axis) without a transform that
    draws one view per row would reach the loss as ``(batch, K, classes)`` and broadcast across the batch."""
    raise ValueError(
        f"Column {column!r} holds logits of shape {row_shape} per example (the batch would be "
        f"(batch, {', '.join(map(str, row_shape))})), but the loss needs one row of {row_shape[-1]} logits per "
        f"example. Squeeze the extra axis (store shape ({row_shape[-1]},) per example, e.g. "
        f"dataset.map(lambda row: {{{column!r}: numpy.reshape(row[{column!r}], -1)}}) for a single view), or, for a "
        "K-view cache made by hf_distill.vision.precompute_teacher_views, read it through "
        "dataset.set_transform(DistillationImageTransform(...)), which draws one stored view per row."
    )


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
