"""`DistillationTrainingArguments`: `TrainingArguments` plus the distillation knobs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real

from transformers import TrainingArguments

from .intermediate import check_intermediate_options
from .losses import TEACHER_CORRECTIONS, available_losses, get_loss, loss_hyperparameters
from .schedules import SCHEDULES
from .teachers import check_ensemble_loss, parse_teacher_weights

TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")
# The fields that define the method, summarised (only those in use) by `method_summary`.
METHOD_FIELDS = (
    "distillation_loss",
    "dkd_alpha",
    "dkd_beta",
    "dist_beta",
    "dist_gamma",
    "jsd_beta",
    "teacher_correction",
    "logit_standardization",
    "alpha",
    "alpha_schedule",
    "alpha_end",
    "temperature",
    "temperature_schedule",
    "temperature_end",
    "distillation_epochs",
    "distillation_steps",
    "two_stage_steps",
    "two_stage_epochs",
)


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
    # Loss hyperparameters: a loss's keyword-only parameters of the same name (see losses/registry.py).
    dkd_alpha: float = field(default=1.0, metadata={"help": "dkd: weight of the target-class term TCKD (>= 0)."})
    dkd_beta: float = field(default=8.0, metadata={"help": "dkd: weight of the non-target-class term NCKD (>= 0)."})
    dist_beta: float = field(default=1.0, metadata={"help": "dist: weight of the inter-class (per example) term."})
    dist_gamma: float = field(default=1.0, metadata={"help": "dist: weight of the intra-class (per class) term."})
    jsd_beta: float = field(
        default=0.5,
        metadata={"help": "jsd: mixture weight in [0, 1]; 0.5 = symmetric JSD, 0 = forward KL, 1 = reverse KL."},
    )
    teacher_correction: str | None = field(
        default=None,
        metadata={
            "help": "Correct the teacher's logits before the loss: swap (where the teacher's top class is not the "
            "label, swap the logits of its top class and the true class)."
        },
    )
    logit_standardization: bool = field(
        default=False,
        metadata={"help": "Z-score teacher and student logits before the temperature (Sun et al., CVPR 2024)."},
    )
    alpha_schedule: str = field(
        default="constant",
        metadata={"help": f"How alpha moves from alpha to alpha_end over training: {', '.join(SCHEDULES)}."},
    )
    alpha_end: float | None = field(default=None, metadata={"help": "alpha at the end of training (default: alpha)."})
    temperature_schedule: str = field(
        default="constant",
        metadata={"help": f"How the temperature moves to temperature_end: {', '.join(SCHEDULES)}."},
    )
    temperature_end: float | None = field(
        default=None, metadata={"help": "Temperature at the end of training (default: temperature)."}
    )
    distillation_epochs: float | None = field(
        default=None,
        metadata={
            "help": "KD then CE: distil for this many epochs, then train on the labels alone (the teacher is no "
            "longer run)."
        },
    )
    distillation_steps: int | None = field(
        default=None, metadata={"help": "KD then CE: distil for this many optimizer steps."}
    )
    two_stage_steps: int | None = field(
        default=None,
        metadata={
            "help": "Two-stage training: train only the classifier head (backbone frozen) for this many optimizer "
            "steps, then the whole network."
        },
    )
    two_stage_epochs: float | None = field(
        default=None, metadata={"help": "Two-stage training: stage 1 lasts this many epochs."}
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

    teacher_weights: str | None = field(
        default=None,
        metadata={
            "help": "Several teachers: comma-separated weights of their probabilities in the soft target, in the "
            "order of the teachers or of teacher_logits_columns (default: equal)."
        },
    )
    teacher_logits_columns: str | None = field(
        default=None,
        metadata={
            "help": "Several precomputed teachers: comma-separated logits columns, one per teacher (replaces "
            "teacher_logits_column); the soft target is their weighted average probability."
        },
    )
    self_distillation: bool = field(
        default=False,
        metadata={
            "help": "The teacher is the student itself: its frozen base model for a PEFT student (no teacher_model), "
            "or an earlier checkpoint of it given as teacher_model (same architecture checked)."
        },
    )
    hidden_state_loss: str | None = field(
        default=None,
        metadata={"help": "Distil hidden states of mapped layers: mse (TinyBERT) or cosine (DistilBERT)."},
    )
    attention_loss: str | None = field(
        default=None, metadata={"help": "Distil attention maps of mapped layers: kl (MiniLM / TinyBERT)."}
    )
    layer_map: str | None = field(
        default=None,
        metadata={
            "help": "Student:teacher layer pairs for hidden_state_loss / attention_loss, 0-based, e.g. '0:1,1:3,2:5' "
            "(default: uniform, student layer s of S to teacher layer ceil((s+1)T/S)-1)."
        },
    )
    hidden_state_weight: float = field(default=1.0, metadata={"help": "Weight of the hidden-state loss."})
    attention_weight: float = field(default=1.0, metadata={"help": "Weight of the attention-map loss."})

    @property
    def logits_columns(self) -> list[str]:
        """The precomputed teacher logits columns: ``teacher_logits_columns`` if set, else ``teacher_logits_column``."""
        if self.teacher_logits_columns:
            return self.teacher_logits_columns.split(",")
        return [self.teacher_logits_column]

    def method_summary(self) -> dict[str, object]:
        """The distillation method in a few settings (for the model card and logs): the loss with its hyperparameters,
        alpha and temperature with their schedules, the corrections, the KD-then-CE and two-stage switches, several
        teachers, self-distillation and the intermediate-layer losses."""
        summary: dict[str, object] = {"distillation_loss": self.distillation_loss}
        summary.update({name: getattr(self, name) for name in loss_hyperparameters(self.distillation_loss)})
        for name in ("alpha", "temperature"):
            schedule = getattr(self, f"{name}_schedule")
            summary[name] = getattr(self, name)
            if schedule != "constant":
                end = getattr(self, f"{name}_end")
                summary[f"{name}_schedule"] = f"{schedule} to {getattr(self, name) if end is None else end}"
        optional = (
            "teacher_correction",
            "distillation_steps",
            "distillation_epochs",
            "two_stage_steps",
            "two_stage_epochs",
        )
        summary.update({name: getattr(self, name) for name in optional if getattr(self, name) is not None})
        if self.logit_standardization:
            summary["logit_standardization"] = True
        for name in ("teacher_weights", "teacher_logits_columns"):
            if getattr(self, name):
                summary[name] = getattr(self, name)
        if self.self_distillation:
            summary["self_distillation"] = True
        for name in ("hidden_state", "attention"):
            if getattr(self, f"{name}_loss") is not None:
                summary[f"{name}_loss"] = getattr(self, f"{name}_loss")
                summary[f"{name}_weight"] = getattr(self, f"{name}_weight")
        if self.hidden_state_loss is not None or self.attention_loss is not None:
            summary["layer_map"] = self.layer_map or "uniform"
        return summary

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
        self._check_method()
        if self.teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(f"teacher_dtype must be one of {', '.join(TEACHER_DTYPES)}, got {self.teacher_dtype!r}.")
        if not isinstance(self.teacher_torch_compile, bool):
            raise ValueError(f"teacher_torch_compile must be True or False, got {self.teacher_torch_compile!r}.")
        if not self.teacher_logits_column:
            raise ValueError("teacher_logits_column must be a non-empty column name.")
        columns = self.logits_columns
        if len(set(columns)) != len(columns) or not all(columns):
            raise ValueError(
                f"teacher_logits_columns must name distinct columns, got {self.teacher_logits_columns!r}."
            )
        if self.teacher_logits_columns and any(c.startswith(self.teacher_input_prefix) for c in columns):
            raise ValueError(
                f"teacher_logits_columns {columns} must not start with teacher_input_prefix "
                f"{self.teacher_input_prefix!r} (such columns are fed to the teacher); name them e.g. logits_<teacher>."
            )
        if len(columns) > 1:
            check_ensemble_loss(self.distillation_loss)
        parse_teacher_weights(self.teacher_weights)
        check_intermediate_options(
            self.hidden_state_loss, self.attention_loss, self.hidden_state_weight, self.attention_weight
        )
        if not self.teacher_input_prefix:
            raise ValueError("teacher_input_prefix must be a non-empty prefix such as 'teacher_'.")
        check_trainer_fields(self)

    def _check_method(self) -> None:
        """The loss, its hyperparameters, the corrections and the schedules (see :meth:`method_summary`)."""
        get_loss(self.distillation_loss)
        for name in ("dkd_alpha", "dkd_beta", "dist_beta", "dist_gamma"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not 0.0 <= self.jsd_beta <= 1.0:
            raise ValueError(f"jsd_beta must be in [0, 1] (0.5 = symmetric JSD), got {self.jsd_beta}.")
        if self.teacher_correction is not None and self.teacher_correction not in TEACHER_CORRECTIONS:
            raise ValueError(
                f"teacher_correction must be one of {', '.join(TEACHER_CORRECTIONS)} or unset, "
                f"got {self.teacher_correction!r}."
            )
        for name in ("alpha_schedule", "temperature_schedule"):
            if getattr(self, name) not in SCHEDULES:
                raise ValueError(f"{name} must be one of {', '.join(SCHEDULES)}, got {getattr(self, name)!r}.")
        for name in ("alpha", "temperature"):
            if getattr(self, f"{name}_end") is not None and getattr(self, f"{name}_schedule") == "constant":
                raise ValueError(
                    f"{name}_end={getattr(self, f'{name}_end')} has no effect with {name}_schedule='constant'. "
                    f"Set --{name}_schedule linear or cosine."
                )
        if self.alpha_end is not None and not 0.0 <= self.alpha_end <= 1.0:
            raise ValueError(f"alpha_end must be in [0, 1], got {self.alpha_end}.")
        if self.temperature_end is not None and not (math.isfinite(self.temperature_end) and self.temperature_end > 0):
            raise ValueError(f"temperature_end must be finite and > 0, got {self.temperature_end}.")
        for steps, epochs in (("distillation_steps", "distillation_epochs"), ("two_stage_steps", "two_stage_epochs")):
            for name in (steps, epochs):
                value = getattr(self, name)
                if value is not None and not value > 0:
                    raise ValueError(f"{name} must be > 0 (or unset), got {value}.")
            if getattr(self, steps) is not None and getattr(self, epochs) is not None:
                raise ValueError(f"Set {steps} or {epochs}, not both.")


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
