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
    return _CrossEntropyAndKL.apply(student_logits, teacher_logits.detach(), None, temperature, 0.0)[1]


def cross_entropy_and_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`hard_label_cross_entropy` and :func:`kl_divergence_loss` of ``(batch, classes)`` logits in one step, the
    default objective's two parts: the student's logits are read once for both and the gradient is one tensor, with
    two exponentials per logit at a whole temperature up to 4 (three at others) where the two losses apart take four
    (cross-entropy's backward recomputes its softmax)."""
    return _CrossEntropyAndKL.apply(student_logits, teacher_logits.detach(), labels, temperature, label_smoothing)


def _label_softmax(
    logits: torch.Tensor, logits_max: torch.Tensor, q: torch.Tensor, lse_q: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``softmax(x)`` of the unscaled logits, as ``(weights, row_sums, lse)``: ``softmax(x) = weights / row_sums``
    (``row_sums`` None: already normalised) and ``lse = logsumexp(x)``.

    At a whole temperature up to 4 (the common ones) it comes from ``q = softmax(x / T)`` and ``lse_q =
    logsumexp(x / T)`` without an exponential: ``q ** T = exp(x - T lse_q)``, so ``softmax(x) = q ** T / sum(q ** T)``
    and ``lse = T lse_q + log(sum(q ** T))``. ``q ** T`` underflows before ``exp(x - max)`` does: entries of
    ``softmax(x)`` below about ``1e-38 * classes ** T`` (1e-26 at 1000 classes and T = 4) become 0 or lose digits,
    which changes no loss or gradient at float32 precision."""
    if temperature == 1:
        return q, None, lse_q
    if temperature not in (2, 3, 4):
        probs = logits.softmax(-1)
        return probs, None, _log_sum_exp(logits_max, probs)
    weights = q * q
    for _ in range(int(temperature) - 2):
        weights.mul_(q)
    row_sums = weights.sum(-1)
    return weights, row_sums, temperature * lse_q + row_sums.log()


def _log_sum_exp(logits_max: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``logsumexp`` per row from the row's max and its softmax, whose largest entry is ``1 / sum(exp(x - max))``:
    no second pass with an exponential."""
    return logits_max - probs.amax(-1).log()


class _CrossEntropyAndKL(torch.autograd.Function):
    """The cross-entropy (``labels`` given) and forward KL of :func:`cross_entropy_and_kl`, gradients written out, in
    float32. KL per row: ``sum p (t - s) - (lse_t - lse_s)`` for the scaled logits ``s``, ``t`` and their softmaxes
    ``q``, ``p``; cross-entropy per labelled row: ``lse(x) - x[label]`` on the unscaled logits ``x`` (with label
    smoothing ``e``: ``(1 - e)`` of it plus ``e * (lse(x) - mean(x))``), averaged over the rows not labelled ``-100``.
    """

    @staticmethod
    def forward(
        ctx,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor | None,
        temperature: float,
        label_smoothing: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = student_logits.float()
        logits_max = logits.amax(-1)
        scale = 1.0 / temperature  # a multiplication: vector division is several times slower on CPUs
        student, teacher = logits * scale, teacher_logits.float() * scale
        q, p = student.softmax(-1), teacher.softmax(-1)
        lse_student = _log_sum_exp(logits_max * scale, q)
        lse_teacher = _log_sum_exp(teacher.amax(-1), p)
        batch = student_logits.shape[0]
        kl = torch.vdot(p.reshape(-1), teacher.sub_(student).reshape(-1)) - (lse_teacher - lse_student).sum()
        kl = kl.clamp_min(0.0)  # >= 0 by definition; rounding can leave -1e-8 where the distributions nearly agree
        ce = probs = row_sums = labelled = count = target = None
        if labels is not None:
            labelled = labels != IGNORE_INDEX
            count = labelled.sum().clamp(min=1)
            target = torch.where(labelled, labels, 0).unsqueeze(-1)  # any other label stays out of range: an error
            probs, row_sums, lse = _label_softmax(logits, logits_max, q, lse_student, temperature)
            nll = lse - logits.gather(-1, target).squeeze(-1)
            if label_smoothing:
                nll = (1 - label_smoothing) * nll + label_smoothing * (lse - logits.mean(-1))
            ce = torch.where(labelled, nll, 0.0).sum() / count
        ctx.save_for_backward(q, p, probs, row_sums, labelled, count, target)
        ctx.temperature, ctx.label_smoothing, ctx.grad_dtype = temperature, label_smoothing, student_logits.dtype
        if ce is None:
            ce = kl.new_zeros(())
        return ce, kl * (temperature**2 / batch)

    @staticmethod
    def backward(ctx, grad_ce: torch.Tensor, grad_kl: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        q, p, probs, row_sums, labelled, count, target = ctx.saved_tensors
        scale = grad_kl * (ctx.temperature / q.shape[0])
        if probs is None:
            return (q - p).mul_(scale).to(ctx.grad_dtype), None, None, None, None
        row = (grad_ce / count) * labelled  # d CE / d logits = row * (softmax - smoothed one-hot)
        grad = probs * (row if row_sums is None else row / row_sums).unsqueeze(-1)
        grad.scatter_add_(-1, target, -(1 - ctx.label_smoothing) * row.unsqueeze(-1))
        if ctx.label_smoothing:
            grad.sub_((ctx.label_smoothing / probs.shape[-1]) * row.unsqueeze(-1))
        grad.addcmul_(q, scale).addcmul_(p, -scale)
        return grad.to(ctx.grad_dtype), None, None, None, None


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
