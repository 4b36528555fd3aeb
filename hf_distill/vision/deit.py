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

from ..losses import DistillationLossOutput, TopKLogits, distillation_term, hard_label_cross_entropy
from ..teacher import unwrap
from ..trainer import DistillationTrainer
from ..training_args import DistillationTrainingArguments


def deit_distillation_loss(
    cls_logits: torch.Tensor,
    distillation_logits: torch.Tensor,
    teacher_logits: torch.Tensor | TopKLogits,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
    loss: str = "kl",
    label_smoothing: float = 0.0,
) -> DistillationLossOutput:
    """``alpha * CE(cls_logits, labels) + (1 - alpha) * distill(distillation_logits, teacher_logits)``, in float32.

    DeiT's ``(1 - alpha) * CE + alpha * KD`` with this library's convention (alpha weighs the labels); hard
    distillation is ``loss="hard"`` with ``alpha=0.5``, as in the paper. The KL is averaged over the batch (DeiT's code
    divides it by the number of logits instead, which shrinks it by the class count).
    """
    if labels is None:
        raise ValueError("DeiT distillation trains the class token on labels; the batch has no `labels`.")
    ce = hard_label_cross_entropy(cls_logits, labels, label_smoothing)
    kd = distillation_term(loss, distillation_logits, teacher_logits, temperature, labels)
    return DistillationLossOutput(alpha * ce + (1.0 - alpha) * kd, ce, kd)


class DeiTDistillationTrainer(DistillationTrainer):
    """Trains a `DeiTForImageClassificationWithTeacher`: its class head on the labels, its distillation head on the
    teacher (in the loop or precomputed, as with :class:`~hf_distill.DistillationTrainer`). ``alpha`` must lie strictly
    between 0 and 1 so both heads learn; evaluation and the saved model use the average of the two heads."""

    def __init__(self, model: Any = None, args: DistillationTrainingArguments | None = None, **kwargs: Any):
        if model is not None and not isinstance(unwrap(model), DeiTForImageClassificationWithTeacher):
            raise TypeError(
                f"DeiTDistillationTrainer trains a DeiTForImageClassificationWithTeacher, got {type(model).__name__}. "
                "Use DistillationTrainer for students with one head."
            )
        if args is not None and not 0.0 < getattr(args, "alpha", 0.5) < 1.0:
            raise ValueError(
                f"alpha={args.alpha} leaves one DeiT head untrained: alpha weighs the class head's CE and 1 - alpha "
                "the distillation head's loss. Use 0 < alpha < 1 (DeiT uses 0.5)."
            )
        super().__init__(model=model, args=args, **kwargs)
        if not self.label_names:  # the model's forward takes no labels, so Trainer cannot infer the name
            self.label_names = ["labels"]

    def loss_from_outputs(
        self, outputs: Any, teacher_logits: torch.Tensor | TopKLogits, labels: torch.Tensor | None
    ) -> DistillationLossOutput:
        return deit_distillation_loss(
            outputs.cls_logits,
            outputs.distillation_logits,
            teacher_logits,
            labels,
            alpha=self.args.alpha,
            temperature=self.args.temperature,
            loss=self.args.distillation_loss,
            label_smoothing=self.args.label_smoothing_factor,
        )
