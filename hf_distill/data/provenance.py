"""Where precomputed teacher logits came from, stored with the dataset.

The record lives in ``dataset.info.description`` (one JSON line per logits column), which `datasets` carries through
``map``/``select``/``shuffle``/``concatenate_datasets`` and ``save_to_disk``/``load_from_disk``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

from datasets import Dataset, IterableDataset
from transformers.utils import logging

logger = logging.get_logger(__name__)

_LINE = re.compile(r"^hf_distill\.teacher_logits\[(?P<column>[^\]]+)\] = (?P<record>\{.*\})$", re.MULTILINE)


@dataclass(frozen=True)
class TeacherLogitsInfo:
    """Provenance of a teacher-logits column; ``top_k`` and ``temperature`` are set for top-k storage
    (see :mod:`hf_distill.data.top_k`); ``teacher_parameters`` keeps the teacher's size for the model card."""

    teacher: str
    labels: list[str]
    dtype: str
    teacher_fingerprint: str
    top_k: int | None = None
    temperature: float | None = None
    teacher_parameters: int | None = None


def read_logits_info(dataset: Dataset | IterableDataset, column: str) -> TeacherLogitsInfo | None:
    """The provenance of ``column``, or ``None`` when it has none.

    ``concatenate_datasets`` keeps the record of every part. Parts whose logits follow different label orders or
    storage (top-k, temperature) cannot be told apart row by row, so they are refused; parts from different teachers
    with the same labels are read with the first record, and a warning.
    """
    fields = {f.name for f in dataclasses.fields(TeacherLogitsInfo)}
    records = []
    for match in _LINE.finditer(dataset.info.description or ""):
        if match["column"] == column:
            info = TeacherLogitsInfo(**{k: v for k, v in json.loads(match["record"]).items() if k in fields})
            if info not in records:
                records.append(info)
    if not records:
        return None
    first = records[0]
    for other in records[1:]:
        if (other.labels, other.top_k, other.temperature) != (first.labels, first.top_k, first.temperature):
            raise ValueError(
                f"Column {column!r} joins logits of different layouts (concatenated datasets?): labels "
                f"{first.labels} (top_k={first.top_k}) from {first.teacher!r} and {other.labels} "
                f"(top_k={other.top_k}) from {other.teacher!r}. Its rows cannot be aligned; precompute the column again "
                "on the concatenated dataset with one teacher."
            )
        if other.teacher_fingerprint != first.teacher_fingerprint:
            logger.warning(
                f"Column {column!r} joins logits of different teachers ({first.teacher!r} and {other.teacher!r}) with "
                "the same labels; the first is recorded as the teacher."
            )
    return first


def write_logits_info(dataset: Dataset | IterableDataset, column: str, info: TeacherLogitsInfo) -> None:
    """Record ``info`` for ``column`` in place, replacing an earlier record and keeping the user's description."""
    kept = [m for m in (dataset.info.description or "").splitlines() if not _is_record_of(m, column)]
    record = json.dumps(dataclasses.asdict(info), sort_keys=True)
    dataset.info.description = "\n".join([*kept, f"hf_distill.teacher_logits[{column}] = {record}"]).strip("\n")


def _is_record_of(line: str, column: str) -> bool:
    match = _LINE.match(line)
    return match is not None and match["column"] == column


def stored_teacher(datasets: list, columns: list[str]) -> tuple[str, int | None]:
    """The teacher's name and parameter count recorded with the logits ``columns`` of the first of ``datasets`` that
    records them all (several columns: the teachers joined by " + "); ``("unknown", None)`` when none does."""
    for dataset in datasets:
        if isinstance(dataset, Dataset):
            infos = [read_logits_info(dataset, column) for column in columns]
            if all(info is not None for info in infos):
                sizes = [info.teacher_parameters for info in infos]
                return " + ".join(info.teacher for info in infos), None if None in sizes else sum(sizes)
    return "unknown", None
