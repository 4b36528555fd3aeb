"""Distillation losses: a registry of logit losses (``--distillation_loss``), teacher corrections, and the objective
that combines a loss with the hard-label cross-entropy. One module per family; adding a loss is one decorated
function (keyword-only parameters are hyperparameters, filled from the training arguments of the same name or from
``--loss_kwargs``)::

    @register_loss("my_loss")
    def my_loss(student_logits, teacher_logits, temperature, labels=None, *, my_loss_weight=1.0):
        ...

    # --distillation_loss my_loss --loss_kwargs '{"my_loss_weight": 2}'

A feature method (hidden states, attention maps, ...) is an objective term (see ``ObjectiveTerm``): it returns its own
weighted parts and carries its forward flags, optimizer groups, checkpoint state and callbacks, which the trainer
gathers through :class:`DistillationObjective` without a branch of its own.

- ``registry``: the registry (``register_loss``, ``get_loss``) and each loss's hyperparameters.
- ``logit``: Hinton KL, logit MSE, hard (teacher top-1) distillation, the hard-label cross-entropy.
- ``divergence``: reverse KL and the generalized Jensen-Shannon divergence (GKD).
- ``dkd``: Decoupled Knowledge Distillation.
- ``dist``: DIST, distillation by correlation.
- ``top_k``: KL from a teacher's top-k logits plus a "rest" bucket.
- ``corrections``: corrections of the teacher's logits before any loss.
- ``objective``: the objective: named, weighted loss parts and the extra terms.
"""

from .corrections import TEACHER_CORRECTIONS, check_teacher_correction, standardize_logits, swap_teacher_mistakes
from .dist import dist_loss
from .divergence import generalized_jsd_loss, reverse_kl_loss
from .dkd import dkd_loss
from .logit import hard_distillation_loss, hard_label_cross_entropy, kl_divergence_loss, logit_mse_loss
from .objective import DistillationObjective, LossParts, ObjectiveTerm, distillation_loss, distillation_term
from .registry import _LOSSES, IGNORE_INDEX, LossFn, available_losses, get_loss, loss_hyperparameters, register_loss
from .top_k import TopKLogits, top_k_kl_loss

__all__ = [
    "IGNORE_INDEX",
    "TEACHER_CORRECTIONS",
    "DistillationObjective",
    "LossFn",
    "LossParts",
    "ObjectiveTerm",
    "TopKLogits",
    "available_losses",
    "check_teacher_correction",
    "dist_loss",
    "distillation_loss",
    "distillation_term",
    "dkd_loss",
    "generalized_jsd_loss",
    "get_loss",
    "hard_distillation_loss",
    "hard_label_cross_entropy",
    "kl_divergence_loss",
    "logit_mse_loss",
    "loss_hyperparameters",
    "register_loss",
    "reverse_kl_loss",
    "standardize_logits",
    "swap_teacher_mistakes",
    "top_k_kl_loss",
    "_LOSSES",
]
