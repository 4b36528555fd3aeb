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
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch (over the first dimension).

    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015). The ``T^2`` factor keeps the
    gradient scale independent of the temperature. Computed in float32 from log-probability differences (as
    ``F.kl_div(..., log_target=True)``), which stay finite where ``log(softmax(x))`` underflows, in one fused step
    whose gradient is ``T * (softmax(s/T) - softmax(t/T)) / batch``: two exponentials per logit and no autograd graph
    for the loss's intermediates, which matters at many classes. The teacher's logits are a target: no gradient flows
    into them.
    """
    return _ForwardKL.apply(student_logits, teacher_logits.detach(), temperature)


def _softmax_parts(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``logits - max`` (modified in place), the softmax, and ``log(sum(exp(logits - max)))`` per row."""
    shifted = logits.sub_(logits.amax(-1, keepdim=True))
    probs = shifted.exp()
    total = probs.sum(-1, keepdim=True)
    return shifted, probs.div_(total), total.log_()


class _ForwardKL(torch.autograd.Function):
    """:func:`kl_divergence_loss` with its gradient written out: ``sum p (log p - log q)`` where ``log p - log q`` is
    ``(t - max_t) - (s - max_s) - (log z_t - log z_s)`` per row, in float32."""

    @staticmethod
    def forward(ctx, student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
        student, q, log_z_student = _softmax_parts(student_logits.float() / temperature)
        teacher, p, log_z_teacher = _softmax_parts(teacher_logits.float() / temperature)
        batch = student_logits.shape[0]
        kl = torch.vdot(p.reshape(-1), teacher.sub_(student).reshape(-1)) - (log_z_teacher - log_z_student).sum()
        kl = kl.clamp_min(0.0)  # >= 0 by definition; rounding can leave -1e-8 where the distributions nearly agree
        ctx.save_for_backward(q, p)
        ctx.grad_scale, ctx.grad_dtype = temperature / batch, student_logits.dtype
        return kl * (temperature**2 / batch)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        q, p = ctx.saved_tensors
        return (q - p).mul_(grad_output * ctx.grad_scale).to(ctx.grad_dtype), None, None


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
