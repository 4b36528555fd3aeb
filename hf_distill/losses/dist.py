"""DIST: distillation by correlation (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import register_loss

# Added to the product of the two centred norms, as in the authors' code: a constant row or column has correlation 0.
PEARSON_EPS = 1e-8


def pearson_correlation(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """Pearson correlation of ``a`` and ``b`` along ``dim``: ``<a', b'> / (|a'| |b'| + eps)`` for centred a', b'."""
    a = a - a.mean(dim, keepdim=True)
    b = b - b.mean(dim, keepdim=True)
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + PEARSON_EPS)


@register_loss("dist")
def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    labels: torch.Tensor | None = None,
    *,
    dist_beta: float = 1.0,
    dist_gamma: float = 1.0,
) -> torch.Tensor:
    """DIST (Huang et al., NeurIPS 2022): ``T^2 * (dist_beta * inter + dist_gamma * intra)`` on ``softmax(z / T)``.

    Huang et al., "Knowledge Distillation from A Stronger Teacher" (DIST, NeurIPS 2022): the student matches the
    teacher's predictions up to scale and shift, by Pearson correlation instead of KL. ``inter`` is one minus the mean
    correlation of the rows (each example's class distribution), ``intra`` one minus the mean correlation of the
    columns (each class's scores across the batch). In float32; a constant row or column (every example alike, or a
    batch of one) gives correlation 0 with finite gradients (the norm product is offset by 1e-8).
    """
    y_s = F.softmax(student_logits.float() / temperature, dim=-1)
    y_t = F.softmax(teacher_logits.float() / temperature, dim=-1)
    inter = 1 - pearson_correlation(y_s, y_t, dim=1).mean()
    intra = 1 - pearson_correlation(y_s, y_t, dim=0).mean()
    return (dist_beta * inter + dist_gamma * intra) * temperature**2
