"""DeiT-style distillation through a distillation token (Touvron et al., "Training data-efficient image transformers
& distillation through attention", ICML 2021).

`DeiTForImageClassificationWithTeacher` has two heads: the class token's, trained on the labels, and the
distillation token's, trained on the teacher; at inference it averages them. transformers ships the model but no
way to train it; :class:`DeiTDistillationTrainer` does, with soft (``distillation_loss="kl"``) or hard
(``distillation_loss="hard"``, cross-entropy to the teacher's top-1 class) distillation.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DeiTForImageClassificationWithTeacher

from ..losses import DistillationObjective, LossParts, TopKLogits, hard_label_cross_entropy
from ..methods.schedules import ObjectiveSchedule
from ..teachers.loading import unwrap
from ..trainer import DistillationTrainer
from ..training_args import DistillationTrainingArguments


def deit_distillation_loss(
    cls_logits: torch.Tensor,
    distillation_logits: torch.Tensor,
    teacher_logits: torch.Tensor | TopKLogits | None,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
    loss: str = "kl",
    label_smoothing: float = 0.0,
    objective: DistillationObjective | None = None,
) -> LossParts:
    """``alpha * CE(cls_logits, labels) + (1 - alpha) * distill(distillation_logits, teacher_logits)``, in float32.

    DeiT's ``(1 - alpha) * CE + alpha * KD`` with this library's convention (alpha weighs the labels); hard
    distillation is ``loss="hard"`` with ``alpha=0.5``, as in the paper. The KL is averaged over the batch (DeiT's code
    divides it by the number of logits instead, which shrinks it by the class count). ``objective`` (default: ``loss``
    with ``label_smoothing``, without corrections) computes both parts; without teacher logits (the CE phase of "KD then CE") the
    class head alone learns.
    """
    if labels is None:
        raise ValueError("DeiT distillation trains the class token on labels; the batch has no `labels`.")
    objective = objective or DistillationObjective(loss, label_smoothing=label_smoothing)
    ce = hard_label_cross_entropy(cls_logits, labels, objective.label_smoothing)
    if teacher_logits is None:
        return LossParts({"loss_ce": ce}, {"loss_ce": 1.0})
    kd = objective.distillation_term(distillation_logits, teacher_logits, labels, temperature)
    return LossParts({"loss_ce": ce, "loss_kd": kd}, {"loss_ce": alpha, "loss_kd": 1.0 - alpha})


class DeiTDistillationTrainer(DistillationTrainer):
    """Trains a `DeiTForImageClassificationWithTeacher`: its class head on the labels, its distillation head on the
    teacher (in the loop or precomputed, as with :class:`~hf_distill.DistillationTrainer`). ``alpha`` must lie strictly
    between 0 and 1 so both heads learn, ``alpha_end`` included; evaluation and the saved model use the average of the
    two heads."""

    alpha_range = "open"

    method_description = (
        'The student is a DeiT with a distillation token (Touvron et al., 2021, "Training data-efficient image '
        'transformers & distillation through attention"). Beside the class token it carries a distillation token '
        "with its own head: the class head is trained on the labels (weight `alpha`) and the distillation head on "
        "the teacher (weight `1 - alpha`; `hard` = the teacher's top-1 class, else its soft targets). At inference "
        "the model averages the two heads' logits."
    )

    def __init__(self, model: Any = None, args: DistillationTrainingArguments | None = None, **kwargs: Any):
        if model is not None and not isinstance(unwrap(model), DeiTForImageClassificationWithTeacher):
            raise TypeError(
                f"DeiTDistillationTrainer trains a DeiTForImageClassificationWithTeacher, got {type(model).__name__}. "
                "Use DistillationTrainer for students with one head."
            )
        super().__init__(model=model, args=args, **kwargs)
        if not self.label_names:  # the model's forward takes no labels, so Trainer cannot infer the name
            self.label_names = ["labels"]

    def loss_from_outputs(
        self,
        outputs: Any,
        teacher_logits: torch.Tensor | TopKLogits | None,
        labels: torch.Tensor | None,
        schedule: ObjectiveSchedule,
    ) -> LossParts:
        return deit_distillation_loss(
            outputs.cls_logits,
            outputs.distillation_logits,
            teacher_logits,
            labels,
            alpha=schedule.alpha,
            temperature=schedule.temperature,
            objective=self.objective,
        )
