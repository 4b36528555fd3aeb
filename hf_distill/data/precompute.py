"""Precompute teacher logits once and store them as a `datasets` column."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict, List, Value
from datasets.fingerprint import Hasher
from transformers import PreTrainedModel

from ..teachers.distributed import map_in_shards, process_state
from ..teachers.loading import forward_input_names, load_teacher, model_fingerprint, model_name, unwrap
from .data_collator import pad_features
from .labels import label_names
from .provenance import TeacherLogitsInfo, write_logits_info
from .top_k import check_top_k_options, index_dtype, indices_column, top_k_logits

STORAGE_DTYPES = ("float32", "float16")
# Rows handed to one `map` call; sorting them by length before cutting batches wastes little on padding, in the
# spirit of transformers' LengthGroupedSampler "megabatches".
LENGTH_GROUP_BATCHES = 32


def precompute_teacher_logits(
    teacher: PreTrainedModel | str,
    dataset: Dataset | DatasetDict | IterableDataset | IterableDatasetDict,
    *,
    column: str = "teacher_logits",
    teacher_input_prefix: str = "teacher_",
    batch_size: int = 64,
    dtype: str | None = None,
    top_k: int | None = None,
    temperature: float | None = None,
    device: str | torch.device | None = None,
    autocast: bool = True,
    group_by_length: bool = True,
    pad_token_id: int | None = None,
    load_from_cache_file: bool = True,
    cache_dir: str | None = None,
) -> Dataset | DatasetDict | IterableDataset | IterableDatasetDict:
    """Return ``dataset`` (or every split of a `DatasetDict`) with the teacher's logits in ``column``.

    The teacher reads the ``teacher_input_prefix``-ed columns (prefix stripped) if the dataset has them, else the
    plain ones. Batches run under ``no_grad`` (and bf16/fp16 autocast on GPU), sorted by length within groups of
    ``LENGTH_GROUP_BATCHES`` batches and written back in the original order. Ragged token columns are right-padded
    (``input_ids`` with ``pad_token_id``, default the teacher config's, others with 0).

    Results are cached by `datasets` under a fingerprint of the dataset, the teacher's weights and these options,
    so a second call on a dataset with cache files (loaded from files or the Hub) is instant. The column records
    the teacher's name, label order and storage dtype; `DistillationTrainer` checks them against the student.

    Under several processes (``accelerate launch`` / ``torchrun``) each process runs the teacher on its own device
    (default: ``PartialState().device``; on a machine without GPU create ``PartialState(cpu=True)`` first) over one
    contiguous shard, writes it under ``cache_dir`` (default: the dataset's cache directory; required for in-memory
    datasets, and on a shared filesystem across machines), and every process returns the merged dataset, equal to
    the single-process result (see :func:`hf_distill.teachers.distributed.map_in_shards`). Call it on all processes at once,
    not inside ``main_process_first``.

    An `IterableDataset` (streamed data) gets a lazy ``map``: the teacher runs as the rows are read, on every pass.

    ``dtype`` defaults to float32, or float16 with ``top_k``. ``top_k=K`` (for many classes) stores only the K largest
    logits plus a rest bucket at ``temperature`` (the training temperature), with their class indices in
    ``<column>_indices``: see :mod:`hf_distill.data.top_k`.
    """
    if dtype is None:
        dtype = "float32" if top_k is None else "float16"
    check_storage_options(dtype, batch_size)
    state = process_state()
    runner = teacher_runner(teacher, device, autocast, pad_token_id)
    check_top_k_options(top_k, temperature, len(runner.labels))

    kwargs = dict(
        column=column,
        prefix=teacher_input_prefix,
        batch_size=batch_size,
        dtype=dtype,
        top_k=top_k,
        temperature=temperature,
        group_by_length=group_by_length,
        load_from_cache_file=load_from_cache_file,
    )

    def one_split(split: Dataset | IterableDataset) -> Dataset | IterableDataset:
        if state.num_processes == 1 or isinstance(split, IterableDataset):
            return _precompute_split(runner, split, **kwargs)
        options = {name: value for name, value in kwargs.items() if name != "load_from_cache_file"}
        return map_in_shards(
            split,
            functools.partial(_precompute_split, runner, **kwargs),
            key=Hasher.hash([split._fingerprint, runner.cache_key(), sorted(options.items())]),
            block_size=batch_size * LENGTH_GROUP_BATCHES,
            cache_dir=cache_dir,
            load_from_cache_file=load_from_cache_file,
        )

    if isinstance(dataset, (DatasetDict, IterableDatasetDict)):
        return type(dataset)({split: one_split(ds) for split, ds in dataset.items()})
    return one_split(dataset)


def check_storage_options(dtype: str, batch_size: int) -> None:
    """Refuse a logits storage dtype or batch size that precomputation cannot use."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {STORAGE_DTYPES} (bfloat16 biases small KLs), got {dtype!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")


