"""The classic logit losses: Hinton KL, logit MSE, and hard (teacher top-1) distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import IGNORE_INDEX, register_loss


@register_loss("kl")
def kl_divergence_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.

    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015). The ``T^2`` factor keeps the
    gradient scale independent of the temperature. Both log-softmaxes are taken in float32 and compared with
    ``log_target=True``, which stays finite where ``log(softmax(x))`` underflows.
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


@register_loss("mse")
def logit_mse_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between raw logits (Ba & Caruana, "Do Deep Nets Really Need to be Deep?", 2014).

    The limit of the KL loss for large temperatures (Kim et al., 2021); the temperature is not used.
    """
    return F.mse_loss(student_logits.float(), teacher_logits.float())


@register_loss("hard")
def hard_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy to the teacher's top-1 class, "hard distillation" (Touvron et al., "Training data-efficient
    image transformers & distillation through attention", 2021). The temperature is not used."""
    return hard_label_cross_entropy(student_logits, teacher_logits.argmax(-1))


def hard_label_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Float32 cross-entropy averaged over the labels that are not ``-100`` (0 when all are), with optional label
    smoothing (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", 2016)."""
    labels = labels.view(-1)
    summed = F.cross_entropy(
        logits.float().view(labels.numel(), -1),
        labels,
        ignore_index=IGNORE_INDEX,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return summed / (labels != IGNORE_INDEX).sum().clamp(min=1)
