"""The loss registry: every loss maps ``(student_logits, teacher_logits, temperature, labels)`` to a float32 scalar
and is chosen by name with ``--distillation_loss``. A loss's keyword-only parameters are its hyperparameters: the
objective fills them from the ``DistillationTrainingArguments`` fields of the same name (``dkd_beta``, ...) and
from ``loss_kwargs`` (``--loss_kwargs '{"scale": 2}'``) for those without a field."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

IGNORE_INDEX = -100

LossFn = Callable[..., torch.Tensor]
_LOSSES: dict[str, LossFn] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Register a distillation loss under ``name`` (the value of ``--distillation_loss``)."""

    def decorator(fn: LossFn) -> LossFn:
        if name in _LOSSES:
            raise ValueError(f"A distillation loss named {name!r} is already registered.")
        _LOSSES[name] = fn
        return fn

    return decorator


def available_losses() -> list[str]:
    return sorted(_LOSSES)


def get_loss(name: str) -> LossFn:
    try:
        return _LOSSES[name]
    except KeyError:
        raise ValueError(
            f"Unknown distillation_loss {name!r}. Known losses: {', '.join(available_losses())}. "
            "Register a new one with `hf_distill.register_loss`."
        ) from None


def loss_hyperparameters(loss: str | LossFn) -> list[str]:
    """The names of a loss's hyperparameters: its keyword-only parameters (``dkd_alpha``, ``dkd_beta`` for ``dkd``)."""
    fn = get_loss(loss) if isinstance(loss, str) else loss
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
