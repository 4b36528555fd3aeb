"""The training objective: named loss parts and their weights, ``alpha * CE + (1 - alpha) * distill`` by default.

:class:`DistillationObjective` is configured once (from ``DistillationTrainingArguments``: the loss, its
hyperparameters, the teacher corrections, and any extra terms) and called per batch with the scheduled ``alpha`` and
``temperature``. It returns :class:`LossParts`, which the trainer sums for the gradient and logs part by part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .corrections import TEACHER_CORRECTIONS, check_teacher_correction, standardize_logits
from .logit import cross_entropy_and_kl, hard_label_cross_entropy, kl_divergence_loss
from .registry import LossFn, get_loss
from .top_k import TopKLogits, top_k_kl_loss


class ObjectiveArguments(Protocol):
    """What :meth:`DistillationObjective.from_args` reads (``DistillationTrainingArguments`` has it; the losses
    import no configuration module)."""

    distillation_loss: str
    loss_hyperparameters: Mapping[str, Any]
    teacher_correction: str | None
    logit_standardization: bool
    label_smoothing_factor: float


@dataclass(frozen=True)
class LossParts:
    """Named loss parts (``loss_ce``, ``loss_kd``, ...) and the weight of each in the total loss.

    Every part is logged (as ``loss_ce``, ``eval_loss_ce``, ...); a part without a weight is logged only.
    """

    parts: dict[str, torch.Tensor]
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def loss(self) -> torch.Tensor:
        """``sum(weight * part)`` over the weighted parts."""
        return sum(weight * self.parts[name] for name, weight in self.weights.items())

    @property
    def ce(self) -> torch.Tensor | None:
        return self.parts.get("loss_ce")

    @property
    def kd(self) -> torch.Tensor | None:
        return self.parts.get("loss_kd")

    def __add__(self, other: LossParts) -> LossParts:
        if self.parts.keys() & other.parts.keys():
            raise ValueError(f"Loss parts {sorted(self.parts.keys() & other.parts.keys())} are computed twice.")
        return LossParts({**self.parts, **other.parts}, {**self.weights, **other.weights})


# An extra term of the objective (hidden states, attention maps, ...): gets the student's and the teacher's model
# outputs (``None`` where not run), the labels and the student's inputs (``attention_mask``, ...), returns its own
# named, weighted parts. A term may also have ``output_flags`` (forward keywords it needs), ``parameter_groups(
# weight_decay)`` (its own trained parameters), ``save_state(folder)`` / ``load_state(folder)`` (checkpoints) and
# ``callbacks(accelerator)``; the objective gathers them for the trainer, which has no branch for any term.
ObjectiveTerm = Callable[[Any, Any, "torch.Tensor | None", Mapping[str, Any]], LossParts]


def distillation_term(
    loss: str | LossFn,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | TopKLogits,
    temperature: float,
    labels: torch.Tensor | None = None,
    **hyperparameters: float,
) -> torch.Tensor:
    """The distillation term for full teacher logits (any registered loss) or top-k ones (``kl`` and ``hard``)."""
    if not isinstance(teacher_logits, TopKLogits):
        fn = get_loss(loss) if isinstance(loss, str) else loss
        return fn(student_logits, teacher_logits, temperature, labels, **hyperparameters)
    if loss == "kl":
        return top_k_kl_loss(student_logits, teacher_logits, temperature, labels)
    if loss == "hard":
        return hard_label_cross_entropy(student_logits, teacher_logits.top1())
    raise ValueError(
        f"distillation_loss={loss!r} needs every teacher logit, but the teacher logits are stored as top-k. "
        "Use distillation_loss='kl' or 'hard', or precompute the full logits (top_k=None)."
    )


@dataclass(frozen=True)
class DistillationObjective:
    """``alpha * CE(student, labels) + (1 - alpha) * loss(student, correct(teacher))`` plus any ``terms``.

    ``alpha`` weighs the hard-label term, as in the Hugging Face distillation tutorials: ``alpha=0`` is pure
    distillation and needs no labels; the CE part is computed (and logged) whenever labels are given. The teacher
    logits first go through ``teacher_correction`` (``"swap"``, see :mod:`hf_distill.losses.corrections`), then, with
    ``logit_standardization``, teacher and student logits are both z-scored before the loss divides them by the
    temperature. ``hyperparameters`` are passed to the loss as keyword arguments; ``label_smoothing`` applies to the
    CE part (``TrainingArguments.label_smoothing_factor``). ``teacher_logits=None`` (the CE phase
    of "KD then CE", where the teacher is not run) gives the CE alone.
    """

    loss: str | LossFn = "kl"
    hyperparameters: Mapping[str, float] = field(default_factory=dict)
    teacher_correction: str | None = None
    logit_standardization: bool = False
    label_smoothing: float = 0.0
    terms: Sequence[ObjectiveTerm] = ()

    @classmethod
    def from_args(cls, args: ObjectiveArguments, terms: Sequence[ObjectiveTerm] = ()) -> DistillationObjective:
        """The objective the arguments configure; the loss's hyperparameters come from the fields of the same name and
        ``loss_kwargs`` (:attr:`~hf_distill.DistillationTrainingArguments.loss_hyperparameters`)."""
        return cls(
            loss=args.distillation_loss,
            hyperparameters=args.loss_hyperparameters,
            teacher_correction=args.teacher_correction,
            logit_standardization=args.logit_standardization,
            label_smoothing=args.label_smoothing_factor,
            terms=tuple(terms),
        )

    def __post_init__(self) -> None:
        if self.teacher_correction is not None:
            check_teacher_correction(self.teacher_correction)

    def distillation_term(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | TopKLogits,
        labels: torch.Tensor | None,
        temperature: float,
    ) -> torch.Tensor:
        """The distillation part alone: corrections, then the loss."""
        student_logits, teacher_logits = self._corrected(student_logits, teacher_logits, labels)
        return distillation_term(
            self.loss, student_logits, teacher_logits, temperature, labels, **self.hyperparameters
        )

    def _corrected(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | TopKLogits, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | TopKLogits]:
        """The logits the distillation loss compares: the teacher's corrected, both standardized if asked."""
        if self.teacher_correction is None and not self.logit_standardization:
            return student_logits, teacher_logits
        if isinstance(teacher_logits, TopKLogits):
            raise ValueError(
                "teacher_correction and logit_standardization need every teacher logit, but the teacher logits "
                "are stored as top-k. Precompute the full logits (top_k=None) or drop the correction."
            )
        if self.teacher_correction is not None:
            teacher_logits = TEACHER_CORRECTIONS[self.teacher_correction](teacher_logits, labels)
        if self.logit_standardization:
            student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
        return student_logits, teacher_logits

    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | TopKLogits | None,
        labels: torch.Tensor | None,
        *,
        alpha: float,
        temperature: float,
        student_outputs: Any = None,
        teacher_outputs: Any = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> LossParts:
        parts = self.logit_parts(student_logits, teacher_logits, labels, alpha=alpha, temperature=temperature)
        return parts + self.term_parts(student_outputs, teacher_outputs, labels, inputs)

    @property
    def output_flags(self) -> dict[str, bool]:
        """What the terms need the models to return, as ``forward`` keywords (``output_hidden_states=True``, ...)."""
        return {name: value for term in self.terms for name, value in getattr(term, "output_flags", {}).items()}

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The optimizer parameter groups of the terms that train parameters of their own."""
        return [group for term in self.terms for group in _call(term, "parameter_groups", [], weight_decay)]

    def callbacks(self, accelerator: Any) -> list[Any]:
        """The trainer callbacks the terms need."""
        return [callback for term in self.terms for callback in _call(term, "callbacks", [], accelerator)]

    def save_state(self, folder: str) -> None:
        """Write the terms' state into a checkpoint folder."""
        for term in self.terms:
            _call(term, "save_state", None, folder)

    def load_state(self, folder: str) -> None:
        """Load the terms' state from a checkpoint folder written by :meth:`save_state`."""
        for term in self.terms:
            _call(term, "load_state", None, folder)

    def with_terms(self, terms: Sequence[ObjectiveTerm]) -> DistillationObjective:
        return dataclasses.replace(self, terms=tuple(terms))

    def term_parts(
        self, student_outputs: Any, teacher_outputs: Any, labels: torch.Tensor | None, inputs: Mapping[str, Any] | None
    ) -> LossParts:
        """The parts of the extra ``terms`` alone."""
        parts = LossParts({})
        for term in self.terms:
            parts = parts + term(student_outputs, teacher_outputs, labels, inputs or {})
        return parts

    def logit_parts(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | TopKLogits | None,
        labels: torch.Tensor | None,
        *,
        alpha: float,
        temperature: float,
    ) -> LossParts:
        """``loss_ce`` (weight ``alpha``) and ``loss_kd`` (weight ``1 - alpha``)."""
        if labels is None and alpha > 0:
            raise ValueError(
                f"alpha={alpha} weighs a hard-label cross-entropy, but the batch has no `labels`. "
                "Add a label column, or set alpha=0 for pure distillation."
            )
        if self._fuses(student_logits, teacher_logits, labels):  # Hinton's objective: both parts in one step
            _, teacher_logits = self._corrected(student_logits, teacher_logits, labels)
            ce, kd = cross_entropy_and_kl(student_logits, teacher_logits, labels, temperature, self.label_smoothing)
            return LossParts({"loss_ce": ce, "loss_kd": kd}, {"loss_ce": alpha, "loss_kd": 1.0 - alpha})
        parts, weights = {}, {}
        if labels is not None:
            ce = hard_label_cross_entropy(student_logits, labels, self.label_smoothing)
            parts["loss_ce"], weights["loss_ce"] = ce, alpha
        if teacher_logits is not None:
            parts["loss_kd"] = self.distillation_term(student_logits, teacher_logits, labels, temperature)
            weights["loss_kd"] = 1.0 - alpha
        elif alpha != 1.0:
            raise ValueError(f"alpha={alpha} weighs a distillation term, but no teacher logits were given.")
        return LossParts(parts, weights)

    def _fuses(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | TopKLogits | None,
        labels: torch.Tensor | None,
    ) -> bool:
        """Whether the CE and the ``kl`` loss read the same ``(batch, classes)`` student logits, so that
        :func:`~hf_distill.losses.logit.cross_entropy_and_kl` computes both."""
        return (
            self.loss in ("kl", kl_divergence_loss)
            and not self.hyperparameters  # the loss refuses them
            and isinstance(teacher_logits, torch.Tensor)
            and teacher_logits.shape == student_logits.shape
            and labels is not None
            and not self.logit_standardization
            and student_logits.dim() == 2
            and labels.dim() == 1
        )


def _call(term: Any, method: str, default: Any, *args: Any) -> Any:
    """``term.method(*args)``, or ``default`` for a term without that method."""
    fn = getattr(term, method, None)
    return default if fn is None else fn(*args)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | TopKLogits,
    labels: torch.Tensor | None,
    *,
    alpha: float,
    temperature: float,
    loss: str | LossFn = "kl",
    label_smoothing: float = 0.0,
    **hyperparameters: float,
) -> LossParts:
    """``alpha * CE(student, labels) + (1 - alpha) * loss(student, teacher)``: :class:`DistillationObjective` without
    corrections, as a function. ``teacher_logits`` may be :class:`TopKLogits` (``kl`` and ``hard`` only);
    ``label_smoothing`` applies to the CE part (``TrainingArguments.label_smoothing_factor``)."""
    objective = DistillationObjective(loss, hyperparameters, label_smoothing=label_smoothing)
    return objective(student_logits, teacher_logits, labels, alpha=alpha, temperature=temperature)
