"""Several teachers, and self-distillation.

**Several teachers** (an ensemble; Hinton et al., 2015, distil an ensemble into one model; Fukuda et al., "Efficient
Knowledge Distillation from an Ensemble of Teachers", 2017): the soft target is the weighted average of the teachers'
probabilities at temperature T, ``p = sum_k w_k softmax(z_k / T)``. It is handed to the loss as the logits
``T * log p`` (:func:`combine_teacher_logits`), whose softmax at T is exactly ``p``: every loss that reads the teacher
through ``softmax(z / T)`` (``kl`` and the other divergences, ``hard`` through its argmax) then sees the ensemble
exactly, and nothing downstream needs a second code path. The average is recomputed at each step's temperature, so it
stays exact under a temperature schedule. Raw-logit losses (``mse``) would compare against ``T * log p``, which is not
an average of logits, so they are refused with several teachers.

**Self-distillation**: the teacher is the student itself at another point. Either an earlier checkpoint (pass its path
as ``teacher_model``; Furlanello et al., "Born-Again Neural Networks", 2018), or, for a PEFT student, its frozen base
model, obtained by running the student under ``disable_adapter()`` (:class:`PeftBaseTeacher`), which keeps a single copy
of the weights in memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ..data.labels import label_names, teacher_to_student_permutation, to_student_order
from ..training_args import parse_teacher_weights
from .loading import forward_input_names, load_teacher, model_name, unwrap

__all__ = [
    "PeftBaseTeacher",
    "TeacherEnsemble",
    "build_teacher",
    "check_ensemble_loss",
    "check_same_architecture",
    "combine_teacher_logits",
    "named_teachers",
    "parse_teacher_weights",
]

# Losses that compare raw logits, to which an ensemble's ``T * log p`` means nothing (the others read softmax(z / T)).
_RAW_LOGIT_LOSSES = ("mse",)
_ARCHITECTURE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def combine_teacher_logits(
    logits: Sequence[torch.Tensor], weights: Sequence[float], temperature: float
) -> torch.Tensor:
    """``T * log(sum_k w_k softmax(z_k / T))`` in float32: logits whose softmax at ``T`` is the teachers' weighted
    average probability (``weights`` sum to 1). Computed with ``logsumexp`` on log-probabilities, so a class that one
    teacher rules out stays finite."""
    log_probs = torch.stack([torch.log_softmax(z.float() / temperature, -1) for z in logits])
    log_weights = torch.tensor([math.log(w) if w > 0 else -math.inf for w in weights], device=log_probs.device)
    combined = torch.logsumexp(log_probs + log_weights.view(-1, *[1] * (log_probs.dim() - 1)), dim=0)
    return (temperature * combined).clamp(min=torch.finfo(torch.float32).min)


def named_teachers(teacher_model: Any) -> dict[str, Any]:
    """``teacher_model`` as ``{name: model or path}``: a dict is kept, a list or tuple named by each model's name or
    path (``teacher_<i>`` where they clash), a single teacher is ``{its name: it}``."""
    if isinstance(teacher_model, Mapping):
        if not teacher_model:
            raise ValueError("teacher_model is an empty dict; pass at least one teacher.")
        return dict(teacher_model)
    teachers = list(teacher_model) if isinstance(teacher_model, (list, tuple)) else [teacher_model]
    if not teachers:
        raise ValueError("teacher_model is an empty list; pass at least one teacher.")
    names = [teacher if isinstance(teacher, str) else model_name(teacher) for teacher in teachers]
    if len(set(names)) != len(names):
        names = [f"teacher_{i}" for i in range(len(teachers))]
    return dict(zip(names, teachers, strict=True))


class TeacherEnsemble(nn.Module):
    """Several teachers run on the same batch; ``forward(temperature=T, **inputs)`` returns an output whose ``logits``
    are :func:`combine_teacher_logits` of theirs (each first put in the student's label order).

    The members are submodules, so placing the ensemble on a device (or in a dtype) places every teacher.
    """

    def __init__(
        self, teachers: Mapping[str, nn.Module], weights: str | Sequence[float] | None, student_labels: list[str]
    ):
        super().__init__()
        self.names = list(teachers)
        self.members = nn.ModuleList(teachers.values())
        self.weights = parse_teacher_weights(weights, len(self.members))
        self.permutations = [
            teacher_to_student_permutation(label_names(unwrap(member).config), student_labels)
            for member in self.members
        ]
        self.input_names = list(dict.fromkeys(name for m in self.members for name in forward_input_names(m)))

    def forward(self, temperature: float, **inputs: Any) -> SequenceClassifierOutput:
        logits = []
        for member, permutation in zip(self.members, self.permutations, strict=True):
            names = forward_input_names(member)
            member_logits = member(**{k: v for k, v in inputs.items() if k in names}).logits.float()
            logits.append(to_student_order(member_logits, permutation))
        return SequenceClassifierOutput(logits=combine_teacher_logits(logits, self.weights, temperature))


class PeftBaseTeacher(nn.Module):
    """The frozen base model of a PEFT student as a teacher: the student itself, run in eval mode under
    ``disable_adapter()`` (adapters and ``modules_to_save`` copies off). It holds no parameters of its own (the student
    is kept outside the module tree), so the weights exist once, nothing is trained or saved twice, and moving it to a
    device or dtype does not touch the student."""

    def __init__(self, student: nn.Module):
        super().__init__()
        if not hasattr(student, "disable_adapter"):
            raise TypeError(
                f"Self-distillation from the frozen base needs a PEFT student (peft.get_peft_model), got "
                f"{type(student).__name__}. For a plain student pass an earlier checkpoint as teacher_model."
            )
        self._student = [student]  # a list, so nn.Module does not register it as a submodule

    @property
    def student(self) -> nn.Module:
        return self._student[0]

    @property
    def config(self) -> Any:
        return self.student.get_base_model().config

    def get_base_model(self) -> nn.Module:
        """The transformers model under the adapters (what :func:`hf_distill.teachers.loading.unwrap` reads)."""
        return self.student.get_base_model()

    def forward(self, **inputs: Any) -> Any:
        student, was_training = self.student, self.student.training
        student.eval()  # no dropout in the teacher
        try:
            with student.disable_adapter():
                return student(**inputs)
        finally:
            student.train(was_training)


def build_teacher(teacher_model: Any, student: nn.Module, args: Any, student_labels: list[str]) -> nn.Module | None:
    """The trainer's teacher from its ``teacher_model`` argument and ``args``.

    - ``self_distillation`` without ``teacher_model``: the PEFT student's frozen base (:class:`PeftBaseTeacher`);
      with one (an earlier checkpoint of the student), it is loaded and must have the student's architecture.
    - a list or dict of teachers: a :class:`TeacherEnsemble` weighted by ``teacher_weights``;
    - one model or path: that teacher, frozen.
    """
    if args.self_distillation and teacher_model is None:
        return PeftBaseTeacher(student)
    if teacher_model is None:
        return None
    if isinstance(teacher_model, (list, tuple, Mapping)):
        teachers = {name: load_teacher(t, like=student) for name, t in named_teachers(teacher_model).items()}
        return TeacherEnsemble(teachers, args.teacher_weights, student_labels)
    if args.teacher_weights:
        raise ValueError(
            f"teacher_weights={args.teacher_weights!r} weighs several teachers, but teacher_model is a single one. "
            "Pass a list (or dict) of teachers, or drop teacher_weights."
        )
    teacher = load_teacher(teacher_model, like=student)
    if args.self_distillation:
        check_same_architecture(teacher, student)
    return teacher


def check_ensemble_loss(loss: Any) -> None:
    """Refuse a raw-logit loss for several teachers (their combination is a distribution, not averaged logits)."""
    if loss in _RAW_LOGIT_LOSSES:
        raise ValueError(
            f"distillation_loss={loss!r} compares raw logits, but several teachers are combined as averaged "
            "probabilities (logits T * log p). Use kl (or another divergence) with several teachers."
        )


def check_same_architecture(teacher: nn.Module, student: nn.Module) -> None:
    """Self-distillation from a checkpoint: the teacher must be the student's architecture (a checkpoint of it)."""
    teacher_config, student_config = unwrap(teacher).config, unwrap(student).config
    differ = [
        key for key in _ARCHITECTURE_KEYS if getattr(teacher_config, key, None) != getattr(student_config, key, None)
    ]
    if differ:
        raise ValueError(
            f"self_distillation needs a teacher of the student's architecture (an earlier checkpoint of it), but "
            f"{', '.join(differ)} differ. Drop self_distillation to distil from another model."
        )
