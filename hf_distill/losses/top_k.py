"""Distillation from a teacher's top-k logits plus a "rest" bucket (see ``precompute_teacher_logits(top_k=K)``)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


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
