"""`DistillationTrainingArguments`: `TrainingArguments` plus the distillation knobs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real

from transformers import TrainingArguments

from .losses import available_losses, get_loss

TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class DistillationTrainingArguments(TrainingArguments):
    """Arguments for :class:`~hf_distill.DistillationTrainer`.

    The student is trained on ``alpha * CE(student, labels) + (1 - alpha) * distillation_loss(student, teacher)``.
    Note the convention: **alpha weighs the hard labels**, ``1 - alpha`` the teacher. ``alpha=0`` is pure
    distillation (no labels needed), ``alpha=1`` plain fine-tuning.
    """

    alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of the hard-label cross-entropy in [0, 1]; the distillation term gets 1 - alpha. "
            "0 = pure distillation (labels not needed), 1 = plain fine-tuning."
        },
    )
    temperature: float = field(
        default=2.0,
        metadata={"help": "Softmax temperature T (> 0) of the distillation term; the KL is scaled by T^2."},
    )
    distillation_loss: str = field(
        default="kl", metadata={"help": f"Distillation loss, one of: {', '.join(available_losses())}."}
    )
    teacher_logits_column: str = field(
        default="teacher_logits",
        metadata={"help": "Dataset column with precomputed teacher logits; used instead of a teacher forward pass."},
    )
    teacher_input_prefix: str = field(
        default="teacher_",
        metadata={
            "help": "Batch keys with this prefix (teacher_input_ids, teacher_pixel_values, ...) are fed to the teacher "
            "with the prefix stripped; without them the teacher gets the student's inputs."
        },
    )
    teacher_dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the in-batch teacher's weights: auto (keep), float32, bfloat16 or float16. "
            "Half precision roughly halves the teacher's cost on GPU; logits are upcast to float32."
        },
    )

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Recipes: train from scratch in an output_dir that already holds a run, instead of resuming from "
            "its last checkpoint (or refusing when it has none)."
        },
    )
    teacher_torch_compile: bool = field(
        default=False,
        metadata={
            "help": "Compile the in-batch teacher with torch.compile when it is first placed on the device. "
            "Pays off on GPU for long runs; the first steps are slower while it compiles."
        },
    )

    def __getstate__(self) -> dict:
        """Pickle (``training_args.bin``, which ``push_to_hub`` uploads) without ``hub_token`` or other tokens."""
        state = self.__dict__.copy()
        for name in state:
            if name.endswith("_token") and state[name] is not None:
                state[name] = None
        return state

    def __post_init__(self) -> None:
        metric = (self.metric_for_best_model or "").removeprefix("eval_")
        if self.greater_is_better is None and "loss" in metric.split("_"):  # loss_ce, loss_kd: lower is better
            self.greater_is_better = False
        super().__post_init__()
        self.validate()

    def validate(self) -> None:
        """Check the distillation fields; :class:`~hf_distill.DistillationTrainer` calls it again when it starts, so
        values set on the object after construction (``args.alpha = 2``) are checked too."""
        for name in ("alpha", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real):
                raise TypeError(
                    f"{name} must be a number, got {value!r} ({type(value).__name__}). In YAML write 0.5 rather than "
                    "5e-1, which PyYAML reads as a string (the recipes convert such strings)."
                )
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(
                f"alpha must be in [0, 1] (it weighs the hard-label CE; the teacher gets 1 - alpha), got {self.alpha}."
            )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {self.temperature}. Typical values are 1 to 8.")
        get_loss(self.distillation_loss)
        if self.teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(f"teacher_dtype must be one of {', '.join(TEACHER_DTYPES)}, got {self.teacher_dtype!r}.")
        if not isinstance(self.teacher_torch_compile, bool):
            raise ValueError(f"teacher_torch_compile must be True or False, got {self.teacher_torch_compile!r}.")
        if not self.teacher_logits_column:
            raise ValueError("teacher_logits_column must be a non-empty column name.")
        if not self.teacher_input_prefix:
            raise ValueError("teacher_input_prefix must be a non-empty prefix such as 'teacher_'.")
        check_trainer_fields(self)


def check_trainer_fields(args: TrainingArguments) -> None:
    """Refuse the `TrainingArguments` that a distillation loss cannot honour (see docs/reliability.md)."""
    if args.label_names not in (None, ["labels"]):
        raise ValueError(
            f"label_names={args.label_names!r}: DistillationTrainer reads the class labels from the `labels` key "
            "(a `label` column is renamed to it by the collator). Rename the column to `labels` and leave label_names "
            "unset."
        )
    if args.use_liger_kernel:
        raise ValueError(
            "use_liger_kernel replaces the model's loss and may skip its logits; the distillation loss needs the "
            "student's logits. Leave use_liger_kernel off."
        )
    if not 0.0 <= args.label_smoothing_factor < 1.0:
        raise ValueError(f"label_smoothing_factor must be in [0, 1), got {args.label_smoothing_factor}.")
