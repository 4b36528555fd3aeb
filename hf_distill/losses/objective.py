"""The training objective: ``alpha * CE(student, labels) + (1 - alpha) * distill(student, teacher)``."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .logit import hard_label_cross_entropy
from .registry import LossFn, get_loss
from .top_k import TopKLogits, top_k_kl_loss


def distillation_term(
    loss: str | LossFn,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | TopKLogits,
    temperature: float,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """The distillation term for full teacher logits (any registered loss) or top-k ones (``kl`` and ``hard``)."""
    if not isinstance(teacher_logits, TopKLogits):
        return (get_loss(loss) if isinstance(loss, str) else loss)(student_logits, teacher_logits, temperature, labels)
    if loss == "kl":
        return top_k_kl_loss(student_logits, teacher_logits, temperature, labels)
    if loss == "hard":
        return hard_label_cross_entropy(student_logits, teacher_logits.top1())
    raise ValueError(
        f"distillation_loss={loss!r} needs every teacher logit, but the teacher logits are stored as top-k. "
        "Use distillation_loss='kl' or 'hard', or precompute the full logits (top_k=None)."
    )


class DistillationLossOutput(NamedTuple):
    loss: torch.Tensor
    ce: torch.Tensor | None
    kd: torch.Tensor


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | TopKLogits,
    labels: torch.Tensor | None,
    *,
    alpha: float,
    temperature: float,
    loss: str | LossFn = "kl",
    label_smoothing: float = 0.0,
) -> DistillationLossOutput:
    """``alpha * CE(student, labels) + (1 - alpha) * distill(student, teacher)``.

    ``alpha`` weighs the hard-label term, as in the Hugging Face distillation tutorials: ``alpha=0`` is pure
    distillation and needs no labels. The CE part is computed whenever labels are given, so it can be logged.
    ``teacher_logits`` may be :class:`TopKLogits` (see :func:`distillation_term`). ``label_smoothing`` applies to the
    CE part (``TrainingArguments.label_smoothing_factor``).
    """
    kd = distillation_term(loss, student_logits, teacher_logits, temperature, labels)
    if labels is None:
        if alpha > 0:
            raise ValueError(
                f"alpha={alpha} weighs a hard-label cross-entropy, but the batch has no `labels`. "
                "Add a label column, or set alpha=0 for pure distillation."
            )
        return DistillationLossOutput((1.0 - alpha) * kd, None, kd)
    ce = hard_label_cross_entropy(student_logits, labels, label_smoothing)
    return DistillationLossOutput(alpha * ce + (1.0 - alpha) * kd, ce, kd)
