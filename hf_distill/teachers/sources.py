"""Where a batch's teacher logits come from: stored columns or a teacher run in the loop, in the student's label order.

:class:`TeacherLogitsSource` is built once by :class:`~hf_distill.plan.DistillationPlan` with everything resolved
(label permutations, column weights, the placed teacher); per batch it only reads the batch and calls:

- :class:`StoredColumns`: one precomputed column, several (combined as an ensemble at the step's temperature), or a
  top-k column with its class indices (:class:`~hf_distill.losses.TopKLogits`);
- :class:`InLoopTeacher`: a teacher (or :class:`~hf_distill.teachers.ensemble.TeacherEnsemble`) run under ``no_grad`` and the
  accelerator's autocast, in ``teacher_dtype``, optionally compiled; it also returns the teacher's whole output when
  an objective term reads hidden states or attention maps.

A batch that carries the stored columns is read from them; otherwise the teacher runs.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, NamedTuple

import torch

from ..data.labels import to_student_order
from ..data.logit_columns import VIEW_INDEX_KEY
from ..losses import TopKLogits
from .distributed import place_teacher
from .ensemble import TeacherEnsemble, combine_teacher_logits
from .loading import forward_input_names, teacher_inputs

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TeacherLogits(NamedTuple):
    """A batch's teacher logits in the student's label order, and the teacher's whole output (``None`` when stored)."""

    logits: torch.Tensor | TopKLogits
    outputs: Any = None


class _OnDevice:
    """A permutation as index tensors, made once per device (no host-to-device copy per step)."""

    def __init__(self, permutation: list[int] | None):
        self.permutation = permutation
        self._tensors: dict[torch.device, torch.Tensor] = {}

    def __call__(self, device: torch.device) -> torch.Tensor | None:
        if self.permutation is None:
            return None
        if device not in self._tensors:
            self._tensors[device] = torch.tensor(self.permutation, device=device)
        return self._tensors[device]


class StoredColumns:
    """Precomputed teacher logits read from the batch: ``columns`` (several: an ensemble weighted by ``weights``),
    each reordered by its permutation (``permutations`` is the plan's, read live: a dataset checked later adds to
    it); ``indices_column`` holds a top-k column's class indices. ``on_logits(values, stored=True)`` sees each
    training batch's stored values (the finite guard) of the columns not in ``checked`` (the plan's, read live: those
    whose every value in the training dataset was found finite before training; a stream, for one, is checked by its
    first rows only)."""

    def __init__(
        self,
        columns: list[str],
        permutations: Mapping[str, list[int] | None],
        num_classes: int,
        weights: list[float] | None = None,
        indices_column: str | None = None,
        on_logits: Any = None,
        checked: Container[str] = (),
    ):
        self.columns = columns
        self.on_logits = on_logits
        self.checked = checked
        self.permutations = permutations
        self._tensors: dict[tuple[str, torch.device], torch.Tensor] = {}
        self.num_classes = num_classes
        self.weights = weights
        self.indices_column = indices_column

    @property
    def keys(self) -> list[str]:
        """The batch keys this source reads (never fed to the student)."""
        return [*self.columns, *([self.indices_column] if self.indices_column else [])]

    def __call__(
        self, stored: Mapping[str, torch.Tensor | None], temperature: float, training: bool = False
    ) -> TeacherLogits:
        if training and self.on_logits is not None:  # one tensor op per column, no device sync
            for column in self.columns:
                if stored.get(column) is not None and column not in self.checked:
                    self.on_logits(stored[column], stored=True)
        if len(self.columns) > 1:
            logits = [self._column(column, stored.get(column)) for column in self.columns]
            return TeacherLogits(combine_teacher_logits(logits, self.weights, temperature))
        column = self.columns[0]
        indices = stored.get(self.indices_column) if self.indices_column else None
        if indices is None:
            return TeacherLogits(self._column(column, stored[column]))
        values = stored[column]
        _check_one_row_per_example(column, values)
        if values.shape[-1] != indices.shape[-1] + 1:
            raise ValueError(
                f"Column {column!r} holds {values.shape[-1]} values per example but {self.indices_column!r} holds "
                f"{indices.shape[-1]} indices: top-k storage has K + 1 values (the K logits and the rest bucket). "
                "Precompute them with precompute_teacher_logits(top_k=K)."
            )
        permutation = self._order(column, indices.device)
        return TeacherLogits(
            TopKLogits(values.float(), to_student_order(indices.long(), permutation, class_indices=True))
        )

    def _column(self, column: str, logits: torch.Tensor | None) -> torch.Tensor:
        if logits is None:
            raise ValueError(f"The batch has no {column!r} column, but the other teacher logits columns are there.")
        _check_one_row_per_example(column, logits)
        if logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"Column {column!r} holds {logits.shape[-1]} logits per example but the student has "
                f"{self.num_classes} classes."
            )
        return to_student_order(logits.float(), self._order(column, logits.device))

    def _order(self, column: str, device: torch.device) -> torch.Tensor | None:
        """``column``'s permutation as an index tensor on ``device``, made once (a column's order never changes)."""
        permutation = self.permutations.get(column)
        if permutation is None:
            return None
        key = (column, device)
        if key not in self._tensors:
            self._tensors[key] = torch.tensor(permutation, device=device)
        return self._tensors[key]


