"""`DistillationTrainingArguments`: `TrainingArguments` plus the distillation knobs.

The arguments check their own values only. Rules that need another object (the student, the teacher, a dataset, a
logits column's provenance, the run's length) are resolved once, before the first step, by
:class:`~hf_distill.plan.DistillationPlan`. The loss registry is the one implementation module read here: a
``--distillation_loss`` typo or an unknown ``--loss_kwargs`` key is refused when the arguments are parsed.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from transformers import TrainingArguments

from .losses import available_losses, check_teacher_correction, get_loss, loss_hyperparameters

TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")
SCHEDULES = ("constant", "linear", "cosine")
HIDDEN_STATE_LOSSES = ("mse", "cosine")
ATTENTION_LOSSES = ("kl",)
# Weights and hyperparameters that must be finite and >= 0.
_NON_NEGATIVE = ("dkd_alpha", "dkd_beta", "dist_beta", "dist_gamma", "hidden_state_weight", "attention_weight")


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
        default="kl",
        metadata={"help": f"Distillation loss, one of: {', '.join(available_losses())}."},
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
    loss_kwargs: str | None = field(
        default=None,
        metadata={
            "help": "Hyperparameters of the distillation loss that have no field of their own (a loss registered with "
            "hf_distill.register_loss and keyword-only parameters), as a JSON object, e.g. '{\"scale\": 2}'. "
            "A dict is accepted from Python."
        },
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
    alpha_end: float | None = field(
        default=None,
        metadata={"help": "alpha at the end of training (required by a linear or cosine alpha_schedule)."},
    )
    temperature_schedule: str = field(
        default="constant",
        metadata={"help": f"How the temperature moves to temperature_end: {', '.join(SCHEDULES)}."},
    )
    temperature_end: float | None = field(
        default=None,
        metadata={"help": "Temperature at the end of training (required by a linear or cosine temperature_schedule)."},
    )
    distillation_epochs: float | None = field(
        default=None,
        metadata={
            "help": "KD then CE: distil for this many epochs, then train on the labels alone (the teacher is no longer run)."
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
        default=None,
        metadata={"help": "Distil attention maps of mapped layers: kl (MiniLM / TinyBERT)."},
    )
    layer_map: str | None = field(
        default=None,
        metadata={
            "help": "Student:teacher layer pairs for hidden_state_loss / attention_loss, 0-based, e.g. '0:1,1:3,2:5' "
            "(default: uniform, student layer s of S to teacher layer ceil((s+1)T/S)-1)."
        },
    )
    hidden_state_weight: float = field(
        default=1.0, metadata={"help": "Weight of the hidden-state loss (finite, >= 0)."}
    )
    attention_weight: float = field(default=1.0, metadata={"help": "Weight of the attention-map loss (finite, >= 0)."})

    @property
    def logits_columns(self) -> list[str]:
        """The precomputed teacher logits columns: ``teacher_logits_columns`` if set, else ``teacher_logits_column``."""
        if self.teacher_logits_columns:
            return self.teacher_logits_columns.split(",")
        return [self.teacher_logits_column]

    @property
    def loss_hyperparameters(self) -> dict[str, Any]:
        """The keyword arguments of ``distillation_loss``: its keyword-only parameters that have a field here
        (``dkd_beta``, ...), then ``loss_kwargs``; parameters given neither way keep the loss's defaults."""
        names = loss_hyperparameters(self.distillation_loss)
        fields = {f.name for f in dataclasses.fields(self)}
        values = {name: getattr(self, name) for name in names if name in fields}
        return {**values, **_json_object(self.loss_kwargs)}

    def method_summary(self) -> dict[str, object]:
        """The distillation method in the settings in use (for the model card and logs), by :data:`METHOD_FIELDS`:
        the loss with its hyperparameters, alpha and temperature with their schedules, the corrections, the
        KD-then-CE and two-stage switches, several teachers, self-distillation and the intermediate-layer losses."""
        hyperparameters = self.loss_hyperparameters
        summary: dict[str, object] = {}
        for name, shown in METHOD_FIELDS.items():
            value = getattr(self, name)
            if shown == "always" or (shown == "loss" and name in hyperparameters):
                summary[name] = value
            elif shown == "set" and value not in (None, False, ""):
                summary[name] = value
            elif shown == "scheduled":
                summary[name] = value
                schedule, end = getattr(self, f"{name}_schedule"), getattr(self, f"{name}_end")
                if schedule != "constant":
                    summary[f"{name}_schedule"] = f"{schedule} to {end}"
            elif shown.startswith("with ") and any(getattr(self, other) is not None for other in shown[5:].split()):
                summary[name] = "uniform" if value is None else value  # layer_map's default
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
        if isinstance(self.loss_kwargs, dict):  # from Python: kept as JSON, the form the flag and the card use
            self.loss_kwargs = json.dumps(self.loss_kwargs, sort_keys=True)
        super().__post_init__()
        self.validate()

    def validate(self) -> None:
        """Check the distillation fields' own values. :class:`~hf_distill.plan.DistillationPlan` calls it again
        before the first step when a field changed since (``args.alpha = 2`` after construction)."""
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
        if len(columns) > 1 and self.distillation_loss == "mse":
            raise ValueError(
                f"distillation_loss={self.distillation_loss!r} compares raw logits, but several teachers are combined "
                "as averaged probabilities (logits T * log p). Use kl (or another divergence) with several teachers."
            )
        parse_teacher_weights(self.teacher_weights)
        if not self.teacher_input_prefix:
            raise ValueError("teacher_input_prefix must be a non-empty prefix such as 'teacher_'.")
        check_trainer_fields(self)

    def _check_method(self) -> None:
        """The loss, its hyperparameters, the corrections, the schedules and the intermediate-layer losses."""
        get_loss(self.distillation_loss)
        for name in _NON_NEGATIVE:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0 and finite, got {value}.")
        if not 0.0 <= self.jsd_beta <= 1.0:
            raise ValueError(f"jsd_beta must be in [0, 1] (0.5 = symmetric JSD), got {self.jsd_beta}.")
        self._check_loss_kwargs()
        if self.teacher_correction is not None:
            check_teacher_correction(self.teacher_correction)
        for name in ("alpha", "temperature"):
            schedule, end = getattr(self, f"{name}_schedule"), getattr(self, f"{name}_end")
            if schedule not in SCHEDULES:
                raise ValueError(f"{name}_schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}.")
            if end is not None and schedule == "constant":
                raise ValueError(
                    f"{name}_end={end} has no effect with {name}_schedule='constant'. "
                    f"Set --{name}_schedule linear or cosine."
                )
            if end is None and schedule != "constant":
                raise ValueError(
                    f"{name}_schedule={schedule!r} moves {name} towards {name}_end, which is unset, so {name} would "
                    f"stay at {getattr(self, name)}. Set --{name}_end, or --{name}_schedule constant."
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
        if self.hidden_state_loss is not None and self.hidden_state_loss not in HIDDEN_STATE_LOSSES:
            raise ValueError(
                f"hidden_state_loss must be one of {', '.join(HIDDEN_STATE_LOSSES)} (or unset), "
                f"got {self.hidden_state_loss!r}."
            )
        if self.attention_loss is not None and self.attention_loss not in ATTENTION_LOSSES:
            raise ValueError(
                f"attention_loss must be one of {', '.join(ATTENTION_LOSSES)} (or unset), got {self.attention_loss!r}."
            )

    def _check_loss_kwargs(self) -> None:
        """``loss_kwargs`` must be a JSON object of the loss's own keyword-only parameters that have no field."""
        kwargs = _json_object(self.loss_kwargs)
        accepted = loss_hyperparameters(self.distillation_loss)
        fields = {f.name for f in dataclasses.fields(self)}
        for name in kwargs:
            if name in fields:
                raise ValueError(f"loss_kwargs sets {name!r}, which is a field of its own: pass --{name} instead.")
            if name not in accepted:
                raise ValueError(
                    f"loss_kwargs sets {name!r}, but distillation_loss={self.distillation_loss!r} takes the "
                    f"keyword-only hyperparameters {accepted or 'none'}. Drop it, or add it to the loss's signature."
                )
        missing = [
            name for name in _required_hyperparameters(self.distillation_loss) if name not in fields | set(kwargs)
        ]
        if missing:
            raise ValueError(
                f"distillation_loss={self.distillation_loss!r} needs the hyperparameters {missing}, which have no "
                f"default: pass them with --loss_kwargs '{json.dumps(dict.fromkeys(missing, 1.0))}'."
            )


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


def _required_hyperparameters(loss: str) -> list[str]:
    """The loss's keyword-only parameters without a default."""
    parameters = inspect.signature(get_loss(loss)).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty]


