"""Corrections of the logits before any distillation loss: composable, one function each.

Each correction maps logits (and labels) to logits of the same shape, in float32; :class:`~hf_distill.losses.
DistillationObjective` applies the configured ones in order (``teacher_correction``, then ``logit_standardization``).
"""

from __future__ import annotations

import torch

from .registry import IGNORE_INDEX

# Added to the standard deviation as in the authors' code, so a constant row maps to zeros, not NaN.
STANDARDIZATION_EPS = 1e-7


def swap_teacher_mistakes(teacher_logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Where the teacher's top class is not the label, swap the logits of its top class and of the true class.

    After D'Amicantonio, "Improvements to knowledge distillation of deep neural networks" (2021): correct the
    teacher's mistaken predictions, and keep its small logits. The corrected teacher ranks the true class first with
    exactly the confidence it had in its wrong answer, and its "dark knowledge" about every other class is untouched
    (the wrong class now gets the true class's old logit). Rejected alternatives: replacing mistaken rows with one-hot
    labels throws away all dark knowledge on exactly the hard examples; raising the true logit by a margin changes the
    row's scale (its entropy) and needs a margin hyperparameter. Rows without a label (``-100``, or ``labels=None``:
    an unlabelled batch, e.g. ``predict`` on a test set without labels) have nothing to correct and are left as they
    are.
    """
    logits = teacher_logits.float()
    if labels is None:
        return logits
    labels = labels.view(-1)
    top = logits.argmax(-1)
    wrong = (top != labels) & (labels != IGNORE_INDEX)
    if not wrong.any():
        return logits
    rows = wrong.nonzero()[:, 0]
    top, true = top[rows], labels[rows]
    corrected = logits.clone()
    corrected[rows, true] = logits[rows, top]
    corrected[rows, top] = logits[rows, true]
    return corrected


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Z-score each row of logits: ``(z - mean(z)) / (std(z) + 1e-7)``, in float32.

    Sun et al., "Logit Standardization in Knowledge Distillation" (CVPR 2024): applied to both teacher and student
    before the temperature, so the student matches the teacher's logit *relations* and need not match its scale.
    """
    logits = logits.float()
    mean = logits.mean(-1, keepdim=True)
    std = logits.std(-1, keepdim=True)
    return (logits - mean) / (std + STANDARDIZATION_EPS)


# teacher_correction value -> the correction.
TEACHER_CORRECTIONS = {"swap": swap_teacher_mistakes}


def check_teacher_correction(name: str) -> None:
    """Refuse an unknown ``teacher_correction`` name."""
    if name not in TEACHER_CORRECTIONS:
        raise ValueError(f"teacher_correction must be one of {', '.join(TEACHER_CORRECTIONS)} or unset, got {name!r}.")
