"""Teacher-logit columns read from Arrow a batch at a time, as contiguous arrays: no Python float per logit.

A ``teacher_logits`` column of 1000 classes reaches a collator as 1000 Python floats per example when read through
`datasets`' default (Python) formatting, and converting them back costs about as much as a small student's training
step. :class:`LogitColumns` reads those columns for the whole batch of indices the sampler hands out
(``__getitems__``) with one Arrow ``take``, flattens the fixed-size lists without copying and reshapes them to
``(batch, ..., width)``; every example then carries float32 (logits) or int64 (top-k class indices) numpy rows, which
any collator stacks in one call (`DataCollatorWithPadding` and `default_data_collator` included).

`datasets`' own numpy formatting does the same for a flat column, but is about 35x slower than this on a nested
K-view column ``(views, classes)`` and cannot be combined with ``set_transform``, which the image recipes use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset

# Key under which a `set_transform` callable returns the stored view it drew for each row of a K-view column
# (see `hf_distill.vision.DistillationImageTransform`); the logits of that view are then read from Arrow.
VIEW_INDEX_KEY = "teacher_view_index"


def column_array(table: pa.Table, column: str) -> np.ndarray:
    """``column`` of ``table`` as one numpy array ``(rows, *widths)``: fixed-size lists are flattened without a copy
    and reshaped; floating values become float32 and integers int64."""
    array = table.column(column).combine_chunks()
    shape = [len(array)]
    while pa.types.is_fixed_size_list(array.type):
        shape.append(array.type.list_size)
        array = array.flatten()
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        raise ValueError(
            f"Column {column!r} holds lists of varying length ({table.schema.field(column).type}); teacher logits "
            "need a fixed width per example. Cast it with datasets.List(Value('float32'), length=num_classes)."
        )
    values = array.to_numpy(zero_copy_only=False).reshape(shape)
    return values.astype(np.float32 if np.issubdtype(values.dtype, np.floating) else np.int64, copy=False)


class LogitColumns(torch.utils.data.Dataset):
    """``dataset``'s rows, with ``columns`` (logits and top-k indices) read from Arrow per batch of indices.

    The other columns go through ``dataset``'s own formatting or transform, unchanged. A transform that draws one of
    K stored views per row (a K-view column of shape ``(K, classes)``) returns the drawn view's index under
    ``VIEW_INDEX_KEY`` when the logits are not in its input; the row then carries the logits of that view only.
    """

    def __init__(self, dataset: Dataset, columns: Sequence[str]):
        self.columns = [c for c in columns if c in dataset.column_names]
        self.rows = dataset.remove_columns(self.columns)
        self.table = dataset.select_columns(self.columns).with_format("arrow")

    @property
    def column_names(self) -> list[str]:
        return [*self.rows.column_names, *self.columns]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        rows = self.rows.__getitems__(indices)
        table = self.table[indices]
        arrays = {column: column_array(table, column) for column in self.columns}
        for i, row in enumerate(rows):
            view = row.pop(VIEW_INDEX_KEY, None)
            for column, values in arrays.items():
                row[column] = values[i] if view is None else values[i, view]
        return rows


def with_logit_columns(dataset: Any, columns: Sequence[str]) -> Any:
    """``dataset`` wrapped in :class:`LogitColumns` when it is a `datasets.Dataset` holding any of ``columns``."""
    if isinstance(dataset, Dataset) and any(c in dataset.column_names for c in columns):
        return LogitColumns(dataset, columns)
    return dataset
