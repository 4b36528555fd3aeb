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
    """Decoupled KD (Zhao et al., CVPR 2022): ``T^2 * (dkd_alpha * TCKD + dkd_beta * NCKD)`` per labelled row.

    TCKD is the KL between the teacher's and the student's binary (target class, all others) distributions; NCKD the
    KL between their distributions over the non-target classes alone, both at temperature T. Hinton's KD is
    ``TCKD + (1 - p_t) * NCKD`` per example, with ``p_t`` the teacher's target-class probability: KD couples NCKD to
    the teacher's confidence, DKD weighs it freely (the paper's defaults, ``dkd_alpha=1``, ``dkd_beta=8``).

    The split needs the true class, so a row without one (label ``-100``, or ``labels=None``: an unlabelled batch,
    e.g. ``predict`` on a test set without labels) gets the coupled form, Hinton's ``T^2 * KL(teacher || student)``,
    which is DKD's own decomposition with ``dkd_alpha=1, dkd_beta=1 - p_t``. Every row thus counts, and the result is
    the mean over all rows of the batch, like every other distillation loss: a batch of unlabelled rows still trains,
    and gradient accumulation gives the same gradient as one big batch however the ``-100`` labels are spread.
    Computed on float32 log-probabilities: ``log(1 - p)`` as the log-sum-exp of the non-target log-probabilities, so
    confident rows stay finite.
    """
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_row = F.kl_div(log_s, log_t, log_target=True, reduction="none").sum(-1)  # KD, for rows without a label
    if labels is not None:
        labels = labels.view(-1)
        labelled = labels != IGNORE_INDEX
        decoupled = _decoupled_kd(log_s, log_t, labels.clamp(min=0), dkd_alpha, dkd_beta)
        per_row = torch.where(labelled, decoupled, per_row)
    return per_row.mean() * temperature**2


def _decoupled_kd(
    log_s: torch.Tensor, log_t: torch.Tensor, labels: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    """``alpha * TCKD + beta * NCKD`` per row, from the student's and teacher's log-probabilities at T."""
    num_classes = log_s.shape[-1]
    target = F.one_hot(labels, num_classes).bool()
    others = torch.arange(num_classes, device=labels.device).expand(len(labels), -1)[~target].view(-1, num_classes - 1)

    def split(log_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary (target, rest) log-probabilities and the log-probabilities among the non-target classes."""
        log_p_other = log_p.gather(-1, others)
        binary = torch.stack([log_p.gather(-1, labels[:, None])[:, 0], torch.logsumexp(log_p_other, -1)], -1)
        return binary, F.log_softmax(log_p_other, dim=-1)

    binary_s, other_s = split(log_s)
    binary_t, other_t = split(log_t)
    tckd = F.kl_div(binary_s, binary_t, log_target=True, reduction="none").sum(-1)
    nckd = F.kl_div(other_s, other_t, log_target=True, reduction="none").sum(-1)
    return alpha * tckd + beta * nckd
