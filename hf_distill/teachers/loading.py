"""Loading, freezing and feeding a teacher model."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

import torch
import xxhash
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import (
    AutoConfig,
    AutoModelForAudioClassification,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    PreTrainedModel,
)

from ..methods.pruning import load_pruned_model, pruned_heads

_AUTO_CLASS_BY_INPUT = {
    "pixel_values": AutoModelForImageClassification,
    "input_values": AutoModelForAudioClassification,
    "input_features": AutoModelForAudioClassification,
}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a PEFT or DDP wrapper."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def auto_class_for(model: torch.nn.Module) -> type:
    """The Auto class that loads a model of the same task as ``model`` (sequence, image or audio classification)."""
    return _AUTO_CLASS_BY_INPUT.get(getattr(unwrap(model), "main_input_name", ""), AutoModelForSequenceClassification)


def _auto_class_from_config(name_or_path: str) -> type:
    architectures = " ".join(AutoConfig.from_pretrained(name_or_path).architectures or [])
    if "ImageClassification" in architectures:
        return AutoModelForImageClassification
    if "AudioClassification" in architectures:
        return AutoModelForAudioClassification
    return AutoModelForSequenceClassification


def load_teacher(teacher: PreTrainedModel | str, like: torch.nn.Module | None = None, **from_pretrained_kwargs: Any):
    """A frozen, eval-mode teacher from a model or a path / Hub id.

    A path is loaded with the Auto class of ``like`` (the student) when given, else the one its config names.
    """
    if isinstance(teacher, str):
        teacher = load_classifier(
            teacher, auto_class_for(like) if like is not None else None, **from_pretrained_kwargs
        )
    if not isinstance(teacher, torch.nn.Module):
        raise TypeError(f"teacher_model must be a model or a path / Hub id, got {type(teacher).__name__}.")
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def load_classifier(
    name_or_path: str, auto_class: type | None = None, **from_pretrained_kwargs: Any
) -> PreTrainedModel:
    """A trained classifier from a folder or Hub id, with the Auto class its config names unless ``auto_class`` is
    given. A path that does not exist is reported as not found, and a checkpoint whose classification head is missing
    (a base model: its head would be random) is refused, as the load report's missing keys outside the base model
    show."""
    if not os.path.isdir(name_or_path):
        try:
            validate_repo_id(name_or_path)
        except HFValidationError:
            raise FileNotFoundError(
                f"Model {name_or_path!r} not found: there is no such folder, and it is not a Hub id ('name' or "
                "'namespace/name'). Check the path."
            ) from None
    auto_class = auto_class or _auto_class_from_config(name_or_path)
    if pruned_heads(AutoConfig.from_pretrained(name_or_path, **_config_kwargs(from_pretrained_kwargs))):
        return load_pruned_model(name_or_path, auto_class, **from_pretrained_kwargs)  # Auto classes cannot rebuild it
    model, report = auto_class.from_pretrained(name_or_path, output_loading_info=True, **from_pretrained_kwargs)
    prefix = f"{model.base_model_prefix}."
    head = sorted(key for key in report["missing_keys"] if not key.startswith(prefix))
    if head:
        raise ValueError(
            f"{name_or_path!r} has no trained classification head (missing {', '.join(head)}): it is a base "
            "checkpoint, and a teacher with a random classifier teaches noise. Fine-tune it on the task first "
            "(recipes/train_teacher.py or recipes/train_image_teacher.py) and pass that checkpoint."
        )
    return model


def _config_kwargs(from_pretrained_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``from_pretrained`` keywords that also apply to ``AutoConfig.from_pretrained``."""
    names = ("cache_dir", "revision", "token", "trust_remote_code")
    return {k: v for k, v in from_pretrained_kwargs.items() if k in names}


def forward_input_names(model: torch.nn.Module) -> list[str]:
    """Names the model's ``forward`` accepts, label arguments excluded (a model's ``input_names`` when it lists them,
    as :class:`~hf_distill.teachers.ensemble.TeacherEnsemble` does)."""
    if hasattr(model, "input_names"):
        return list(model.input_names)
    params = inspect.signature(unwrap(model).forward).parameters
    return [name for name in params if name not in ("labels", "return_dict", "kwargs")]


def teacher_inputs(batch: Mapping[str, Any], prefix: str, accepted: list[str]) -> dict[str, Any]:
    """The teacher's inputs from a batch: the ``prefix``-ed keys (prefix stripped) if any, else the student's keys.

    Only names the teacher's ``forward`` accepts are kept, so a RoBERTa teacher never gets ``token_type_ids``.
    """
    prefixed = {key[len(prefix) :]: value for key, value in batch.items() if key.startswith(prefix)}
    prefixed = {name: value for name, value in prefixed.items() if name in accepted}
    source = prefixed or batch
    return {name: source[name] for name in accepted if name in source}


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of a model's config and weights, for cache keys and provenance."""
    digest = xxhash.xxh64()
    config = getattr(unwrap(model), "config", None)
    if config is not None:
        digest.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy())  # no bytes copy
    return digest.hexdigest()


def model_name(model: torch.nn.Module) -> str:
    """The model's name or path; for a :class:`~hf_distill.teachers.ensemble.TeacherEnsemble`, its members' joined by ' + '."""
    if isinstance(getattr(model, "names", None), list):
        return " + ".join(model.names)
    return getattr(getattr(unwrap(model), "config", None), "_name_or_path", "") or type(unwrap(model)).__name__
