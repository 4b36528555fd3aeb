"""Divergences other than Hinton's forward KL: reverse KL and the generalized Jensen-Shannon divergence of GKD."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .registry import register_loss


@register_loss("reverse_kl")
def reverse_kl_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reverse KL (MiniLLM, GKD): ``T^2 * KL(softmax(s/T) || softmax(t/T))``, batch mean; mode-seeking.

    Used for distillation by Gu et al., "MiniLLM: Knowledge Distillation of Large Language Models" (ICLR 2024) and
    Agarwal et al., "On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes" (GKD, ICLR 2024).
    Float32 log-probabilities with ``log_target=True``.
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_teacher, log_p_student, log_target=True, reduction="batchmean")
    return kl * temperature**2


@register_loss("jsd")
def generalized_jsd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    labels: torch.Tensor | None = None,
    *,
    jsd_beta: float = 0.5,
) -> torch.Tensor:
    """Generalized JSD of GKD (Agarwal et al., ICLR 2024): ``T^2 * (b KL(P || M) + (1 - b) KL(Q || M))``, batch mean.

    ``M = b * P + (1 - b) * Q`` with ``b = jsd_beta``; ``P`` is the teacher's and ``Q`` the student's
    ``softmax(logits / T)``.

    The generalized Jensen-Shannon divergence of Agarwal et al., "On-Policy Distillation of Language Models: Learning
    from Self-Generated Mistakes" (GKD, ICLR 2024); ``jsd_beta=0.5`` is the symmetric JSD. As in TRL's
    ``GKDTrainer.generalized_jsd_loss``, the end points are the limits the divergence interpolates between:
    ``jsd_beta=0`` is the forward ``KL(P || Q)`` and ``jsd_beta=1`` the reverse ``KL(Q || P)``. The mixture is formed
    in log space (``logsumexp``) in float32.
    """
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if jsd_beta == 0:
        divergence = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    elif jsd_beta == 1:
        divergence = F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    else:
        log_m = torch.logsumexp(torch.stack([log_p + math.log(jsd_beta), log_q + math.log(1 - jsd_beta)]), dim=0)
        kl_p = F.kl_div(log_m, log_p, log_target=True, reduction="batchmean")
        kl_q = F.kl_div(log_m, log_q, log_target=True, reduction="batchmean")
        divergence = jsd_beta * kl_p + (1 - jsd_beta) * kl_q
    return divergence * temperature**2
