"""hf_distill: knowledge distillation of classification transformers on the Hugging Face Trainer."""

from .compare import ComparisonReport, ModelResult, compare_models
from .data_collator import DataCollatorForDistillation
from .labels import label_names, teacher_to_student_permutation
from .losses import available_losses, distillation_loss, get_loss, register_loss
from .precompute import precompute_teacher_logits
from .provenance import TeacherLogitsInfo, read_logits_info
from .trainer import DistillationTrainer
from .training_args import DistillationTrainingArguments
from .unlabeled import combine_labeled_and_unlabeled

__version__ = "0.1.0"

__all__ = [
    "combine_labeled_and_unlabeled",
    "ComparisonReport",
    "DataCollatorForDistillation",
    "DistillationTrainer",
    "DistillationTrainingArguments",
    "TeacherLogitsInfo",
    "available_losses",
    "distillation_loss",
    "get_loss",
    "ModelResult",
    "compare_models",
    "label_names",
    "precompute_teacher_logits",
    "read_logits_info",
    "register_loss",
    "teacher_to_student_permutation",
]