def _json_object(value: str | dict | None) -> dict[str, Any]:
    """``loss_kwargs`` as a dict: a JSON object string (the flag) or a dict (Python); ``None`` is empty."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(f"loss_kwargs must be a JSON object such as '{{\"scale\": 2}}', got {value!r}.")
    return parsed


def parse_teacher_weights(
    weights: str | list[float] | tuple[float, ...] | None, count: int | None = None
) -> list[float] | None:
    """``"0.7,0.3"`` (or numbers) as weights normalised to sum 1; ``None`` stays ``None`` (equal weights), or
    ``count`` equal weights when ``count`` is given, which the values must then number."""
    if weights is None or weights == "":
        return None if count is None else [1.0 / count] * count
    if isinstance(weights, str):
        try:
            values = [float(w) for w in weights.split(",")]
        except ValueError:
            raise ValueError(
                f"teacher_weights must be comma-separated numbers such as '0.7,0.3', got {weights!r}."
            ) from None
    else:
        values = [float(w) for w in weights]
    if any(not (w >= 0 and math.isfinite(w)) for w in values) or sum(values) <= 0:
        raise ValueError(f"teacher_weights must be finite, >= 0 and not all 0, got {weights!r}.")
    if count is not None and len(values) != count:
        raise ValueError(
            f"teacher_weights has {len(values)} values for {count} teachers: give one weight per teacher, in "
            "the order of teacher_model (or of teacher_logits_columns)."
        )
    total = sum(values)
    return [w / total for w in values]


# The fields that define the method, in the order the summary lists them, with when `method_summary` shows them:
# "always"; "loss" when the chosen loss takes it; "set" when set (not None / False); "scheduled" with its schedule
# ("<schedule> to <end>") when not constant; "schedule" never on its own (shown with the value it moves); "with A B"
# when field A or B is set.
METHOD_FIELDS: dict[str, str] = {
    "distillation_loss": "always",
    "dkd_alpha": "loss",
    "dkd_beta": "loss",
    "dist_beta": "loss",
    "dist_gamma": "loss",
    "jsd_beta": "loss",
    "loss_kwargs": "set",
    "teacher_correction": "set",
    "logit_standardization": "set",
    "alpha": "scheduled",
    "alpha_schedule": "schedule",
    "alpha_end": "schedule",
    "temperature": "scheduled",
    "temperature_schedule": "schedule",
    "temperature_end": "schedule",
    "distillation_epochs": "set",
    "distillation_steps": "set",
    "two_stage_steps": "set",
    "two_stage_epochs": "set",
    "teacher_weights": "set",
    "teacher_logits_columns": "set",
    "self_distillation": "set",
    "hidden_state_loss": "set",
    "attention_loss": "set",
    "layer_map": "with hidden_state_loss attention_loss",
    "hidden_state_weight": "with hidden_state_loss",
    "attention_weight": "with attention_loss",
}
