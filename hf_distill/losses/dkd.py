"""Decoupled Knowledge Distillation (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import IGNORE_INDEX, register_loss


@register_loss("dkd")
def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    labels: torch.Tensor | None = None,
    *,
    dkd_alpha: float = 1.0,
    dkd_beta: float = 8.0,
) -> torch.Tensor:
    """Decoupled KD (Zhao et al., CVPR 2022): ``T^2 * (dkd_alpha * TCKD + dkd_beta * NCKD)``, batch mean.

    Zhao et al., "Decoupled Knowledge Distillation" (CVPR 2022); rows labelled ``-100`` are left out. TCKD is the KL between the teacher's and the
    student's binary (target class, all others) distributions; NCKD the KL between their distributions over the
    non-target classes alone, both at temperature T. Hinton's KD is ``TCKD + (1 - p_t) * NCKD`` per example, with
    ``p_t`` the teacher's target-class probability: KD couples NCKD to the teacher's confidence, DKD weighs it freely
    (the paper's defaults, ``dkd_alpha=1``, ``dkd_beta=8``). Needs labels. Computed on float32 log-probabilities:
    ``log(1 - p)`` as the log-sum-exp of the non-target log-probabilities, so confident rows stay finite.
    """
    if labels is None:
        raise ValueError(
            "distillation_loss='dkd' splits the teacher's distribution at the true class and needs `labels`; the "
            "batch has none. Add a label column, or use a loss that needs no labels (kl, dist, jsd, ...)."
        )
    labels = labels.view(-1)
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return student_logits.float().sum() * 0.0
    student, teacher, labels = student_logits.float()[keep], teacher_logits.float()[keep], labels[keep]
    num_classes = student.shape[-1]
    target = F.one_hot(labels, num_classes).bool()
    others = torch.arange(num_classes, device=labels.device).expand(len(labels), -1)[~target].view(-1, num_classes - 1)

    def split(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary (target, rest) log-probabilities and the log-probabilities among the non-target classes."""
        log_p = F.log_softmax(logits / temperature, dim=-1)
        log_p_other = log_p.gather(-1, others)
        binary = torch.stack([log_p.gather(-1, labels[:, None])[:, 0], torch.logsumexp(log_p_other, -1)], -1)
        return binary, F.log_softmax(log_p_other, dim=-1)

    binary_s, other_s = split(student)
    binary_t, other_t = split(teacher)
    tckd = F.kl_div(binary_s, binary_t, log_target=True, reduction="batchmean")
    nckd = F.kl_div(other_s, other_t, log_target=True, reduction="batchmean")
    return (dkd_alpha * tckd + dkd_beta * nckd) * temperature**2