def _check_one_row_per_example(column: str, logits: torch.Tensor) -> None:
    """A shape check (no device sync): ``(batch, K, classes)`` would broadcast against the student's logits."""
    if logits.dim() != 2:
        raise ValueError(
            f"Column {column!r} gives teacher logits of shape {tuple(logits.shape)} for a batch, but the loss needs "
            "(batch, classes): one row of logits per example. Squeeze the extra axis of the stored logits, or read a "
            "K-view cache through a transform that draws one view per row (DistillationImageTransform, which "
            f"returns the drawn view's index under {VIEW_INDEX_KEY!r})."
        )


class InLoopTeacher:
    """A frozen teacher run on the batch, placed beside the student on first use (see
    :func:`hf_distill.teachers.distributed.place_teacher`, compiled with ``compile``); its logits come back in the student's
    label order (``permutation``; an ensemble orders each member itself). ``on_logits`` sees every batch's logits
    in training (the finite guard); the first batch's must be finite."""

    def __init__(
        self,
        teacher: torch.nn.Module,
        permutation: list[int] | None,
        accelerator: Any,
        prefix: str,
        dtype: str,
        compile: bool,
        output_flags: Mapping[str, bool],
        on_logits: Any = None,
    ):
        self.teacher = teacher
        self.permutation = _OnDevice(permutation)
        self.accelerator = accelerator
        self.prefix = prefix
        self.dtype = TORCH_DTYPES.get(dtype)
        self.compile = compile
        self.output_flags = dict(output_flags)
        self.on_logits = on_logits
        self._placed: tuple[torch.nn.Module, list[str]] | None = None
        self._checked = False

    def placed(self) -> tuple[torch.nn.Module, list[str]]:
        """The placed (and maybe compiled) teacher and its input names, set up on first use."""
        if self._placed is None:
            self.teacher = place_teacher(self.teacher, self.accelerator, self.dtype)
            runner = torch.compile(self.teacher) if self.compile else self.teacher
            self._placed = (runner, forward_input_names(self.teacher))
        return self._placed

    def __call__(self, inputs: Mapping[str, Any], temperature: float, training: bool) -> TeacherLogits:
        teacher, input_names = self.placed()
        feed = teacher_inputs(inputs, self.prefix, input_names)
        if self.dtype is not None:  # pixel values must match half-precision weights when there is no autocast
            feed = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in feed.items()}
        if isinstance(self.teacher, TeacherEnsemble):
            feed["temperature"] = temperature
        feed.update(self.output_flags)
        with torch.no_grad(), self.accelerator.autocast():
            outputs = teacher(**feed)
        logits = outputs.logits.float()
        if training and self.on_logits is not None:  # checked at logging and saving steps: no device sync per step
            self.on_logits(logits)
        if not self._checked:
            if not torch.isfinite(logits).all():
                raise ValueError(
                    "The teacher produced NaN/inf logits on the first batch. Run it in float32 "
                    "(--teacher_dtype float32, no fp16) or check its weights."
                )
            self._checked = True
        return TeacherLogits(to_student_order(logits, self.permutation(logits.device)), outputs)


class TeacherLogitsSource:
    """The teacher logits of a batch: from the stored columns when the batch carries them, else from the teacher."""

    def __init__(self, stored: StoredColumns, teacher: InLoopTeacher | None, missing_message: str):
        self.stored = stored
        self.teacher = teacher
        self.missing_message = missing_message

    def split(self, batch: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``batch`` without the stored columns, and the stored columns (absent ones as ``None``)."""
        inputs = dict(batch)
        return inputs, {key: inputs.pop(key, None) for key in self.stored.keys}

    def __call__(
        self, inputs: Mapping[str, Any], stored: Mapping[str, Any], temperature: float, training: bool
    ) -> TeacherLogits:
        if stored[self.stored.columns[0]] is not None:
            return self.stored(stored, temperature, training)
        if self.teacher is None:
            raise ValueError(self.missing_message)
        return self.teacher(inputs, temperature, training)