def teacher_runner(
    teacher: PreTrainedModel | str, device: str | torch.device | None, autocast: bool, pad_token_id: int | None
) -> TeacherRunner:
    """The frozen teacher on ``device`` (default: this process's device under several processes, else CUDA when
    available), ready to label batches; ``pad_token_id`` defaults to the teacher config's."""
    teacher = load_teacher(teacher)
    if device is None:
        state = process_state()
        device = state.device if state.num_processes > 1 else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    teacher.to(device)
    if pad_token_id is None:
        pad_token_id = getattr(unwrap(teacher).config, "pad_token_id", None) or 0
    return TeacherRunner(teacher, device, autocast, pad_token_id)


class TeacherRunner:
    """Runs the teacher on numpy batches: pads, moves to the device, autocasts, returns float32 numpy logits."""

    def __init__(self, teacher: torch.nn.Module, device: torch.device, autocast: bool, pad_token_id: int):
        self.teacher = teacher
        self.device = device
        self.pad_token_id = pad_token_id
        self.accepted = forward_input_names(teacher)
        self.labels = label_names(unwrap(teacher).config)
        self.autocast_dtype = None
        if autocast and device.type == "cuda":
            self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.fingerprint = model_fingerprint(teacher)

    def cache_key(self) -> list:
        return [self.fingerprint, self.device.type, str(self.autocast_dtype), self.pad_token_id]

    @torch.no_grad()
    def __call__(self, features: dict[str, list]) -> np.ndarray:
        tensors = {name: t.to(self.device) for name, t in pad_features(features, self.pad_token_id).items()}
        amp = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with amp:
            logits = self.teacher(**tensors).logits
        return logits.float().cpu().numpy()


def _input_columns(dataset: Dataset, prefix: str, accepted: list[str]) -> dict[str, str]:
    """Map each teacher input name to its dataset column: ``prefix + name`` when any such column exists."""
    prefixed = {name: prefix + name for name in accepted if prefix + name in dataset.column_names}
    columns = prefixed or {name: name for name in accepted if name in dataset.column_names}
    if not columns:
        raise ValueError(
            f"The dataset has none of the teacher's inputs ({', '.join(accepted)}), with or without the prefix "
            f"{prefix!r}. Its columns are {dataset.column_names}: tokenize / preprocess it for the teacher first."
        )
    return columns


