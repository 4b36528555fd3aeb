"""hf_distill: knowledge distillation of classification transformers on the Hugging Face Trainer.

The public names below are imported on first use (PEP 562), so that ``hf-distill --help`` and the recipes' ``--help``
answer without loading torch and transformers first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the submodule that defines it.
_EXPORTS = {
    "ComparisonReport": "evaluation.compare",
    "ModelResult": "evaluation.model_result",
    "compare_models": "evaluation.compare",
    "DataCollatorForDistillation": "data.data_collator",
    "label_names": "data.labels",
    "teacher_to_student_permutation": "data.labels",
    "available_losses": "losses",
    "distillation_loss": "losses",
    "get_loss": "losses",
    "register_loss": "losses",
    "precompute_teacher_logits": "data.precompute",
    "TeacherLogitsInfo": "data.provenance",
    "read_logits_info": "data.provenance",
    "DistillationTrainer": "trainer",
    "DistillationTrainingArguments": "training_args",
    "combine_labeled_and_unlabeled": "data.unlabeled",
}
__all__ = [
    "combine_labeled_and_unlabeled",
    "ComparisonReport",
    "DataCollatorForDistillation",
    "DistillationTrainer",
    "DistillationTrainingArguments",
    "ModelResult",
    "TeacherLogitsInfo",
    "available_losses",
    "compare_models",
    "distillation_loss",
    "get_loss",
    "label_names",
    "precompute_teacher_logits",
    "read_logits_info",
    "register_loss",
    "teacher_to_student_permutation",
]

if TYPE_CHECKING:
    from .data.data_collator import DataCollatorForDistillation
    from .data.labels import label_names, teacher_to_student_permutation
    from .data.precompute import precompute_teacher_logits
    from .data.provenance import TeacherLogitsInfo, read_logits_info
    from .data.unlabeled import combine_labeled_and_unlabeled
    from .evaluation.compare import ComparisonReport, compare_models
    from .evaluation.model_result import ModelResult
    from .losses import available_losses, distillation_loss, get_loss, register_loss
    from .trainer import DistillationTrainer
    from .training_args import DistillationTrainingArguments


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
