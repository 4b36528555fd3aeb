"""Top-k storage of teacher logits for many-class problems: K logits, their class indices and one "rest" logit.

``precompute_teacher_logits(..., top_k=K, temperature=T)`` stores, per example, ``K + 1`` float16 values in the
logits column (the K largest logits, descending, then ``T * logsumexp(z_rest / T)`` over the other classes) and the K
class indices in ``<column>_indices`` (int16, or int32 beyond 32768 classes). ``softmax(values / T)`` is then the
teacher's exact distribution over the K classes plus one bucket for the remaining mass, so the loss
(:func:`hf_distill.losses.top_k_kl_loss`) is exact at ``T``. At another temperature the rest bucket cannot be
recovered from the stored values, so :class:`~hf_distill.plan.DistillationPlan` refuses, before the first step, a
column whose ``T`` differs from any temperature the run trains at (``args.temperature``, or a temperature schedule):
:func:`check_top_k_temperature`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset

from .provenance import TeacherLogitsInfo


def indices_column(column: str) -> str:
    """The name of the class-index column that goes with the top-k logits column ``column``."""
    return f"{column}_indices"


def index_dtype(num_classes: int) -> str:
    return "int16" if num_classes <= np.iinfo(np.int16).max + 1 else "int32"


def check_top_k_options(top_k: int | None, temperature: float | None, num_classes: int) -> None:
    """Refuse a ``top_k`` / ``temperature`` pair that cannot be stored for a teacher of ``num_classes`` classes."""
    if top_k is None:
        if temperature is not None:
            raise ValueError(
                "temperature only applies to top_k storage (full logits work at any temperature): "
                "drop temperature=, or pass top_k=K as well."
            )
        return
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k < num_classes:
        raise ValueError(
            f"top_k must be an integer in [1, {num_classes}) for a teacher with {num_classes} classes, got {top_k!r}. "
            "Use top_k=None to store every logit."
        )
    if temperature is None or not temperature > 0:
        raise ValueError(
            f"top_k storage keeps the rest of the probability mass at one temperature: pass temperature=T > 0, the "
            f"--temperature you will train with (got {temperature!r})."
        )


def top_k_logits(logits: torch.Tensor, k: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)``: the K largest of ``logits`` (descending) plus the rest bucket's logit at
    ``temperature``, shape ``(B, K + 1)``, and their class indices, shape ``(B, K)``."""
    top, indices = logits.float().topk(k, dim=-1)
    rest = logits.float().scatter(-1, indices, float("-inf"))
    rest_logit = temperature * torch.logsumexp(rest / temperature, -1, keepdim=True)
    return torch.cat([top, rest_logit], -1), indices


def check_top_k_temperature(column: str, stored: float, top_k: int, start: float, end: float) -> None:
    """Refuse training a top-k column stored at temperature ``stored`` at any other temperature: ``start`` is
    ``args.temperature`` and ``end`` the temperature a schedule reaches (``start`` for none)."""
    if start != stored:
        raise ValueError(
            f"Column {column!r} stores top-{top_k} logits at temperature {stored}, but args.temperature is {start}: "
            f"the rest bucket is exact only at the stored temperature. Train with --temperature {stored}, or "
            f"precompute again with temperature={start}."
        )
    if end != stored:
        raise ValueError(
            f"Column {column!r} stores top-{top_k} logits at temperature {stored}, but the temperature schedule moves "
            f"the temperature to {end}: the rest bucket is exact only at the stored temperature. Drop "
            "--temperature_schedule / --temperature_end for a top-k column, or precompute the full logits (top_k=None)."
        )


def check_top_k_column(dataset: Dataset, column: str, info: TeacherLogitsInfo | None) -> int:
    """Check a top-k logits column against its provenance (the temperature: :func:`check_top_k_temperature`);
    return K."""
    if info is None or info.top_k is None or info.temperature is None:
        raise ValueError(
            f"The dataset has {indices_column(column)!r} beside {column!r} but no top-k provenance, so the temperature "
            "of the stored rest bucket is unknown. Make the columns with precompute_teacher_logits(..., top_k=K, "
            "temperature=T)."
        )
    indices = dataset.data.column(indices_column(column))
    width = dataset.features[indices_column(column)].length
    if width != info.top_k:
        raise ValueError(
            f"Column {indices_column(column)!r} holds {width} indices per example, not top_k={info.top_k}."
        )
    flat = pc.list_flatten(indices)
    if not pa.types.is_integer(flat.type):
        raise ValueError(f"Column {indices_column(column)!r} must hold integer class indices, not {flat.type}.")
    bounds = pc.min_max(flat).as_py()
    if len(flat) and (bounds["min"] < 0 or bounds["max"] >= len(info.labels)):
        raise ValueError(
            f"Column {indices_column(column)!r} has class indices outside [0, {len(info.labels)}); precompute it again."
        )
    return info.top_k
