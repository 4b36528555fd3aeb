"""The plan of a distillation run: every rule between the arguments and the run's objects, resolved once.

:class:`DistillationPlan` is made from the arguments, the student and the teacher before the first step (by
:class:`~hf_distill.DistillationTrainer`, or by a recipe that wants the rules checked before it loads data). It
builds the teacher, the objective (with its extra terms, such as intermediate-layer distillation) and the teacher
logits source, and resolves the rules that need two things:

- the student: a single-label classifier; its label names order every teacher logit;
- the teacher: label permutation, several teachers with the loss (and, in the loop, one vocabulary), a teacher that
  shares the student's weights, intermediate-layer losses (one teacher, run in the loop, projections not sharded);
- each dataset (:mod:`hf_distill.data.dataset_checks`): a logits column's label order (one per column across datasets;
  an unknown order beside a known other one is refused), top-k storage against every temperature the run trains at
  and the loss, stored logits or teacher-prefixed inputs (another tokenizer) with an intermediate-layer term, a
  dataset with neither logits nor a teacher, and labels for every alpha the schedule reaches and for the methods
  that read the true class (``dkd``, ``teacher_correction="swap"``);
- the run's length (:meth:`check_run`, when training starts): KD-then-CE and two-stage switches inside the run.

Arguments changed after the plan was made are checked (and the objective rebuilt) once more when training starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState

from .data.dataset_checks import ColumnFindings, DatasetFindings, inspect_dataset
from .data.labels import label_names, teacher_to_student_permutation
from .data.top_k import check_top_k_temperature, indices_column
from .losses import DistillationObjective
from .methods.intermediate import IntermediateDistillation
from .methods.schedules import TwoStageCallback
from .teachers.ensemble import TeacherEnsemble, build_teacher, check_ensemble_loss
from .teachers.loading import unwrap
from .teachers.sources import InLoopTeacher, StoredColumns, TeacherLogitsSource
from .training_args import DistillationTrainingArguments, parse_teacher_weights


class DistillationPlan:
    """The resolved run: ``student_labels``, ``teacher`` (built, or ``None``), ``objective``, the logits columns'
    label permutations and findings; ``alpha_range`` ``"open"`` requires 0 < alpha < 1 throughout (two heads, DeiT)."""

    def __init__(
        self,
        args: DistillationTrainingArguments,
        student: torch.nn.Module,
        teacher_model: Any = None,
        *,
        alpha_range: str = "closed",
        sharded: bool = False,
    ):
        self.args = args
        self.alpha_range = alpha_range
        self._check_arguments()
        config = unwrap(student).config
        if config.problem_type in ("regression", "multi_label_classification") or config.num_labels < 2:
            raise ValueError(
                f"DistillationTrainer distils single-label classifiers; the student is set up for "
                f"problem_type={config.problem_type!r} with num_labels={config.num_labels}."
            )
        self.student_labels = label_names(config)
        self.teacher = build_teacher(teacher_model, student, args, self.student_labels)
        self.teacher_permutation: list[int] | None = None
        if self.teacher is not None:
            _check_separate(self.teacher, student)
            if not isinstance(self.teacher, TeacherEnsemble):  # an ensemble orders each member's classes
                teacher_labels = label_names(unwrap(self.teacher).config)
                self.teacher_permutation = teacher_to_student_permutation(teacher_labels, self.student_labels)
        self._check_teachers()
        columns = args.logits_columns
        self.column_weights = parse_teacher_weights(args.teacher_weights, len(columns)) if len(columns) > 1 else None
        self.terms = self._terms(student, sharded)
        self.objective = DistillationObjective.from_args(args, self.terms)
        self.columns: dict[str, ColumnFindings] = {}
        self.permutations: dict[str, list[int] | None] = {}
        self._unknown_order: set[str] = set()
        self._findings: list[tuple[DatasetFindings, bool]] = []
        self._inspected: dict[Any, tuple[Any, DatasetFindings | None]] = {}  # keeps each dataset (and its id) alive
        self.checked_columns: set[str] = set()  # stored columns whose every training value was checked finite

    # ---- the objects the trainer runs ----

    def callbacks(self, student: torch.nn.Module, accelerator: Any) -> list[TrainerCallback]:
        """Two-stage training, the objective terms' callbacks, and the run-length check at the start of training."""
        args = self.args
        two_stage = args.two_stage_steps is not None or args.two_stage_epochs is not None
        return [
            *([TwoStageCallback(student, args)] if two_stage else []),
            *self.objective.callbacks(accelerator),
            _CheckRun(self),
        ]

    def source(self, accelerator: Any, on_teacher_logits: Any = None) -> TeacherLogitsSource:
        """Where each batch's teacher logits come from (made once; stored permutations resolved per column);
        ``on_teacher_logits`` sees each training batch's teacher logits (the finite guard) that were not all checked
        before training (:attr:`checked_columns`)."""
        args = self.args
        stored = StoredColumns(
            args.logits_columns,
            self.permutations,
            len(self.student_labels),
            self.column_weights,
            indices_column(args.teacher_logits_column),
            on_teacher_logits,
            self.checked_columns,
        )
        teacher = None
        if self.teacher is not None:
            teacher = InLoopTeacher(
                self.teacher,
                self.teacher_permutation,
                accelerator,
                args.teacher_input_prefix,
                args.teacher_dtype,
                args.teacher_torch_compile,
                self.objective.output_flags,
                on_teacher_logits,
            )
        missing = (
            f"The batch has no {args.teacher_logits_column!r} column and the trainer has no teacher_model. Pass "
            "teacher_model=... to DistillationTrainer, or add the column with "
            "hf_distill.precompute_teacher_logits(teacher, dataset)."
        )
        return TeacherLogitsSource(stored, teacher, missing)

    # ---- datasets ----

    def add_dataset(self, dataset: Any, training: bool = False) -> DatasetFindings | None:
        """Check ``dataset`` (once per dataset) and resolve its logits columns into the plan; returns the findings.
        The training dataset's findings also say which stored columns its batches need no finite check for."""
        key = (getattr(dataset, "_fingerprint", None) or id(dataset), training)
        if key not in self._inspected:
            args = self.args
            findings = inspect_dataset(dataset, args.logits_columns, self.student_labels, args.teacher_input_prefix)
            if findings is not None:
                self._resolve_columns(findings)
                self._check_dataset(findings, training)
                self._findings.append((findings, training))
            self._inspected[key] = (dataset, findings)
        findings = self._inspected[key][1]
        if training:
            self.checked_columns.clear()
            if findings is not None and findings.logits_checked:
                self.checked_columns.update(findings.columns)
        return findings

    def _resolve_columns(self, findings: DatasetFindings) -> None:
        """One label order per logits column across datasets, as the permutation into the student's order."""
        for column, found in findings.columns.items():
            if found.labels is None:
                self._unknown_order.add(column)
            known = self.columns.setdefault(column, found)
            if found.labels is not None and known.labels is None:
                self.columns[column] = known = found
            elif found.labels is not None and found.labels != known.labels:
                raise ValueError(
                    f"The datasets' {column!r} columns follow different label orders: {known.labels} and "
                    f"{found.labels}. Precompute all splits with the same teacher."
                )
            labels = known.labels
            permutation = None if labels is None else teacher_to_student_permutation(labels, self.student_labels)
            if permutation is not None and column in self._unknown_order:
                raise ValueError(
                    f"Column {column!r} of one dataset follows the teacher's label order {labels}, not the student's "
                    f"{self.student_labels}, but another dataset's {column!r} (a plain torch Dataset, or a column "
                    "without provenance) does not say its order, so its logits cannot be put in the student's order. "
                    "Pass datasets made by precompute_teacher_logits (a datasets.Dataset, or a Subset / ConcatDataset "
                    "of them), or precompute every split with a teacher of the student's label order."
                )
            self.permutations[column] = permutation

    def _check_dataset(self, findings: DatasetFindings, training: bool) -> None:
        """Rules between the arguments, the teacher and one dataset's findings."""
        args = self.args
        stored = list(findings.columns)
        if not stored and self.teacher is None:
            raise ValueError(
                f"The dataset has no {' / '.join(map(repr, args.logits_columns))} column and the trainer has no "
                "teacher_model. Pass teacher_model=..., or add the column with "
                "hf_distill.precompute_teacher_logits(teacher, dataset)."
            )
        if stored and self.terms:
            _refuse_stored_with_in_loop_terms(stored)
        if findings.teacher_inputs and self.terms:
            raise ValueError(
                f"hidden_state_loss / attention_loss compare the student's and the teacher's layers token by token, "
                f"but the dataset holds inputs for the teacher alone ({', '.join(findings.teacher_inputs)}: a teacher "
                "with another tokenizer), whose token positions do not correspond to the student's. Use a teacher "
                "with the student's tokenizer (and drop the teacher-prefixed inputs), or unset hidden_state_loss and "
                "attention_loss."
            )
        end = args.temperature if args.temperature_end is None else args.temperature_end
        for column, found in findings.columns.items():
            if found.top_k is not None:
                check_top_k_temperature(column, found.temperature, found.top_k, args.temperature, end)
                self._check_top_k_objective(column, found.top_k)
        if training and findings.has_labels is False:
            reason = self._label_need()
            if reason:
                raise ValueError(
                    f"The training dataset has no labels (no `labels` / `label` column, or only -100), but {reason}, "
                    "which weighs a hard-label cross-entropy. Add the labels, or train by pure distillation (alpha=0, "
                    "no alpha_schedule, no distillation_steps / distillation_epochs)."
                )
            method = self._method_needing_labels()
            if method:
                raise ValueError(
                    f"The training dataset has no labels (no `labels` / `label` column, or only -100), but {method} "
                    "needs the true class of a row; on unlabelled rows it falls back to plain KD, so the whole run "
                    "would silently train plain KD. Add the labels (rows without one may stay -100), or use "
                    "distillation_loss='kl' without teacher_correction."
                )

    def _check_top_k_objective(self, column: str, top_k: int) -> None:
        """A top-k column holds K logits and a rest bucket: only ``kl`` (over the buckets) and ``hard`` (the top-1)
        read it; losses and corrections that need every logit are refused here rather than at the first batch."""
        objective = self.objective
        needs_all = [
            *([f"distillation_loss={objective.loss!r}"] if objective.loss not in ("kl", "hard") else []),
            *([f"teacher_correction={objective.teacher_correction!r}"] if objective.teacher_correction else []),
            *(["logit_standardization"] if objective.logit_standardization else []),
        ]
        if needs_all:
            raise ValueError(
                f"{' and '.join(needs_all)} need(s) every teacher logit, but column {column!r} stores the top-{top_k} "
                "logits and a rest bucket. Use distillation_loss='kl' or 'hard' without teacher_correction / "
                "logit_standardization, or precompute the full logits (top_k=None)."
            )

    def _label_need(self) -> str | None:
        """Why the run needs labels at some step, naming the setting, or ``None`` (pure distillation throughout)."""
        args = self.args
        if args.distillation_steps is not None or args.distillation_epochs is not None:
            switch = "distillation_steps" if args.distillation_steps is not None else "distillation_epochs"
            return f"{switch} switches to training on the labels alone (alpha=1) after the KD phase"
        if args.alpha_schedule != "constant" and args.alpha_end:
            return (
                f"alpha_schedule={args.alpha_schedule!r} moves alpha from {args.alpha} to alpha_end={args.alpha_end}"
            )
        if args.alpha > 0:
            return f"alpha={args.alpha}"
        return None

    def _method_needing_labels(self) -> str | None:
        """The loss or teacher correction that reads each row's true class (naming the setting), or ``None``."""
        args = self.args
        if args.distillation_loss == "dkd":
            return "distillation_loss='dkd' (decoupled KD splits the target class from the others)"
        if args.teacher_correction == "swap":
            return "teacher_correction='swap' (it swaps the teacher's top class with the true class)"
        return None

    # ---- arguments and run length ----

    def _check_arguments(self) -> None:
        """The arguments' own checks, and those of this trainer (``alpha_range``), on the current values."""
        args = self.args
        args.validate()
        if self.alpha_range == "open":
            for name in ("alpha", "alpha_end"):
                value = getattr(args, name)
                if value is not None and not 0.0 < value < 1.0:
                    raise ValueError(
                        f"{name}={value} leaves one DeiT head untrained: alpha weighs the class head's CE and "
                        "1 - alpha the distillation head's loss. Use 0 < alpha < 1 (DeiT uses 0.5) throughout, "
                        "alpha_end included."
                    )
        self._snapshot = _values(args)

    def _check_teachers(self) -> None:
        """Several teachers (in the loop or as columns) with the loss and their weights."""
        args, columns = self.args, self.args.logits_columns
        several = isinstance(self.teacher, TeacherEnsemble) or len(columns) > 1
        if several:
            check_ensemble_loss(args.distillation_loss)
        if isinstance(self.teacher, TeacherEnsemble):
            _check_shared_vocabulary(self.teacher)
        if args.teacher_weights and not several:
            raise ValueError(
                f"teacher_weights={args.teacher_weights!r} weighs several teachers, but there is one teacher (logits "
                f"column {columns[0]!r}). Name one column per teacher with --teacher_logits_columns a,b (or pass "
                "several teacher models), or drop teacher_weights."
            )

    def refresh(self) -> None:
        """Re-resolve the rules when the arguments changed since the plan was made (``args.temperature = 4``).

        Fields the teacher, the logits source or the objective's terms were built from cannot change afterwards."""
        values = _values(self.args)
        if values == self._snapshot:
            return
        changed = [name for name in _BUILT_FROM if values[name] != self._snapshot[name]]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} changed after the DistillationTrainer was built, which set up its teacher, "
                "logits columns and objective terms from the earlier values. Build the trainer again with the new "
                "arguments."
            )
        self._check_arguments()
        self._check_teachers()
        self.objective = DistillationObjective.from_args(self.args, self.objective.terms)
        for findings, training in self._findings:
            self._check_dataset(findings, training)

    def check_run(self, max_steps: int, steps_per_epoch: int | None) -> None:
        """Rules between the arguments and the run's length: ``max_steps`` optimizer steps of which
        ``steps_per_epoch`` make an epoch (``None``: a stream, of unknown epoch length)."""
        args = self.args
        steps = max_steps
        epochs = round(max_steps / steps_per_epoch, 4) if steps_per_epoch else None
        switches = (
            ("distillation_steps", "distillation_epochs", "KD then CE never switches to CE"),
            ("two_stage_steps", "two_stage_epochs", "two-stage training never leaves stage 1 (the head alone)"),
        )
        for step_name, epoch_name, effect in switches:
            value = getattr(args, step_name)
            if value is not None and steps and value >= steps:
                raise ValueError(
                    f"{step_name}={value} is not below the run's {steps} optimizer steps, so {effect}. Set "
                    f"{step_name} below {steps}, or train longer."
                )
            value = getattr(args, epoch_name)
            if value is not None and epochs and value >= epochs:
                raise ValueError(
                    f"{epoch_name}={value} is not below the run's {epochs} epochs, so {effect}. Set {epoch_name} "
                    f"below {epochs}, or train longer."
                )

    # ---- construction helpers ----

    def _terms(self, student: torch.nn.Module, sharded: bool) -> list[IntermediateDistillation]:
        """The objective's extra terms the arguments switch on (intermediate layers), checked against the teacher."""
        args = self.args
        if args.hidden_state_loss is None and args.attention_loss is None:
            return []
        if isinstance(self.teacher, TeacherEnsemble):
            raise ValueError(
                "hidden_state_loss / attention_loss distil one teacher's layers; several teachers were given. "
                "Pass a single teacher_model, or unset hidden_state_loss and attention_loss."
            )
        if self.teacher is None:
            _refuse_stored_with_in_loop_terms([])
        term = IntermediateDistillation.from_models(unwrap(student), unwrap(self.teacher), args)
        if term.projections is not None and sharded:
            raise ValueError(
                "hidden_state_loss between models of different widths trains projections beside the student, which "
                "DeepSpeed and FSDP do not optimize. Run under DDP or one device, or use a student of the teacher's "
                "hidden_size (no projection)."
            )
        return [term.to(args.device)]


