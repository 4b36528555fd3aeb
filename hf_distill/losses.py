"""Distillation losses.

Every loss in the registry maps ``(student_logits, teacher_logits, temperature, labels)`` to a scalar and works in
float32 whatever the input dtype. :func:`distillation_loss` combines one of them with the hard-label cross-entropy:

    loss = alpha * CE(student, labels) + (1 - alpha) * distill(student, teacher)

Adding a loss is a decorated function::

    @register_loss("my_loss")
    def my_loss(student_logits, teacher_logits, temperature, labels=None):
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

LossFn = Callable[[torch.Tensor, torch.Tensor, float, "torch.Tensor | None"], torch.Tensor]
_LOSSES: dict[str, LossFn] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Register a distillation loss under ``name`` (the value of ``--distillation_loss``)."""

    def decorator(fn: LossFn) -> LossFn:
        if name in _LOSSES:
            raise ValueError(f"A distillation loss named {name!r} is already registered.")
        _LOSSES[name] = fn
        return fn

    return decorator


def available_losses() -> list[str]:
    return sorted(_LOSSES)


def get_loss(name: str) -> LossFn:
    try:
        return _LOSSES[name]
    except KeyError:
        raise ValueError(
            f"Unknown distillation_loss {name!r}. Known losses: {', '.join(available_losses())}. "
            "Register a new one with `hf_distill.register_loss`."
        ) from None


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


def hard_label_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Float32 cross-entropy averaged over the labels that are not ``-100`` (0 when all are)."""
    labels = labels.view(-1)
    summed = F.cross_entropy(
        logits.float().view(labels.numel(), -1), labels, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return summed / (labels != IGNORE_INDEX).sum().clamp(min=1)


class DistillationLossOutput(NamedTuple):
    loss: torch.Tensor
    ce: torch.Tensor | None
    kd: torch.Tensor


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    alpha: float,
    temperature: float,
    loss: str | LossFn = "kl",
) -> DistillationLossOutput:
    """``alpha * CE(student, labels) + (1 - alpha) * distill(student, teacher)``.

    ``alpha`` weighs the hard-label term, as in the Hugging Face distillation tutorials: ``alpha=0`` is pure
    distillation and needs no labels. The CE part is computed whenever labels are given, so it can be logged.
    """
    loss_fn = get_loss(loss) if isinstance(loss, str) else loss
    kd = loss_fn(student_logits, teacher_logits, temperature, labels)
    if labels is None:
        if alpha > 0:
            raise ValueError(
                f"alpha={alpha} weighs a hard-label cross-entropy, but the batch has no `labels`. "
                "Add a label column, or set alpha=0 for pure distillation."
            )
        return DistillationLossOutput((1.0 - alpha) * kd, None, kd)
    ce = hard_label_cross_entropy(student_logits, labels)
    return DistillationLossOutput(alpha * ce + (1.0 - alpha) * kd, ce, kd)
