"""`DistillationTrainer`: a `transformers.Trainer` that trains a student on a teacher's logits.

The trainer keeps Trainer's hooks and hands each job to an object with one job:

- :class:`~hf_distill.plan.DistillationPlan`: the rules between the arguments, the models, the datasets and the
  run's length, resolved once before the first step; it builds the teacher, the objective and the logits source;
- :class:`~hf_distill.teachers.sources.TeacherLogitsSource`: a batch's teacher logits in the student's label order (stored
  columns, top-k, or a teacher in the loop) and, for the objective's terms, the teacher's outputs;
- :class:`~hf_distill.losses.DistillationObjective`: the loss parts, with the extra terms' optimizer groups,
  checkpoint state and callbacks;
- :class:`~hf_distill.loss_log.LossLog`: loss parts recorded per step, reduced at logging time, and the finite guard;
- :class:`~hf_distill.evaluation.teacher_metrics.TeacherMetrics`: the teacher's metrics per evaluation set.
"""

from __future__ import annotations

import os
from typing import Any

import datasets
import torch
from torch.utils.data import SequentialSampler
from transformers import EvalPrediction, PreTrainedModel, Trainer
from transformers.modelcard import TrainingSummary
from transformers.trainer_utils import has_length

from .data.logit_columns import LogitColumns, with_batch_logits, with_logit_columns
from .data.provenance import stored_teacher
from .evaluation.compare import ComparisonReport
from .evaluation.metrics import classification_metrics
from .evaluation.model_card import StudentRun, distillation_model_card
from .evaluation.teacher_metrics import TeacherMetrics, evaluation_set_key
from .loss_log import LossLog
from .losses import IGNORE_INDEX, DistillationObjective, LossParts, TopKLogits
from .methods.schedules import ObjectiveSchedule, objective_schedule
from .plan import DistillationPlan
from .teachers.loading import forward_input_names, model_name
from .training_args import DistillationTrainingArguments


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
    loss, hyperparameters, teacher corrections, extra terms), called with the scheduled alpha and temperature of each
    step (see :mod:`hf_distill.methods.schedules`); in the CE phase of "KD then CE" the teacher is not run during training.
    ``self.plan`` (:class:`~hf_distill.plan.DistillationPlan`) holds the resolved run.

    Logs every loss part (``loss_ce``, ``loss_kd``, ...) and the ``alpha`` and ``temperature`` of the last step beside
    ``loss``, and ``eval_loss_ce``, ``eval_loss_kd`` and ``eval_agreement`` (top-1 agreement with the teacher) in
    evaluation, plus the teacher's own metrics (``eval_teacher_accuracy``, ...: ``compute_metrics``, or accuracy and
    macro-F1, on the teacher logits the loss already used), computed once per evaluation set. ``create_model_card``
    (and so ``push_to_hub``) writes a distillation model card.
    """

    _tag_names = ["knowledge-distillation", "hf_distill"]
    # `training_step` divides the loss by the accumulation steps; `compute_loss` pre-scales the CE part so that it is
    # weighed by the labelled examples of the whole accumulated batch (see `_weigh_for_accumulation`).
    loss_is_scaled_for_ga = False
    # "open": 0 < alpha < 1 throughout (a student with a head per term, such as DeiT's).
    alpha_range = "closed"
    # Settings of the method beyond DistillationTrainingArguments and a paragraph on it, for the model card;
    # subclasses add theirs (see DeiTDistillationTrainer).
    method_description: str | None = None

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
        super().__init__(model=model, args=args, **kwargs)
        # Have Trainer count the labelled examples of each accumulated batch (`num_items_in_batch`) for the CE weighting.
        self.model_accepts_loss_kwargs = True
        sharded = self.is_deepspeed_enabled or self.is_fsdp_enabled
        self.plan = DistillationPlan(args, self.model, teacher_model, alpha_range=self.alpha_range, sharded=sharded)
        self.student_labels = self.plan.student_labels
        self.loss_log = LossLog(self.accelerator, args.logits_columns)
        self.teacher_metrics = TeacherMetrics(self.accelerator.gather_for_metrics)
        self.source = self.plan.source(self.accelerator, self.loss_log.record_teacher)
        for callback in self.plan.callbacks(self.model, self.accelerator):
            self.add_callback(callback)
        self._last_schedule: ObjectiveSchedule | None = None
        eval_sets = self.eval_dataset.values() if isinstance(self.eval_dataset, dict) else [self.eval_dataset]
        for dataset in [self.train_dataset, *eval_sets]:
            if dataset is not None:
                self.plan.add_dataset(dataset, training=dataset is self.train_dataset)
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(self._tag_names)

    @property
    def teacher_model(self) -> torch.nn.Module | None:
        """The teacher run in the loop (placed on the device once training or evaluation started), or ``None``."""
        return self.source.teacher.teacher if self.source.teacher is not None else None

    @property
    def objective(self) -> DistillationObjective:
        """The training objective (:class:`~hf_distill.losses.DistillationObjective`), as the plan resolved it; set it
        to train another (``dataclasses.replace(trainer.objective, terms=...)``)."""
        return self.plan.objective

    @objective.setter
    def objective(self, objective: DistillationObjective) -> None:
        self.plan.objective = objective

    # ---- the loss ----

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        inputs, stored = self.source.split(inputs)
        labels = inputs.pop("labels", None)
        if labels is not None and labels.is_floating_point():  # a dtype check: no device sync
            raise TypeError(
                f"The batch's labels are {labels.dtype}, but they must be integer class ids (or -100) of the student's "
                f"classes {self.student_labels}. Convert the label column to integers."
            )
        prefix = self.args.teacher_input_prefix
        student_inputs = {k: v for k, v in inputs.items() if not k.startswith(prefix)}
        schedule = objective_schedule(self.args, self.state)
        # The teacher runs first: its activations are freed before the student's autograd graph is built.
        teacher = None
        if schedule.distil or not model.training:
            teacher = self.source(inputs, stored, schedule.temperature, model.training)
        teacher_logits = teacher.logits if teacher is not None else None
        flags = self.objective.output_flags
        outputs = model(**student_inputs, **flags)
        teacher_outputs = teacher.outputs if teacher is not None else None
        parts = self.loss_from_outputs(outputs, teacher_logits, labels, schedule)
        parts = parts + self.objective.term_parts(outputs, teacher_outputs, labels, student_inputs)
        if flags:  # hidden states and attention maps must not become predictions
            outputs = type(outputs)(**{k: v for k, v in outputs.items() if k not in ("hidden_states", "attentions")})
        if model.training:
            parts = self._weigh_for_accumulation(parts, labels, num_items_in_batch)
            self._last_schedule = schedule
        else:
            self.teacher_metrics.add(teacher_logits, labels, len(self.student_labels), schedule.temperature)
        self.loss_log.record(parts, outputs.logits, teacher_logits, train=model.training)
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
    ) -> LossParts:
        """The CE and distillation parts from the student's outputs; subclasses override it for students with several
        heads. The objective's extra terms (hidden states, ...) are added by :meth:`compute_loss` in every case."""
        return self.objective.logit_parts(
            outputs.logits, teacher_logits, labels, alpha=schedule.alpha, temperature=schedule.temperature
        )

    # ---- the objective's own parameters and state (intermediate-layer projections, ...) ----

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """Trainer's optimizer, plus the parameter groups of the objective's terms (trained with the student, never
        part of it)."""
        optimizer = super().create_optimizer(model)
        optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for group in self.objective.parameter_groups(self.args.weight_decay):
            if not any(id(p) in optimized for p in group["params"]):
                optimizer.add_param_group(group)
        return optimizer

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """Checkpoints keep the terms' state beside the optimizer state, outside the student's weights."""
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            self.objective.save_state(output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.objective.load_state(checkpoint)

    # ---- datasets ----

    def _remove_unused_columns(
        self, dataset: datasets.Dataset, description: str | None = None
    ) -> datasets.Dataset | LogitColumns:
        """Checks ``dataset``, drops unused columns, and reads every stored logits column in batches from Arrow
        (:class:`LogitColumns`)."""
        self.plan.add_dataset(dataset, training=dataset is self.train_dataset)
        dataset = super()._remove_unused_columns(dataset, description)
        return with_logit_columns(dataset, self.source.stored.keys)

    def get_train_dataloader(self):
        self.plan.add_dataset(self.train_dataset, training=True)
        return with_batch_logits(super().get_train_dataloader())

    def get_test_dataloader(self, test_dataset: Any):
        self.plan.add_dataset(test_dataset)
        return with_batch_logits(super().get_test_dataloader(test_dataset))

    def get_eval_dataloader(self, eval_dataset: Any = None):
        dataset = self._eval_set(eval_dataset)
        if dataset is not None:
            self.plan.add_dataset(dataset)
        return with_batch_logits(super().get_eval_dataloader(eval_dataset))

    def _get_eval_sampler(self, eval_dataset: Any) -> torch.utils.data.Sampler | None:
        """Evaluation and prediction read the rows in order, whatever ``train_sampling_strategy``: transformers 5 groups
        evaluation batches by length under ``group_by_length``, which would return predictions in length order."""
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def _eval_set(self, eval_dataset: Any) -> Any:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        return self.eval_dataset[dataset] if isinstance(dataset, str) else dataset

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the logits columns and the teacher-prefixed inputs through ``remove_unused_columns``."""
        if self._signature_columns is None:
            super()._set_signature_columns_if_needed()
            prefix = self.args.teacher_input_prefix
            teacher_names = forward_input_names(self.teacher_model or self.model)
            self._signature_columns += [*self.source.stored.keys, *(prefix + n for n in teacher_names)]

    # ---- evaluation ----

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        """Unlabelled batches: the distillation loss when the scheduled alpha is 0, else plain predictions."""
        if self.label_names and all(inputs.get(name) is not None for name in self.label_names):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            if objective_schedule(self.args, self.state).alpha > 0:
                prefix = self.args.teacher_input_prefix
                student_inputs = self.source.split(inputs)[0]
                student_inputs = {k: v for k, v in student_inputs.items() if not k.startswith(prefix)}
                loss, logits = None, model(**student_inputs).logits
            else:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
                loss, logits = loss.detach(), outputs.logits
        return loss, (None if prediction_loss_only else logits.detach()), None

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ):
        """Trainer's ``evaluate``; the teacher's metrics are computed once per evaluation set."""
        dataset = self._eval_set(eval_dataset)
        if isinstance(dataset, dict):  # Trainer evaluates each set by name
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        with self.teacher_metrics.evaluating(evaluation_set_key(dataset)):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

    def predict(self, test_dataset: Any, ignore_keys: list[str] | None = None, metric_key_prefix: str = "test"):
        """Trainer's ``predict``; on a labelled set it reports the teacher's metrics too."""
        with self.teacher_metrics.evaluating(evaluation_set_key(test_dataset)):
            return super().predict(test_dataset, ignore_keys, metric_key_prefix)

    def evaluation_loop(
        self,
        dataloader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in self.loss_log.pop("eval").items()})
        teacher = self.teacher_metrics.result(self._teacher_metrics)
        output.metrics.update({f"{metric_key_prefix}_teacher_{k}": v for k, v in teacher.items()})
        return output

    def _teacher_metrics(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """``compute_metrics`` (or accuracy and macro-F1) of the teacher logits gathered during evaluation."""
        if self.compute_metrics is None or self.args.batch_eval_metrics:
            return classification_metrics(logits.cpu().numpy(), labels.cpu().numpy())
        if self.preprocess_logits_for_metrics is not None:
            logits = self.preprocess_logits_for_metrics(logits, labels)
        return dict(
            self.compute_metrics(EvalPrediction(predictions=logits.cpu().numpy(), label_ids=labels.cpu().numpy()))
        )

    # ---- model card ----

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
        recorded with precomputed logits), ``comparison`` (a :class:`~hf_distill.evaluation.compare.ComparisonReport` or its JSON
        path, for the speed and size columns), ``reproduce_command`` (default: this command line, tokens removed) and
        ``method`` (further settings of the method to record, such as cached views or augmentation).
        See :func:`hf_distill.evaluation.model_card.distillation_model_card`.
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
        teacher = self._teacher_record()
        column = self.args.teacher_logits_column
        run = StudentRun(
            summary=summary,
            student=self.accelerator.unwrap_model(self.model),
            args=self.args,
            teacher=teacher_model_name or teacher[0],
            teacher_parameters=teacher[1],
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
        return stored_teacher([self.train_dataset, *sets], self.args.logits_columns)

    # ---- logging and non-finite losses ----

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            self.loss_log.raise_if_not_finite(self.state.global_step, self.args.device)
            logs = {**logs, **self.loss_log.pop("train")}
            if self._last_schedule is not None:
                logs.update(alpha=self._last_schedule.alpha, temperature=self._last_schedule.temperature)
        super().log(logs, start_time)

    def train(self, *args: Any, **kwargs: Any):
        """Trainer's ``train``, after re-resolving the plan for arguments changed since construction and, at the end,
        checking that no loss part went non-finite since the last logging step."""
        self.plan.refresh()
        output = super().train(*args, **kwargs)
        self.loss_log.raise_if_not_finite(self.state.global_step, self.args.device)
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Trainer's ``save_model``, refused when a loss part went non-finite or the student holds NaN/inf weights,
        so that no checkpoint or final model is a broken student."""
        self.loss_log.raise_if_not_finite(self.state.global_step, self.args.device, synchronize=False)
        if not all(torch.isfinite(p).all() for p in self.model.parameters() if p.is_floating_point()):
            raise FloatingPointError(
                "The student's weights hold NaN/inf values; it is not saved. Lower --learning_rate or keep "
                "--max_grad_norm, and resume from the last good checkpoint."
            )
        super().save_model(output_dir, _internal_call)
