"""Schedules of the distillation objective over training: alpha and temperature curves, KD then CE, two-stage.

All are driven by ``DistillationTrainingArguments`` fields and read the ``TrainerState`` (``global_step``,
``max_steps``, ``epoch``), so they resume from a checkpoint with the trainer.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState

from ..teachers.loading import unwrap
from ..training_args import SCHEDULES, DistillationTrainingArguments


def scheduled_value(schedule: str, start: float, end: float, progress: float) -> float:
    """``start`` moved towards ``end`` as ``progress`` goes from 0 to 1: ``constant`` (stays at ``start``),
    ``linear``, or ``cosine`` (half a cosine wave, as the learning-rate schedule of Loshchilov & Hutter, 2017)."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return start
    if schedule == "linear":
        return start + (end - start) * progress
    if schedule == "cosine":
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"Unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}.")


def _before(state: TrainerState, steps: int | None, epochs: float | None) -> bool:
    """Whether training has done fewer than ``steps`` optimizer steps or ``epochs`` epochs (``None``: never)."""
    if steps is not None:
        return state.global_step < steps
    if epochs is not None:
        return (state.epoch or 0.0) < epochs
    return False


def distilling(args: DistillationTrainingArguments, state: TrainerState) -> bool:
    """False once the KD phase of "KD then CE" (``distillation_steps`` / ``distillation_epochs``) is over."""
    if args.distillation_steps is None and args.distillation_epochs is None:
        return True
    return _before(state, args.distillation_steps, args.distillation_epochs)


def in_first_stage(args: DistillationTrainingArguments, state: TrainerState) -> bool:
    """Whether two-stage training (``two_stage_steps`` / ``two_stage_epochs``) is in stage 1, the head alone."""
    return _before(state, args.two_stage_steps, args.two_stage_epochs)


class ObjectiveSchedule(NamedTuple):
    """The objective's settings for one optimizer step; ``distil=False`` is the CE phase (no teacher)."""

    alpha: float
    temperature: float
    distil: bool


def objective_schedule(args: DistillationTrainingArguments, state: TrainerState) -> ObjectiveSchedule:
    """Alpha and temperature at ``state.global_step`` (progress ``global_step / max_steps``), and whether to distil.

    In the CE phase alpha is 1 (labels alone) and the temperature is kept at its scheduled value for the logs.
    """
    progress = state.global_step / state.max_steps if state.max_steps else 0.0
    end = args.temperature if args.temperature_end is None else args.temperature_end
    temperature = scheduled_value(args.temperature_schedule, args.temperature, end, progress)
    if not distilling(args, state):
        return ObjectiveSchedule(1.0, temperature, False)
    end = args.alpha if args.alpha_end is None else args.alpha_end
    return ObjectiveSchedule(scheduled_value(args.alpha_schedule, args.alpha, end, progress), temperature, True)


def head_and_backbone(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """The classifier head's parameters (outside ``model.base_model``) and the backbone's (inside it)."""
    model = unwrap(model)
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        raise ValueError(
            f"Two-stage training freezes the backbone, but {type(model).__name__} has no separate `base_model` "
            "(a transformers *ForSequenceClassification / *ForImageClassification model has one). "
            "Drop --two_stage_steps / --two_stage_epochs for this model."
        )
    backbone = list(base.parameters())
    ids = {id(p) for p in backbone}
    head = [p for p in model.parameters() if id(p) not in ids]
    if not head:
        raise ValueError(f"{type(model).__name__} has no parameters outside its backbone to train in stage 1.")
    return head, backbone


class TwoStageCallback(TrainerCallback):
    """Two-stage training: stage 1 trains the classifier head alone (backbone frozen), stage 2 the whole network.

    A fresh head on a pretrained (or pruned) backbone otherwise sends large, random gradients into the backbone at the
    start ("gradient shock"). The backbone is frozen with ``requires_grad=False`` at the start of each stage-1 step, so
    backward computes no gradient for it and its ``.grad`` stays ``None``: ``torch.optim.AdamW`` (and SGD) skip
    parameters whose gradient is ``None``, so neither weight decay nor momentum touches the backbone in stage 1, and
    its optimizer state starts fresh in stage 2. The optimizer is built before the freeze, so it holds every parameter.
    BatchNorm layers (ResNet students) stay in training mode: their running statistics follow the data in stage 1 too.
    """

    def __init__(self, model: torch.nn.Module, args: DistillationTrainingArguments):
        if args.world_size > 1 and not args.ddp_find_unused_parameters:
            raise ValueError(
                "Two-stage training leaves the backbone without gradients in stage 1, which DistributedDataParallel "
                "refuses unless told: add --ddp_find_unused_parameters true."
            )
        self.args = args
        self.backbone = head_and_backbone(model)[1]
        self.trainable = [p.requires_grad for p in self.backbone]
        self.frozen = False

    def on_step_begin(self, args, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        first = in_first_stage(self.args, state)
        if first and not self.frozen:
            for p in self.backbone:
                p.requires_grad_(False)
                p.grad = None
        elif not first and self.frozen:
            for p, trainable in zip(self.backbone, self.trainable, strict=True):
                p.requires_grad_(trainable)
        self.frozen = first

    def on_train_end(self, args, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.frozen:
            for p, trainable in zip(self.backbone, self.trainable, strict=True):
                p.requires_grad_(trainable)
            self.frozen = False
