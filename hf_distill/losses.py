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

import math
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


class TopKLogits(NamedTuple):
    """A teacher's top-k logits, as stored by ``precompute_teacher_logits(..., top_k=K)``.

    ``values`` is ``(B, K + 1)``: the K largest logits in descending order, then the logit of the "rest" bucket,
    ``T * logsumexp(z_rest / T)`` at the precompute temperature ``T``, so that ``softmax(values / T)`` is the teacher's
    exact distribution over the K classes plus one bucket holding the remaining mass. ``indices`` is ``(B, K)``, the
    class index of each of the K logits in the student's label order.
    """

    values: torch.Tensor
    indices: torch.Tensor

    def top1(self) -> torch.Tensor:
        """The teacher's predicted class (exact: the largest logit is always kept)."""
        return self.indices[..., 0]

    def dense(self, num_classes: int, temperature: float) -> torch.Tensor:
        """``(B, num_classes)`` logits with the K logits in place and the rest bucket's mass spread evenly over the
        other classes (at ``temperature``): the same top-1 class and the same top-k probabilities."""
        k = self.indices.shape[-1]
        values = self.values.float()
        rest = values[..., k:] - temperature * math.log(max(num_classes - k, 1))
        return rest.expand(*values.shape[:-1], num_classes).scatter(-1, self.indices, values[..., :k])


def top_k_kl_loss(
    student_logits: torch.Tensor, teacher: TopKLogits, temperature: float, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """``T^2 * KL`` between teacher and student over K + 1 buckets: the teacher's top-k classes and the rest.

    The student's bucket probabilities are its exact softmax probabilities of the K classes and the sum over all the
    others; the teacher's are ``softmax(teacher.values / T)`` (see :class:`TopKLogits`). Storing only the teacher's
    top-k predictions follows the soft-label compression of Shen & Xing, "A Fast Knowledge Distillation Framework for
    Visual Recognition" (ECCV 2022); the rest bucket keeps both sides proper distributions. It equals
    :func:`kl_divergence_loss` when the rest bucket is empty (K = C, rest logit ``-inf``). Computed in float32 on
    log-probabilities with ``log_target=True``.
    """
    indices = teacher.indices.long()
    logits = student_logits.float() / temperature
    log_z = torch.logsumexp(logits, -1, keepdim=True)
    log_p_top = logits.gather(-1, indices) - log_z
    # Log-mass of the classes outside the top k: mask them with a finite floor so an empty rest stays finite.
    masked = logits.scatter(-1, indices, torch.finfo(logits.dtype).min)
    log_p_rest = torch.logsumexp(masked, -1, keepdim=True) - log_z
    log_p_student = torch.cat([log_p_top, log_p_rest], -1)
    log_p_teacher = F.log_softmax(teacher.values.float() / temperature, -1).clamp(min=torch.finfo(torch.float32).min)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


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
) -> DistillationLossOutput:
    """``alpha * CE(student, labels) + (1 - alpha) * distill(student, teacher)``.

    ``alpha`` weighs the hard-label term, as in the Hugging Face distillation tutorials: ``alpha=0`` is pure
    distillation and needs no labels. The CE part is computed whenever labels are given, so it can be logged.
    ``teacher_logits`` may be :class:`TopKLogits` (see :func:`distillation_term`).
    """
    kd = distillation_term(loss, student_logits, teacher_logits, temperature, labels)
    if labels is None:
        if alpha > 0:
            raise ValueError(
                f"alpha={alpha} weighs a hard-label cross-entropy, but the batch has no `labels`. "
                "Add a label column, or set alpha=0 for pure distillation."
            )
        return DistillationLossOutput((1.0 - alpha) * kd, None, kd)
    ce = hard_label_cross_entropy(student_logits, labels)
    return DistillationLossOutput(alpha * ce + (1.0 - alpha) * kd, ce, kd)
