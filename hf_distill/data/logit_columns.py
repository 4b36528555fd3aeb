"""Teacher-logit columns read from Arrow a batch at a time, as contiguous arrays: no Python float per logit.

A ``teacher_logits`` column of 1000 classes reaches a collator as 1000 Python floats per example when read through
`datasets`' default (Python) formatting, and converting them back costs about as much as a small student's training
step. :class:`LogitColumns` views the Arrow buffer behind those columns' chunks as a numpy array once (no copy: the
values stay in the memory-mapped cache file), follows the dataset's indices mapping (``select``, ``shuffle``,
``train_test_split``), and gathers the rows of a whole batch of indices (``__getitems__``) with one numpy indexing
into float32 (logits) or int64 (top-k class indices) arrays ``(batch, ..., width)``, which any collator stacks in one
call (`DataCollatorWithPadding` and `default_data_collator` included). Around a collator known to stack them
unchanged, :func:`with_batch_logits` skips that second copy too: the rows reach the collator without their logits,
and each gathered array becomes the batch's tensor as it is (`benchmarks/logit_path_costs.py`: collating 256 rows of
token ids with 1000 logits each took 0.51 ms more than without the logits as per-row arrays, 0.15 ms as one array).

`datasets`' own arrow or numpy formatting does the same work through one slice of the table per row (256 rows of a
1000-wide shuffled column: 1.4 ms against 0.07 ms here), and its numpy formatting cannot be combined with
``set_transform``, which the image recipes use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding, DefaultDataCollator, default_data_collator

from .data_collator import DataCollatorForDistillation

# Key under which a `set_transform` callable returns the stored view it drew for each row of a K-view column
# (see `hf_distill.vision.DistillationImageTransform`); the logits of that view are then read from Arrow.
VIEW_INDEX_KEY = "teacher_view_index"


def column_array(table: pa.Table, column: str) -> np.ndarray:
    """``column`` of ``table`` as one numpy array ``(rows, *widths)``: fixed-size lists are flattened without a copy
    and reshaped; floating values become float32 and integers int64."""
    values = array_values(table.column(column).combine_chunks(), column)
    return values.astype(batch_dtype(values.dtype), copy=False)


def batch_dtype(dtype: np.dtype) -> type:
    """What a batch carries: float32 for logits stored in any float type, int64 for class indices."""
    return np.float32 if np.issubdtype(dtype, np.floating) else np.int64


def array_values(array: pa.Array, name: str) -> np.ndarray:
    """The values of an Arrow array of (nested) fixed-size lists as numpy ``(rows, *widths)``, in their own type; no
    copy when the array has no nulls."""
    shape = [len(array)]
    field_type = array.type
    while pa.types.is_fixed_size_list(array.type):
        shape.append(array.type.list_size)
        array = array.flatten()
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        raise ValueError(
            f"Column {name!r} is stored as lists of any length ({field_type}); read it through LogitColumns, or cast "
            "it with datasets.List(Value('float32'), length=num_classes)."
        )
    return array.to_numpy(zero_copy_only=False).reshape(shape)


def with_fixed_width(dataset: Dataset, column: str) -> Dataset:
    """``dataset`` with ``column`` cast to fixed-size lists when it is stored as lists of any length whose rows all
    have the same width (``add_column(name, logits.tolist())`` or a ``map`` returning lists): one Arrow cast, no Python
    pass over the rows. A column whose rows differ in width (or hold nulls) is refused."""
    feature, values, widths = dataset.features[column], dataset.data.column(column), []
    while isinstance(feature, datasets.List):
        width = feature.length
        if width == -1 and len(values):
            lengths = pc.min_max(pc.list_value_length(values)).as_py()
            if lengths["min"] != lengths["max"] or values.null_count:
                raise ValueError(
                    f"Column {column!r} holds lists of varying length (from {lengths['min']} to {lengths['max']} values "
                    "per row, or none): teacher logits need one value per class in every row. Precompute them again "
                    "with precompute_teacher_logits."
                )
            width = lengths["max"]
        widths.append(width)
        feature, values = feature.feature, pc.list_flatten(values)
    if -1 not in _declared_widths(dataset.features[column]) or -1 in widths:  # fixed already, or no rows
        return dataset
    for width in reversed(widths):
        feature = datasets.List(feature, length=width)
    return dataset.cast_column(column, feature)


def _declared_widths(feature: Any) -> list[int]:
    """The declared length of each nested list level of a feature (-1: any length)."""
    widths = []
    while isinstance(feature, datasets.List):
        widths.append(feature.length)
        feature = feature.feature
    return widths


class ChunkedColumn:
    """One fixed-width column of an Arrow table, gathered by row number without a copy of the table.

    The chunks of a column read from a memory-mapped cache file, or written in memory by `datasets` (``map``,
    ``from_dict``), are slices of one buffer. Each such buffer is viewed once as a flat numpy array, and a batch's
    rows are gathered from it at their element offsets in one indexing, whatever chunks they fall in: a shuffled
    batch of 256 rows from a large cache touches up to 256 chunks of 1000 rows, and a gather per chunk would cost
    about 6 us each. Chunks outside any shared buffer (values with nulls, copied by Arrow) are their own region.
    """

    def __init__(self, table: pa.Table, column: str):
        chunks = [chunk for chunk in table.column(column).chunks if len(chunk)]
        values = [array_values(chunk, column) for chunk in chunks]
        first = values[0] if values else np.empty((0,), np.float32)
        self.row_shape = first.shape[1:]
        self.row_size = int(np.prod(self.row_shape, dtype=np.int64))
        self.dtype = batch_dtype(first.dtype)
        self.starts = np.cumsum([0] + [len(chunk) for chunk in chunks])
        self.regions: list[np.ndarray] = []  # flat views of the buffers the chunks lie in
        regions: dict[tuple[int, int], int] = {}
        region_of_chunk, offset_of_chunk = [], []
        for chunk, array in zip(chunks, values, strict=True):
            region, offset = _region_of(chunk, array)
            key = (region.ctypes.data, region.size)
            if key not in regions:
                regions[key] = len(self.regions)
                self.regions.append(region)
            region_of_chunk.append(regions[key])
            offset_of_chunk.append(offset)
        self.region_of_chunk = np.asarray(region_of_chunk, dtype=np.int64)
        self.offset_of_chunk = np.asarray(offset_of_chunk, dtype=np.int64)
        self._windows: dict[tuple[int, int], np.ndarray] = {}

    def take(self, rows: np.ndarray, views: np.ndarray | None = None) -> np.ndarray:
        """The values of ``rows`` (table row numbers) as float32 or int64, shape ``(len(rows), *widths)``; with
        ``views``, only view ``views[i]`` of row ``rows[i]`` of a K-view column (``(len(rows), classes)``)."""
        shape = self.row_shape if views is None else self.row_shape[1:]
        width = int(np.prod(shape, dtype=np.int64))
        chunk = np.searchsorted(self.starts, rows, side="right") - 1
        offsets = self.offset_of_chunk[chunk] + (rows - self.starts[chunk]) * self.row_size
        if views is not None:
            offsets += np.asarray(views, dtype=np.int64) * width
        if len(self.regions) == 1:  # indexing copies the rows; np.take would first copy the overlapping window
            out = self._window(0, width)[offsets]
        else:
            region = self.region_of_chunk[chunk]
            out = np.empty((len(rows), width), dtype=self.dtype)  # an empty table has no region
            for r in np.unique(region):
                hit = region == r
                out[hit] = self._window(r, width)[offsets[hit]]
        return out.reshape(len(rows), *shape).astype(self.dtype, copy=False)

    def _window(self, region: int, width: int) -> np.ndarray:
        """``regions[region]`` as overlapping rows of ``width`` values, one starting at each element (no copy)."""
        key = (region, width)
        if key not in self._windows:
            flat = self.regions[region]
            self._windows[key] = np.lib.stride_tricks.as_strided(
                flat, (max(flat.size - width + 1, 0), width), (flat.itemsize, flat.itemsize), writeable=False
            )
        return self._windows[key]


def _region_of(chunk: pa.Array, values: np.ndarray) -> tuple[np.ndarray, int]:
    """The flat array that ``values`` (the numpy view of ``chunk``) lies in, and its first element's offset there:
    the whole Arrow buffer behind the chunk where ``values`` is a view of it, else ``values`` itself."""
    while pa.types.is_fixed_size_list(chunk.type):
        chunk = chunk.flatten()
    root = chunk.buffers()[1]
    while root is not None and root.parent is not None:
        root = root.parent
    if root is not None and values.flags.c_contiguous:
        start = values.ctypes.data - root.address
        inside = 0 <= start and start + values.nbytes <= root.size
        if inside and start % values.itemsize == 0:
            region = np.frombuffer(root, dtype=values.dtype, count=root.size // values.itemsize)
            return region, start // values.itemsize
    return values.reshape(-1), 0


class LogitColumns(torch.utils.data.Dataset):
    """``dataset``'s rows, with ``columns`` (logits and top-k indices) read from Arrow per batch of indices.

    The other columns go through ``dataset``'s own formatting or transform, unchanged. A transform that draws one of
    K stored views per row (a K-view column of shape ``(K, classes)``) returns the drawn view's index under
    ``VIEW_INDEX_KEY`` when the logits are not in its input; the row then carries the logits of that view only.
    The numpy views are made on first use in each process and never pickled: DataLoader workers started with
    ``spawn`` receive the dataset (a file path for a memory-mapped one), not the logits.
    """

    def __init__(self, dataset: Dataset, columns: Sequence[str]):
        self.batch_arrays = False  # set by the `BatchLogitsCollator` that takes such batches
        self.columns = [c for c in columns if c in dataset.column_names]
        other = [c for c in dataset.column_names if c not in self.columns]
        self.rows = dataset.remove_columns(self.columns) if other else None  # a table of no columns has no rows
        self.logits = dataset.select_columns(self.columns)
        for column in self.columns:  # lists of one width become fixed-size lists; ragged ones are refused now
            self.logits = with_fixed_width(self.logits, column)
        self._readers: dict[str, ChunkedColumn] | None = None
        self._row_numbers: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": None, "_row_numbers": None}

    @property
    def column_names(self) -> list[str]:
        return [*(self.rows.column_names if self.rows is not None else []), *self.columns]

    def __len__(self) -> int:
        return len(self.logits)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        rows = self.rows.__getitems__(indices) if self.rows is not None else [{} for _ in indices]
        views = [row.pop(VIEW_INDEX_KEY, None) for row in rows]
        arrays = self.take(indices, None if not views or views[0] is None else np.asarray(views))
        if self.batch_arrays and self.rows is not None:
            return LogitRows(rows, arrays)
        for column, values in arrays.items():
            for row, value in zip(rows, values, strict=True):
                row[column] = value
        return rows

    def take(self, indices: Sequence[int], views: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The logit columns of ``indices`` (positions in the dataset, as ``dataset[indices]`` takes them); with
        ``views``, the logits of the stored view ``views[i]`` of each K-view row."""
        if self._readers is None:
            table = self.logits.data.table
            self._readers = {column: ChunkedColumn(table, column) for column in self.columns}
            mapping = self.logits._indices  # `select`/`shuffle` keep the table and map positions to its rows
            self._row_numbers = None if mapping is None else column_array(mapping, mapping.column_names[0])
        positions = np.asarray(indices, dtype=np.int64)
        rows = positions if self._row_numbers is None else self._row_numbers[positions]
        return {column: reader.take(rows, views) for column, reader in self._readers.items()}


