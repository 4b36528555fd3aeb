"""Distillation losses: a registry of logit losses (``--distillation_loss``) and the objective that combines one
with the hard-label cross-entropy. One module per family; adding a loss is one decorated function::

    @register_loss("my_loss")
    def my_loss(student_logits, teacher_logits, temperature, labels=None):
        ...
"""

from .logit import hard_distillation_loss, hard_label_cross_entropy, kl_divergence_loss, logit_mse_loss
from .objective import DistillationLossOutput, distillation_loss, distillation_term
from .registry import _LOSSES, IGNORE_INDEX, LossFn, available_losses, get_loss, register_loss
from .top_k import TopKLogits, top_k_kl_loss

__all__ = [
    "IGNORE_INDEX",
    "DistillationLossOutput",
    "LossFn",
    "TopKLogits",
    "available_losses",
    "distillation_loss",
    "distillation_term",
    "get_loss",
    "hard_distillation_loss",
    "hard_label_cross_entropy",
    "kl_divergence_loss",
    "logit_mse_loss",
    "register_loss",
    "top_k_kl_loss",
    "_LOSSES",
]
