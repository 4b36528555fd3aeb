"""The loss log of a run: every loss part recorded per batch, reduced at logging time, and the finite guard.

A training step only appends detached tensors (no device sync, no tensor op); the example-weighted means are formed,
and reduced over processes, when the trainer logs. The same records serve the guard that stops a run whose CE,
distillation term, in-batch teacher logits or stored teacher logits (a stream is checked by its first rows only) went
NaN/inf: it is checked at logging and saving steps and at the end of training, one sync each.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from .losses import LossParts, TopKLogits

_GUARDED = {"CE (hard-label cross-entropy)": "loss_ce", "distillation term": "loss_kd"}


def all_finite(values: torch.Tensor) -> torch.Tensor:
    """``torch.isfinite(values).all()`` in one reading pass: the smallest and largest value are finite exactly when
    every value is (both are NaN where any value is), and no boolean tensor of the values' size is written (a 256 x
    1000 batch of logits: 0.03 ms against 0.6 ms on one CPU thread)."""
    if values.numel() == 0:
        return torch.tensor(True, device=values.device)
    return torch.isfinite(torch.stack(torch.aminmax(values))).all()


class LossLog:
    """Recorded loss parts (``train`` and ``eval``) and the finiteness of the teacher logits trained on, from the
    teacher in the loop or from the stored ``stored_columns``; ``accelerator`` reduces them."""

    def __init__(self, accelerator: Any, stored_columns: list[str] | None = None):
        self.accelerator = accelerator
        self.stored_columns = stored_columns or []
        self.records: dict[str, defaultdict[str, list]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.teacher_finite: dict[bool, list[torch.Tensor]] = {False: [], True: []}  # keyed by "stored"

    def record(
        self,
        parts: LossParts,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | TopKLogits | None,
        train: bool,
    ) -> None:
        """Keep the batch means and sizes; in evaluation also the top-1 agreement with the teacher."""
        n = student_logits.shape[0]
        records = self.records["train" if train else "eval"]
        for name, value in parts.parts.items():
            records[name].append((value.detach(), n))
        if not train and teacher_logits is not None:
            top1 = teacher_logits.top1() if isinstance(teacher_logits, TopKLogits) else teacher_logits.argmax(-1)
            records["agreement"].append(((student_logits.argmax(-1) == top1).float().mean(), n))

    def record_teacher(self, logits: torch.Tensor, stored: bool = False) -> None:
        """Remember whether a training batch's teacher logits (``stored``: read from a column) were finite; a tensor op
        without a device sync, checked with the loss parts."""
        self.teacher_finite[stored].append(all_finite(logits))

    def pop(self, mode: str) -> dict[str, float]:
        """Example-weighted means of the recorded values, averaged over processes; clears them."""
        recorded = self.records[mode]
        if not recorded:
            return {}
        names = sorted(recorded)
        sums = torch.stack([sum(value.float() * n for value, n in recorded[name]) for name in names])
        counts = torch.tensor([float(sum(n for _, n in recorded[name])) for name in names], device=sums.device)
        sums, counts = self.accelerator.reduce(torch.stack([sums, counts]), reduction="sum").tolist()
        recorded.clear()
        return {name: total / count for name, total, count in zip(names, sums, counts, strict=True)}

    def raise_if_not_finite(self, step: int, device: torch.device, synchronize: bool = True) -> None:
        """Stop a run whose CE, distillation term or teacher logits (in-batch or stored) went NaN/inf since the last
        check; with ``synchronize``, over every process (saving checks this process's values only)."""
        recorded = self.records["train"]
        flags = [
            torch.stack([torch.isfinite(value).all() for value, _ in recorded[key]]).all()
            if recorded.get(key)
            else torch.tensor(True, device=device)
            for key in _GUARDED.values()
        ]
        teacher = [torch.stack(found).all() if found else torch.tensor(True) for found in self.teacher_finite.values()]
        for found in self.teacher_finite.values():
            found.clear()
        flags = torch.stack([~f.to(device) for f in [*flags, *teacher]]).float()
        bad = (self.accelerator.reduce(flags, reduction="sum") if synchronize else flags).tolist()
        if not any(bad):
            return
        if bad[3]:
            raise FloatingPointError(
                f"The stored teacher logits (column {' / '.join(map(repr, self.stored_columns))}) hold NaN/inf values "
                f"in a batch trained on by step {step}; a stream is checked by its first rows only. Precompute them "
                "again in float32 (precompute_teacher_logits(..., autocast=False)) or drop the broken rows; "
                "the student was not saved from this point."
            )
        if bad[2]:
            raise FloatingPointError(
                f"The teacher produced NaN/inf logits by step {step}. Run it in float32 (--teacher_dtype float32, no "
                "fp16) or check its weights; the student was not saved from this point."
            )
        names = [name for name, flag in zip(_GUARDED, bad[:2], strict=True) if flag]
        raise FloatingPointError(
            f"The {' and the '.join(names)} of the loss went NaN/inf by step {step}, with finite teacher logits: the "
            "student diverged. Lower --learning_rate, keep --max_grad_norm, or use bf16 instead of fp16; the student "
            "was not saved from this point."
        )
