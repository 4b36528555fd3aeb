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

_LINE = re.compile(r"^hf_distill\.teacher_logits\[(?P<column>[^\]]+)\] = (?P<record>\{.*\})$", re.MULTILINE)


@dataclass(frozen=True)
class TeacherLogitsInfo:
    """Provenance of a teacher-logits column; ``top_k`` and ``temperature`` are set for top-k storage
    (see :mod:`hf_distill.top_k`); ``teacher_parameters`` keeps the teacher's size for the model card."""

    teacher: str
    labels: list[str]
    dtype: str
    teacher_fingerprint: str
    top_k: int | None = None
    temperature: float | None = None
    teacher_parameters: int | None = None


def read_logits_info(dataset: Dataset | IterableDataset, column: str) -> TeacherLogitsInfo | None:
    for match in _LINE.finditer(dataset.info.description or ""):
        if match["column"] == column:
            record = json.loads(match["record"])
            fields = {f.name for f in dataclasses.fields(TeacherLogitsInfo)}
            return TeacherLogitsInfo(**{k: v for k, v in record.items() if k in fields})
    return None


def write_logits_info(dataset: Dataset | IterableDataset, column: str, info: TeacherLogitsInfo) -> None:
    """Record ``info`` for ``column`` in place, replacing an earlier record and keeping the user's description."""
    kept = [m for m in (dataset.info.description or "").splitlines() if not _is_record_of(m, column)]
    record = json.dumps(dataclasses.asdict(info), sort_keys=True)
    dataset.info.description = "\n".join([*kept, f"hf_distill.teacher_logits[{column}] = {record}"]).strip("\n")


def _is_record_of(line: str, column: str) -> bool:
    match = _LINE.match(line)
    return match is not None and match["column"] == column