class LogitRows(list):
    """A batch's rows without their logit columns, which ride along as one gathered array per column (``arrays``)."""

    def __init__(self, rows: list[dict[str, Any]], arrays: dict[str, np.ndarray]):
        super().__init__(rows)
        self.arrays = arrays


class BatchLogitsCollator:
    """``collator`` for the batches of ``dataset``: the first batch comes as rows that carry their logits and goes to
    ``collator`` as it is; that switches ``dataset`` to :class:`LogitRows`, whose rows are collated without their
    logits and whose gathered arrays become the batch's logits tensors. Only this collator switches the dataset, so a
    batch never reaches a collator that would drop its logits."""

    def __init__(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]], dataset: LogitColumns):
        self.collator, self.dataset = collator, dataset

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not isinstance(features, LogitRows):
            self.dataset.batch_arrays = True
            return self.collator(features)
        batch = self.collator(list(features))
        for column, values in features.arrays.items():
            batch[column] = torch.from_numpy(values)
        return batch


def stacks_unchanged(collator: Any) -> bool:
    """Whether ``collator`` turns per-row float32 / int64 arrays into the tensor of their stack and nothing else:
    transformers' `default_data_collator`, `DefaultDataCollator` and `DataCollatorWithPadding` (``return_tensors="pt"``)
    and :class:`~hf_distill.DataCollatorForDistillation`."""
    if collator is default_data_collator or isinstance(collator, DataCollatorForDistillation):
        return True
    return isinstance(collator, DataCollatorWithPadding | DefaultDataCollator) and collator.return_tensors == "pt"


def with_batch_logits(dataloader: torch.utils.data.DataLoader) -> torch.utils.data.DataLoader:
    """``dataloader`` reading the logit columns of its :class:`LogitColumns` as whole-batch tensors when its collator
    stacks them unchanged (:func:`stacks_unchanged`): the same batches without a per-row copy of the logits. Any other
    collator keeps receiving rows that carry their logits."""
    loader = getattr(dataloader, "base_dataloader", dataloader)  # the DataLoader that an accelerate wrapper iterates
    if isinstance(loader.dataset, LogitColumns) and stacks_unchanged(loader.collate_fn):
        loader.collate_fn = BatchLogitsCollator(loader.collate_fn, loader.dataset)
    return dataloader


def with_logit_columns(dataset: Any, columns: Sequence[str]) -> Any:
    """``dataset`` wrapped in :class:`LogitColumns` when it is a `datasets.Dataset` holding any of ``columns``."""
    if isinstance(dataset, Dataset) and any(c in dataset.column_names for c in columns):
        return LogitColumns(dataset, columns)
    return dataset