def _precompute_split(
    runner: TeacherRunner,
    dataset: Dataset | IterableDataset,
    *,
    column: str,
    prefix: str,
    batch_size: int,
    dtype: str,
    top_k: int | None,
    temperature: float | None,
    group_by_length: bool,
    load_from_cache_file: bool,
) -> Dataset | IterableDataset:
    if dataset.features is None:
        raise ValueError(
            "The IterableDataset's features are unknown, so its teacher inputs cannot be found. Give them when "
            "loading (load_dataset(..., streaming=True, features=...)) or with dataset.cast(features)."
        )
    index_column = indices_column(column)
    dataset = dataset.remove_columns([c for c in (column, index_column) if c in dataset.column_names])
    columns = _input_columns(dataset, prefix, runner.accepted)
    names, sources = list(columns), list(columns.values())
    num_labels = len(runner.labels)
    width = num_labels if top_k is None else top_k + 1
    np_dtype = np.dtype(dtype)

    def add_logits(*batch_columns: list) -> dict[str, np.ndarray]:
        features = dict(zip(names, batch_columns, strict=True))
        n = len(batch_columns[0])
        order = np.arange(n)
        if group_by_length and "input_ids" in features:
            order = np.argsort([len(ids) for ids in features["input_ids"]], kind="stable")
        out = np.empty((n, width), dtype=np_dtype)
        out_indices = None if top_k is None else np.empty((n, top_k), dtype=index_dtype(num_labels))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            logits = runner({name: [values[i] for i in idx] for name, values in features.items()})
            if not np.isfinite(logits).all():
                raise ValueError(
                    "The teacher produced NaN/inf logits. Run it in float32 (autocast=False) or check its weights."
                )
            if top_k is None:
                out[idx] = logits
            else:
                values, indices = top_k_logits(torch.from_numpy(logits), top_k, temperature)
                out[idx], out_indices[idx] = values.numpy(), indices.numpy()
        return {column: out} if top_k is None else {column: out, index_column: out_indices}

    new_columns = {column: List(Value(dtype), length=width)}
    if top_k is not None:
        new_columns[index_column] = List(Value(index_dtype(num_labels)), length=top_k)
    key = [column, sources, dtype, group_by_length, *([top_k, temperature] if top_k is not None else [])]
    return write_teacher_columns(
        runner,
        dataset,
        add_logits,
        new_columns=new_columns,
        input_columns=sources,
        batch_size=batch_size * LENGTH_GROUP_BATCHES,
        key=key,
        column=column,
        dtype=dtype,
        load_from_cache_file=load_from_cache_file,
        desc="Teacher logits",
        top_k=top_k,
        temperature=temperature,
    )


def write_teacher_columns(
    runner: TeacherRunner,
    dataset: Dataset | IterableDataset,
    compute: Callable[..., dict[str, np.ndarray]],
    *,
    new_columns: dict[str, Any],
    input_columns: list[str],
    batch_size: int,
    key: list,
    column: str,
    dtype: str,
    load_from_cache_file: bool = True,
    with_indices: bool = False,
    desc: str = "Teacher logits",
    top_k: int | None = None,
    temperature: float | None = None,
) -> Dataset | IterableDataset:
    """``dataset`` plus ``new_columns`` (name -> feature), written by the batched ``compute(*input_columns[,
    indices])`` over numpy batches of ``batch_size`` rows; the teacher's logits column ``column`` records its
    provenance (teacher, label order, ``dtype``, top-k layout). A `Dataset` is cached by `datasets` under a fingerprint
    of the dataset, the teacher (``runner.cache_key()``) and ``key`` (the options that change the values), and keeps
    its format; an `IterableDataset` gets a lazy ``map``, run as the rows are read."""
    features = Features({**dataset.features, **new_columns})
    map_kwargs = dict(batched=True, batch_size=batch_size, input_columns=input_columns, with_indices=with_indices)
    if isinstance(dataset, IterableDataset):
        result = dataset.map(compute, features=features, **map_kwargs)
    else:
        result = dataset.with_format("numpy").map(
            compute,
            features=features,
            new_fingerprint=Hasher.hash([dataset._fingerprint, runner.cache_key(), *key]),
            load_from_cache_file=load_from_cache_file,
            desc=f"{desc} ({model_name(runner.teacher)})",
            **map_kwargs,
        )
        fmt = dataset.format
        result = result.with_format(
            fmt["type"], [*fmt["columns"], *new_columns], fmt["output_all_columns"], **fmt["format_kwargs"]
        )
    info = TeacherLogitsInfo(
        teacher=model_name(runner.teacher),
        labels=runner.labels,
        dtype=dtype,
        teacher_fingerprint=runner.fingerprint,
        top_k=top_k,
        temperature=temperature,
        teacher_parameters=sum(p.numel() for p in runner.teacher.parameters()),
    )
    write_logits_info(result, column, info)
    return result
