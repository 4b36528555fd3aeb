"""`DistillationTrainer`: a `transformers.Trainer` that trains a student on a teacher's logits."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import torch
from transformers import EvalPrediction, PreTrainedModel, Trainer
from transformers.modelcard import TrainingSummary
from transformers.utils import logging

from .compare import ComparisonReport
from .distributed import place_teacher
from .intermediate import (
    IntermediateDistillation,
    ProjectionGradients,
    check_in_batch_teacher,
    load_projections,
    save_projections,
)
from .labels import check_label_names, label_names, teacher_to_student_permutation
from .logit_columns import LogitColumns, with_logit_columns
from .losses import IGNORE_INDEX, DistillationObjective, LossParts, TopKLogits
from .metrics import classification_metrics
from .model_card import StudentRun, distillation_model_card
from .provenance import read_logits_info
from .schedules import ObjectiveSchedule, TwoStageCallback, objective_schedule
from .streaming import first_rows
from .teacher import forward_input_names, model_name, teacher_inputs, unwrap
from .teachers import TeacherEnsemble, build_teacher, combine_teacher_logits, parse_teacher_weights
from .top_k import check_top_k_column, indices_column
from .training_args import DistillationTrainingArguments

logger = logging.get_logger(__name__)

# Rows of a streamed dataset read (and, for a lazily precomputed column, run through the teacher) to check it.
STREAM_CHECK_ROWS = 64
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DistillationTrainer(Trainer):
    """Trains a student on ``alpha * CE(student, labels) + (1 - alpha) * distill(student, teacher)``.

    Teacher logits come from the batch's ``args.teacher_logits_column`` when present (see
    :func:`~hf_distill.precompute_teacher_logits`), else from a forward pass of ``teacher_model``: a model, or a path /
    Hub id loaded with the student's Auto class. The teacher stays frozen in eval mode, is never part of the student's
    checkpoints, and runs under ``no_grad`` and the accelerator's autocast, in ``args.teacher_dtype``. Batch keys
    starting with ``args.teacher_input_prefix`` feed the teacher (prefix stripped), for a teacher that tokenizes or
    preprocesses differently from the student. A top-k column (``precompute_teacher_logits(..., top_k=K)``) is read with
    its ``<column>_indices`` column and trained with :func:`~hf_distill.losses.top_k_kl_loss`.

    The loss is ``self.objective`` (:class:`~hf_distill.losses.DistillationObjective`, configured from the arguments:
    loss, hyperparameters, teacher corrections), called with the scheduled alpha and temperature of each step (see
    :mod:`hf_distill.schedules`); in the CE phase of "KD then CE" the teacher is not run during training.

    Logs every loss part (``loss_ce``, ``loss_kd``, ...) and the ``alpha`` and ``temperature`` of the last step beside
    ``loss``, and ``eval_loss_ce``, ``eval_loss_kd`` and ``eval_agreement``
    (top-1 agreement with the teacher) in evaluation, plus the teacher's own metrics (``eval_teacher_accuracy``, ...:
    ``compute_metrics``, or accuracy and macro-F1, on the teacher logits the loss already used), computed once per
    evaluation set. ``create_model_card`` (and so ``push_to_hub``) writes a distillation model card.
    """

    _tag_names = ["knowledge-distillation", "hf_distill"]
    # `training_step` divides the loss by the accumulation steps; `compute_loss` pre-scales the CE part so that it is
    # weighed by the labelled examples of the whole accumulated batch (see `_weigh_for_accumulation`).
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel | torch.nn.Module | None = None,
        args: DistillationTrainingArguments | None = None,
        teacher_model: PreTrainedModel | torch.nn.Module | str | list | dict | None = None,
        **kwargs: Any,
    ):
        if args is None:
            args = DistillationTrainingArguments(output_dir="trainer_output")
        if not isinstance(args, DistillationTrainingArguments):
            raise TypeError(
                f"DistillationTrainer needs DistillationTrainingArguments, got {type(args).__name__}. "
                "Build them with DistillationTrainingArguments(**your_args.to_dict()) plus alpha/temperature."
            )
        args.validate()
        super().__init__(model=model, args=args, **kwargs)
        # Have Trainer count the labelled examples of each accumulated batch (`num_items_in_batch`) for the CE weighting.
        self.model_accepts_loss_kwargs = True
        config = unwrap(self.model).config
        if config.problem_type in ("regression", "multi_label_classification") or config.num_labels < 2:
            raise ValueError(
                f"DistillationTrainer distils single-label classifiers; the student is set up for "
                f"problem_type={config.problem_type!r} with num_labels={config.num_labels}."
            )
        self.student_labels = label_names(config)
        self._last_schedule: ObjectiveSchedule | None = None
        if args.two_stage_steps is not None or args.two_stage_epochs is not None:
            self.add_callback(TwoStageCallback(self.model, args))
        self.teacher_model = build_teacher(teacher_model, self.model, args, self.student_labels)
        self._teacher_permutation: list[int] | None = None
        if self.teacher_model is not None:
            self._check_teacher_is_separate()
            if not isinstance(self.teacher_model, TeacherEnsemble):  # an ensemble orders each member's classes
                teacher_labels = label_names(unwrap(self.teacher_model).config)
                self._teacher_permutation = teacher_to_student_permutation(teacher_labels, self.student_labels)
        columns = args.logits_columns
        self._column_weights = parse_teacher_weights(args.teacher_weights, len(columns)) if len(columns) > 1 else None
        self.intermediate = self._intermediate_distillation()
        self.objective = DistillationObjective.from_args(args, terms=[self.intermediate] if self.intermediate else [])
        self._placed: tuple[torch.nn.Module, list[str]] | None = None
        self._teacher_checked = False
        self._column_labels: dict[str, list[str]] = {}
        self._column_permutations: dict[str, list[int] | None] = {}
        self._checked_datasets: set[str] = set()
        self._index_cache: dict[tuple, torch.Tensor] = {}
        self._metrics: dict[str, defaultdict[str, list]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._teacher_finite: list[torch.Tensor] = []
        self._teacher_eval_metrics: dict[str, dict[str, float]] = {}
        self._eval_fingerprint: str | None = None
        self._teacher_eval_outputs: list[tuple[torch.Tensor, torch.Tensor]] | None = None

        eval_sets = self.eval_dataset.values() if isinstance(self.eval_dataset, dict) else [self.eval_dataset]
        for dataset in [self.train_dataset, *eval_sets]:
            if dataset is not None:
                self._check_dataset(dataset)
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(self._tag_names)

    # ---- the loss ----

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        args = self.args
        inputs = dict(inputs)
        stored_logits = [inputs.pop(column, None) for column in args.logits_columns]
        stored_indices = inputs.pop(self._indices_column, None)
        labels = inputs.pop("labels", None)
        if labels is not None and labels.is_floating_point():  # a dtype check: no device sync
            raise TypeError(
                f"The batch's labels are {labels.dtype}, but they must be integer class ids (or -100) of the student's "
                f"classes {self.student_labels}. Convert the label column to integers."
            )
        student_inputs = {k: v for k, v in inputs.items() if not k.startswith(args.teacher_input_prefix)}
        schedule = objective_schedule(args, self.state)
        teacher_logits = None
        # The teacher runs first: its activations are freed before the student's autograd graph is built.
        teacher_outputs = None
        if schedule.distil or not model.training:
            if stored_logits[0] is not None:
                teacher_logits = self._stored_teacher_logits(stored_logits, stored_indices, schedule.temperature)
            else:
                teacher_logits, teacher_outputs = self._teacher_forward(inputs, schedule.temperature)
        flags = self.objective.output_flags
        outputs = model(**student_inputs, **flags)
        parts = self.loss_from_outputs(outputs, teacher_logits, labels, schedule, teacher_outputs, student_inputs)
        if flags:  # hidden states and attention maps must not become predictions
            outputs = type(outputs)(**{k: v for k, v in outputs.items() if k not in ("hidden_states", "attentions")})
        if model.training:
            parts = self._weigh_for_accumulation(parts, labels, num_items_in_batch)
        self._record(parts, outputs.logits, teacher_logits, train=model.training)
        if model.training:
            self._last_schedule = schedule
        if self._teacher_eval_outputs is not None and labels is not None and not model.training:
            if isinstance(teacher_logits, TopKLogits):
                teacher_logits = teacher_logits.dense(len(self.student_labels), schedule.temperature)
            self._teacher_eval_outputs.append(self.accelerator.gather_for_metrics((teacher_logits.detach(), labels)))
        return (parts.loss, outputs) if return_outputs else parts.loss

    def _weigh_for_accumulation(
        self, parts: LossParts, labels: torch.Tensor | None, num_items_in_batch: torch.Tensor | int | None
    ) -> LossParts:
        """Rescale the CE part so that, after `training_step` divides by the accumulation steps, it is the CE summed
        over this micro-batch divided by the labelled examples of the whole accumulated batch (``num_items_in_batch``,
        counted over every process with ``average_tokens_across_devices``), as Trainer does for its own losses. The
        distillation term stays a per-example mean. bs 8 x GA 1 and bs 4 x GA 2 then give the same gradients however
        the ``-100`` labels are spread. The rescaled CE also logs as the exact mean over labelled examples.
        """
        if parts.ce is None or labels is None or num_items_in_batch is None:
            return parts
        processes = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
        labelled = (labels != IGNORE_INDEX).sum()
        total = torch.as_tensor(num_items_in_batch, device=labelled.device).clamp(min=1)
        scale = labelled * self.current_gradient_accumulation_steps * processes / total
        return LossParts({**parts.parts, "loss_ce": parts.ce * scale}, parts.weights)

    def loss_from_outputs(
        self,
        outputs: Any,
        teacher_logits: torch.Tensor | TopKLogits | None,
        labels: torch.Tensor | None,
        schedule: ObjectiveSchedule,
        teacher_outputs: Any = None,
        inputs: dict[str, Any] | None = None,
    ) -> LossParts:
        """The loss parts from the student's outputs (and, for the objective's extra terms, the teacher's outputs and
        the student's inputs); subclasses override it for students with several heads."""
        return self.objective(
            outputs.logits,
            teacher_logits,
            labels,
            alpha=schedule.alpha,
            temperature=schedule.temperature,
            student_outputs=outputs,
            teacher_outputs=teacher_outputs,
            inputs=inputs,
        )

    # ---- teacher logits ----

    def _teacher_forward(self, inputs: dict[str, Any], temperature: float) -> tuple[torch.Tensor, Any]:
        """The teacher's logits in the student's label order (several teachers: combined at ``temperature``), and its
        whole output (hidden states for intermediate-layer distillation)."""
        if self.teacher_model is None:
            raise ValueError(
                f"The batch has no {self.args.teacher_logits_column!r} column and the trainer has no teacher_model. "
                "Pass teacher_model=... to DistillationTrainer, or add the column with "
                "hf_distill.precompute_teacher_logits(teacher, dataset)."
            )
        teacher, input_names = self._placed_teacher()
        feed = teacher_inputs(inputs, self.args.teacher_input_prefix, input_names)
        dtype = _TORCH_DTYPES.get(self.args.teacher_dtype)
        if dtype is not None:  # pixel values must match half-precision weights when there is no autocast
            feed = {k: v.to(dtype) if v.is_floating_point() else v for k, v in feed.items()}
        if isinstance(self.teacher_model, TeacherEnsemble):
            feed["temperature"] = temperature
        feed.update(self.objective.output_flags)
        with torch.no_grad(), self.accelerator.autocast():
            outputs = teacher(**feed)
        logits = outputs.logits.float()
        if self.model.training:  # checked at logging and saving steps, without a device sync per step
            self._teacher_finite.append(torch.isfinite(logits).all())
        if not self._teacher_checked:
            if not torch.isfinite(logits).all():
                raise ValueError(
                    "The teacher produced NaN/inf logits on the first batch. Run it in float32 "
                    "(--teacher_dtype float32, no fp16) or check its weights."
                )
            self._teacher_checked = True
        return self._reorder(logits, self._teacher_permutation), outputs

    def _placed_teacher(self) -> tuple[torch.nn.Module, list[str]]:
        """The teacher placed beside the student (see :func:`hf_distill.distributed.place_teacher`), compiled with
        ``teacher_torch_compile``, and its input names, both set up on first use."""
        if self._placed is None:
            dtype = _TORCH_DTYPES.get(self.args.teacher_dtype)
            self.teacher_model = place_teacher(self.teacher_model, self.accelerator, dtype)
            runner = torch.compile(self.teacher_model) if self.args.teacher_torch_compile else self.teacher_model
            self._placed = (runner, forward_input_names(self.teacher_model))
        return self._placed

    @property
    def _indices_column(self) -> str:
        return indices_column(self.args.teacher_logits_column)

    def _stored_teacher_logits(
        self, stored: list[torch.Tensor], indices: torch.Tensor | None, temperature: float
    ) -> torch.Tensor | TopKLogits:
        """The logits of the precomputed column(s): several columns are combined at ``temperature`` as an ensemble."""
        columns = self.args.logits_columns
        if len(columns) > 1:
            logits = [self._column_logits(column, values) for column, values in zip(columns, stored, strict=True)]
            return combine_teacher_logits(logits, self._column_weights, temperature)
        logits = stored[0]
        if indices is not None:
            if logits.shape[-1] != indices.shape[-1] + 1:
                raise ValueError(
                    f"Column {self.args.teacher_logits_column!r} holds {logits.shape[-1]} values per example but "
                    f"{self._indices_column!r} holds {indices.shape[-1]} indices: top-k storage has K + 1 values "
                    "(the K logits and the rest bucket). Precompute them with precompute_teacher_logits(top_k=K)."
                )
            permutation = self._column_permutations.get(columns[0])
            return TopKLogits(logits.float(), self._remap(indices.long(), permutation))
        return self._column_logits(columns[0], logits)

    def _column_logits(self, column: str, logits: torch.Tensor | None) -> torch.Tensor:
        if logits is None:
            raise ValueError(f"The batch has no {column!r} column, but the other teacher logits columns are there.")
        if logits.shape[-1] != len(self.student_labels):
            raise ValueError(
                f"Column {column!r} holds {logits.shape[-1]} logits per example but the "
                f"student has {len(self.student_labels)} classes {self.student_labels}."
            )
        return self._reorder(logits.float(), self._column_permutations.get(column))

    def _reorder(self, logits: torch.Tensor, permutation: list[int] | None) -> torch.Tensor:
        if permutation is None:
            return logits
        key = (tuple(permutation), logits.device)
        if key not in self._index_cache:
            self._index_cache[key] = torch.tensor(permutation, device=logits.device)
        return logits.index_select(-1, self._index_cache[key])

    def _remap(self, indices: torch.Tensor, permutation: list[int] | None) -> torch.Tensor:
        """Teacher class indices to the student's label order (the inverse of ``permutation``)."""
        if permutation is None:
            return indices
        key = ("inverse", tuple(permutation), indices.device)
        if key not in self._index_cache:
            self._index_cache[key] = torch.argsort(torch.tensor(permutation, device=indices.device))
        return self._index_cache[key][indices]

    def _check_teacher_is_separate(self) -> None:
        student_params = {id(p) for p in self.model.parameters()}
        if any(id(p) in student_params for p in self.teacher_model.parameters()):
            raise ValueError(
                "The teacher shares parameters with the student, so it would be trained and saved with it. "
                "Pass a separate teacher (for example copy.deepcopy(model))."
            )

    # ---- intermediate layers ----

    def _intermediate_distillation(self) -> IntermediateDistillation | None:
        """The hidden-state / attention-map losses the arguments switch on, on the student's device."""
        args = self.args
        if args.hidden_state_loss is None and args.attention_loss is None:
            return None
        if isinstance(self.teacher_model, TeacherEnsemble):
            raise ValueError(
                "hidden_state_loss / attention_loss distil one teacher's layers; several teachers were given. "
                "Pass a single teacher_model, or unset hidden_state_loss and attention_loss."
            )
        check_in_batch_teacher(self.teacher_model, [], args.logits_columns)
        module = IntermediateDistillation.from_models(unwrap(self.model), unwrap(self.teacher_model), args)
        if module.projections is not None and (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            raise ValueError(
                "hidden_state_loss between models of different widths trains projections beside the student, which "
                "DeepSpeed and FSDP do not optimize. Run under DDP or one device, or use a student of the teacher's "
                "hidden_size (no projection)."
            )
        self.add_callback(ProjectionGradients(module, self.accelerator))
        return module.to(args.device)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """Trainer's optimizer, plus a parameter group for the intermediate-layer projections (trained with the
        student, never part of it)."""
        optimizer = super().create_optimizer(model)
        projections = list(self.intermediate.parameters()) if self.intermediate is not None else []
        optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if projections and not any(id(p) in optimized for p in projections):
            optimizer.add_param_group({"params": projections, "weight_decay": self.args.weight_decay})
        return optimizer

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """Checkpoints keep the projections beside the optimizer state, outside the student's weights."""
        super()._save_optimizer_and_scheduler(output_dir)
        if self.intermediate is not None and self.args.should_save:
            save_projections(self.intermediate, output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None and self.intermediate is not None:
            load_projections(self.intermediate, checkpoint)

    # ---- input checks ----

    def _check_dataset(self, dataset: Any) -> None:
        """Refuse a dataset whose teacher logits or labels do not fit the student, before any training step.

        A stream (`datasets.IterableDataset`) is judged by its first ``STREAM_CHECK_ROWS`` rows.
        """
        if isinstance(dataset, datasets.IterableDataset):
            dataset = first_rows(dataset, STREAM_CHECK_ROWS)
        if not isinstance(dataset, datasets.Dataset) or dataset._fingerprint in self._checked_datasets:
            return
        columns = self.args.logits_columns
        present = [column for column in columns if column in dataset.column_names]
        if self.intermediate is not None:
            check_in_batch_teacher(self.teacher_model, present, columns)
        if present and len(present) < len(columns):
            raise ValueError(
                f"The dataset has the teacher logits columns {present} but not {sorted(set(columns) - set(present))}: "
                "precompute every teacher's column, or list only those in teacher_logits_columns."
            )
        for column in present:
            self._check_logits_column(dataset, column)
        if not present and self.teacher_model is None:
            raise ValueError(
                f"The dataset has no {' / '.join(map(repr, columns))} column (its columns: {dataset.column_names}) and the "
                "trainer has no teacher_model. Pass teacher_model=..., or add the column with "
                "hf_distill.precompute_teacher_logits(teacher, dataset)."
            )
        for name in ("labels", "label"):
            if name in dataset.column_names:
                self._check_labels(dataset, name)
        self._checked_datasets.add(dataset._fingerprint)

    def _check_logits_column(self, dataset: datasets.Dataset, column: str) -> None:
        num_classes = len(self.student_labels)
        info = read_logits_info(dataset, column)
        top_k = None
        if self._indices_column in dataset.column_names:
            top_k = check_top_k_column(dataset, column, info, self.args.temperature)
        feature, values = dataset.features[column], dataset.data.column(column)
        while isinstance(getattr(feature, "feature", None), datasets.List):  # K logits rows per example (K views)
            feature, values = feature.feature, pc.list_flatten(values)
        width = getattr(feature, "length", -1)
        if width == -1 and len(values):
            lengths = pc.min_max(pc.list_value_length(values)).as_py()
            if lengths["min"] != lengths["max"] or values.null_count:
                raise ValueError(
                    f"Column {column!r} is ragged: its rows hold from {lengths['min']} to {lengths['max']} values "
                    f"(or none). Every row needs one logit per class; precompute it again with precompute_teacher_logits."
                )
            width = lengths["max"]
        if top_k is not None and width != top_k + 1:
            raise ValueError(
                f"Column {column!r} holds {width} values per example, but top-{top_k} storage has {top_k + 1} (the "
                f"top-{top_k} logits and the rest bucket). Precompute it again with precompute_teacher_logits."
            )
        if top_k is None and width != num_classes:
            raise ValueError(
                f"Column {column!r} holds {width} logits per example but the student has {num_classes} classes "
                f"{self.student_labels}. Precompute the logits with a teacher of the same labels."
            )
        values = pc.list_flatten(values).cast(pa.float32())
        if not pc.all(pc.is_finite(values)).as_py():
            raise ValueError(
                f"Column {column!r} contains NaN or inf teacher logits; precompute them again in float32."
            )
        if info is None:
            logger.warning(
                f"Column {column!r} carries no provenance (it was not made by precompute_teacher_logits); "
                "its logits are assumed to follow the student's label order."
            )
            return
        known = self._column_labels.get(column)
        if known is not None and info.labels != known:
            raise ValueError(
                f"The datasets' {column!r} columns follow different label orders: {known} and "
                f"{info.labels}. Precompute all splits with the same teacher."
            )
        self._column_permutations[column] = teacher_to_student_permutation(info.labels, self.student_labels)
        self._column_labels[column] = info.labels

    def _check_labels(self, dataset: datasets.Dataset, name: str) -> None:
        """Labels must be integer class ids in the student's range (or -100), and a `ClassLabel` column must name the
        student's classes in the student's order."""
        labels, feature = dataset.data.column(name), dataset.features[name]
        if not pa.types.is_integer(labels.type):
            raise TypeError(
                f"Column {name!r} holds {labels.type} values, but labels must be integer class ids (or -100 to ignore "
                f"a row) of the student's classes {self.student_labels}. Encode them with "
                f"dataset.cast_column({name!r}, ClassLabel(names=...)) or map them through model.config.label2id."
            )
        if labels.null_count:
            raise ValueError(
                f"Column {name!r} has {labels.null_count} missing labels; set them to -100 to ignore them."
            )
        if isinstance(feature, datasets.ClassLabel):
            check_label_names(feature.names, self.student_labels, name)
        num_classes = len(self.student_labels)
        out_of_range = pc.or_(
            pc.greater_equal(labels, num_classes), pc.and_(pc.less(labels, 0), pc.not_equal(labels, IGNORE_INDEX))
        )
        if pc.any(out_of_range).as_py():
            bounds = pc.min_max(labels).as_py()
            raise ValueError(
                f"Column {name!r} has labels from {bounds['min']} to {bounds['max']}, but the student has "
                f"{num_classes} classes {self.student_labels}: labels must be in [0, {num_classes}) or -100. "
                "Build the student with num_labels / id2label matching the data."
            )

    def _remove_unused_columns(
        self, dataset: datasets.Dataset, description: str | None = None
    ) -> datasets.Dataset | LogitColumns:
        """Checks ``dataset``, drops unused columns, and reads the stored logits in batches (:class:`LogitColumns`)."""
        self._check_dataset(dataset)
        dataset = super()._remove_unused_columns(dataset, description)
        return with_logit_columns(dataset, [self.args.teacher_logits_column, self._indices_column])

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the logits column and the teacher-prefixed inputs through ``remove_unused_columns``."""
        if self._signature_columns is None:
            super()._set_signature_columns_if_needed()
            prefix = self.args.teacher_input_prefix
            teacher_names = forward_input_names(self.teacher_model or self.model)
            stored = [*self.args.logits_columns, self._indices_column]
            self._signature_columns += [*stored, *(prefix + n for n in teacher_names)]

    # ---- evaluation ----

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        """Unlabelled batches: the distillation loss when ``alpha=0``, else plain predictions of the student."""
        if self.label_names and all(inputs.get(name) is not None for name in self.label_names):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            if self.args.alpha > 0:
                student_inputs = {k: v for k, v in inputs.items() if not self._is_teacher_key(k)}
                loss, logits = None, model(**student_inputs).logits
            else:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
                loss, logits = loss.detach(), outputs.logits
        return loss, (None if prediction_loss_only else logits.detach()), None

    def _is_teacher_key(self, key: str) -> bool:
        return key in self.args.logits_columns or key.startswith(self.args.teacher_input_prefix)

    def evaluation_loop(
        self,
        dataloader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ):
        key, self._eval_fingerprint = self._eval_fingerprint, None
        collect = key is not None and key not in self._teacher_eval_metrics
        self._teacher_eval_outputs = [] if collect else None
        try:
            output = super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        finally:
            teacher_outputs, self._teacher_eval_outputs = self._teacher_eval_outputs, None
        if collect and teacher_outputs:
            self._teacher_eval_metrics[key] = self._teacher_metrics(teacher_outputs)
        output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in self._pop_metrics("eval").items()})
        teacher_metrics = self._teacher_eval_metrics.get(key, {})
        output.metrics.update({f"{metric_key_prefix}_teacher_{k}": v for k, v in teacher_metrics.items()})
        return output

    def get_eval_dataloader(self, eval_dataset: str | datasets.Dataset | None = None):
        """Remembers which evaluation set runs, so that the teacher's metrics are computed once per set."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, str):
            dataset = self.eval_dataset[dataset]
        self._eval_fingerprint = dataset._fingerprint if isinstance(dataset, datasets.Dataset) else None
        return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset: datasets.Dataset):
        """As :meth:`get_eval_dataloader`: ``predict`` on a labelled set reports the teacher's metrics too."""
        self._eval_fingerprint = test_dataset._fingerprint if isinstance(test_dataset, datasets.Dataset) else None
        return super().get_test_dataloader(test_dataset)

    def _teacher_metrics(self, outputs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """``compute_metrics`` (or accuracy and macro-F1) of the teacher logits gathered during evaluation."""
        logits = torch.cat([logits for logits, _ in outputs])
        labels = torch.cat([labels for _, labels in outputs])
        if self.compute_metrics is None or self.args.batch_eval_metrics:
            return classification_metrics(logits.cpu().numpy(), labels.cpu().numpy())
        if self.preprocess_logits_for_metrics is not None:
            logits = self.preprocess_logits_for_metrics(logits, labels)
        prediction = EvalPrediction(predictions=logits.cpu().numpy(), label_ids=labels.cpu().numpy())
        return dict(self.compute_metrics(prediction))

    # ---- model card ----

    # Settings of the method beyond DistillationTrainingArguments and a paragraph on it, for the model card;
    # subclasses add theirs (see DeiTDistillationTrainer).
    method_description: str | None = None

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
        teacher_model_name: str | None = None,
        comparison: ComparisonReport | str | None = None,
        reproduce_command: str | None = None,
        method: dict[str, Any] | None = None,
    ) -> None:
        """Write ``README.md`` in ``output_dir``: a distillation card (``push_to_hub(**kwargs)`` passes kwargs here).

        Takes Trainer's arguments plus ``teacher_model_name`` (default: the teacher's name or path, or the one
        recorded with precomputed logits), ``comparison`` (a :class:`~hf_distill.compare.ComparisonReport` or its JSON
        path, for the speed and size columns), ``reproduce_command`` (default: this command line, tokens removed) and
        ``method`` (further settings of the method to record, such as cached views or augmentation).
        See :func:`hf_distill.model_card.distillation_model_card`.
        """
        if not self.is_world_process_zero():
            return
        summary = TrainingSummary.from_trainer(
            self,
            language=language,
            license=license,
            tags=[tags] if isinstance(tags, str) else tags,
            model_name=model_name,
            finetuned_from=finetuned_from,
            tasks=tasks,
            dataset_tags=dataset_tags,
            dataset=dataset,
            dataset_args=dataset_args,
        )
        teacher, teacher_parameters = self._teacher_record()
        column = self.args.teacher_logits_column
        run = StudentRun(
            summary=summary,
            student=self.accelerator.unwrap_model(self.model),
            args=self.args,
            teacher=teacher_model_name or teacher,
            teacher_parameters=teacher_parameters,
            teacher_logits_source=(
                "computed on the fly by the teacher"
                if self.teacher_model is not None
                else f"precomputed once and read from the dataset column `{column}`"
            ),
            log_history=self.state.log_history,
            repo=self.hub_model_id or self.args.output_dir,  # the Hub repo once one is set up for pushing
            method=method or {},
            method_description=self.method_description,
        )
        card = distillation_model_card(run, comparison=comparison, reproduce_command=reproduce_command)
        card.save(os.path.join(self.args.output_dir, "README.md"))

    def _teacher_record(self) -> tuple[str, int | None]:
        """The teacher's name or path and parameter count; for precomputed logits, those recorded with the column(s)."""
        if self.teacher_model is not None:
            return model_name(self.teacher_model), sum(p.numel() for p in self.teacher_model.parameters())
        sets = self.eval_dataset.values() if isinstance(self.eval_dataset, dict) else [self.eval_dataset]
        for dataset in [self.train_dataset, *sets]:
            if isinstance(dataset, datasets.Dataset):  # several columns: the teachers joined by " + "
                infos = [read_logits_info(dataset, column) for column in self.args.logits_columns]
                if all(info is not None for info in infos):
                    sizes = [info.teacher_parameters for info in infos]
                    return " + ".join(info.teacher for info in infos), None if None in sizes else sum(sizes)
        return "unknown", None

    # ---- logging ----

    def _record(
        self,
        parts: LossParts,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | TopKLogits | None,
        train: bool,
    ) -> None:
        """Keep batch means and sizes; weighting them waits for ``log`` so that a training step adds no tensor op."""
        n = student_logits.shape[0]
        metrics = self._metrics["train" if train else "eval"]
        for name, value in parts.parts.items():
            metrics[name].append((value.detach(), n))
        if not train and teacher_logits is not None:
            top1 = teacher_logits.top1() if isinstance(teacher_logits, TopKLogits) else teacher_logits.argmax(-1)
            metrics["agreement"].append(((student_logits.argmax(-1) == top1).float().mean(), n))

    def _pop_metrics(self, mode: str) -> dict[str, float]:
        """Example-weighted means of the recorded values, averaged over processes; clears them."""
        recorded = self._metrics[mode]
        if not recorded:
            return {}
        names = sorted(recorded)
        sums = torch.stack([sum(value.float() * n for value, n in recorded[name]) for name in names])
        counts = torch.tensor([float(sum(n for _, n in recorded[name])) for name in names], device=sums.device)
        sums, counts = self.accelerator.reduce(torch.stack([sums, counts]), reduction="sum").tolist()
        recorded.clear()
        return {name: total / count for name, total, count in zip(names, sums, counts, strict=True)}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            self._raise_if_not_finite()
            logs = {**logs, **self._pop_metrics("train")}
            if self._last_schedule is not None:
                logs.update(alpha=self._last_schedule.alpha, temperature=self._last_schedule.temperature)
        super().log(logs, start_time)

    # ---- non-finite losses ----

    def train(self, *args: Any, **kwargs: Any):
        """Trainer's ``train``, after checking the arguments again (they may have been changed since construction)
        and, at the end, that no loss part went non-finite since the last logging step."""
        self.args.validate()
        output = super().train(*args, **kwargs)
        self._raise_if_not_finite()
        return output

    def _raise_if_not_finite(self, synchronize: bool = True) -> None:
        """Stop a run whose CE, distillation term or in-batch teacher logits went NaN/inf since the last check.

        Called at logging and saving steps and at the end of training: the values are recorded every step anyway,
        so a step adds no device sync; each check costs one, plus a reduction across processes when ``synchronize``
        (saving checks this process's values only, as a user may call ``save_model`` on one process).
        """
        recorded = self._metrics["train"]
        parts = {"CE (hard-label cross-entropy)": "loss_ce", "distillation term": "loss_kd"}
        flags = [
            torch.stack([torch.isfinite(value).all() for value, _ in recorded[key]]).all()
            if recorded.get(key)
            else torch.tensor(True, device=self.args.device)
            for key in parts.values()
        ]
        teacher = torch.stack(self._teacher_finite).all() if self._teacher_finite else torch.tensor(True)
        self._teacher_finite.clear()
        flags = torch.stack([~f.to(self.args.device) for f in [*flags, teacher]]).float()
        bad = (self.accelerator.reduce(flags, reduction="sum") if synchronize else flags).tolist()
        if not any(bad):
            return
        step = self.state.global_step
        if bad[2]:
            raise FloatingPointError(
                f"The teacher produced NaN/inf logits by step {step}. Run it in float32 (--teacher_dtype float32, no "
                "fp16) or check its weights; the student was not saved from this point."
            )
        names = [name for name, flag in zip(parts, bad[:2], strict=True) if flag]
        raise FloatingPointError(
            f"The {' and the '.join(names)} of the loss went NaN/inf by step {step}, with finite teacher logits: the "
            "student diverged. Lower --learning_rate, keep --max_grad_norm, or use bf16 instead of fp16; the student "
            "was not saved from this point."
        )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Trainer's ``save_model``, refused when a loss part went non-finite or the student holds NaN/inf weights,
        so that no checkpoint or final model is a broken student."""
        self._raise_if_not_finite(synchronize=False)
        if not all(torch.isfinite(p).all() for p in self.model.parameters() if p.is_floating_point()):
            raise FloatingPointError(
                "The student's weights hold NaN/inf values; it is not saved. Lower --learning_rate or keep "
                "--max_grad_norm, and resume from the last good checkpoint."
            )
        super().save_model(output_dir, _internal_call)