class _CheckRun(TrainerCallback):
    """Resolves the run-length rules when training starts (``max_steps`` is known), before the first step."""

    def __init__(self, plan: DistillationPlan):
        self.plan = plan

    def on_train_begin(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        loader = kwargs.get("train_dataloader")
        try:
            batches = len(loader)
        except TypeError:  # a stream: epochs have no known length
            batches = None
        ga = args.gradient_accumulation_steps
        steps_per_epoch = max(batches // ga + int(batches % ga > 0), 1) if batches else None  # as Trainer counts
        self.plan.check_run(state.max_steps, steps_per_epoch)


# Fields that the plan's built objects (teacher, logits source, objective terms) hold.
_BUILT_FROM = (
    "teacher_logits_column",
    "teacher_logits_columns",
    "teacher_weights",
    "teacher_input_prefix",
    "teacher_dtype",
    "teacher_torch_compile",
    "self_distillation",
    "hidden_state_loss",
    "attention_loss",
    "layer_map",
    "hidden_state_weight",
    "attention_weight",
    "two_stage_steps",
    "two_stage_epochs",
)


def _values(args: DistillationTrainingArguments) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}


def _check_separate(teacher: torch.nn.Module, student: torch.nn.Module) -> None:
    student_params = {id(p) for p in student.parameters()}
    if any(id(p) in student_params for p in teacher.parameters()):
        raise ValueError(
            "The teacher shares parameters with the student, so it would be trained and saved with it. "
            "Pass a separate teacher (for example copy.deepcopy(model))."
        )


def _check_shared_vocabulary(ensemble: TeacherEnsemble) -> None:
    """Teachers run in the loop read the same batch of token ids, so they must share a tokenizer (one vocabulary)."""
    sizes = {
        name: getattr(unwrap(m).config, "vocab_size", None)
        for name, m in zip(ensemble.names, ensemble.members, strict=True)
    }
    if len({size for size in sizes.values() if size is not None}) > 1:
        listed = ", ".join(f"{name!r} ({size})" for name, size in sizes.items())
        raise ValueError(
            f"The teachers have different vocabularies: {listed} tokens. Teachers run in the loop read the same "
            "token ids, so they must share a tokenizer. Precompute each teacher's logits on the data tokenized for "
            "it (precompute_teacher_logits(teacher, dataset, column='logits_a'), ...) and train on the columns with "
            "--teacher_logits_columns logits_a,logits_b, or use teachers of one tokenizer."
        )


def _refuse_stored_with_in_loop_terms(stored: list[str]) -> None:
    raise ValueError(
        "hidden_state_loss / attention_loss need the teacher's hidden states, which are never precomputed: pass "
        f"teacher_model=... and a dataset without precomputed teacher logits (found {stored or 'no teacher'}; "
        "drop the column, or run without --precompute_teacher_logits), or unset hidden_state_loss and "
        "attention_loss."
    )
