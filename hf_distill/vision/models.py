"""Image classifiers from configs, and the image processors saved with them."""

from __future__ import annotations

import json
from typing import Any

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    DeiTForImageClassificationWithTeacher,
    PreTrainedModel,
)

from ..data.labels import label_config, label_names

# Named configs for ``model_type``: basic-block ResNets (He et al., "Deep Residual Learning for Image Recognition",
# 2016): ResNet-18 in the paper's layout, ResNet-10 (one block a stage), and two narrow three-stage ones for small
# images on a CPU: ``resnet-small`` (0.31M parameters for 10 classes) is the Fashion-MNIST demo's teacher and
# ``resnet-tiny`` (0.08M) the ResNet student of the augmentation study. Config overrides apply on top.
_BASIC = {"layer_type": "basic"}
IMAGE_MODEL_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet18": ("resnet", {**_BASIC, "embedding_size": 64, "hidden_sizes": [64, 128, 256, 512], "depths": [2] * 4}),
    "resnet10": ("resnet", {**_BASIC, "embedding_size": 64, "hidden_sizes": [64, 128, 256, 512], "depths": [1] * 4}),
    "resnet-small": ("resnet", {**_BASIC, "embedding_size": 32, "hidden_sizes": [32, 64, 128], "depths": [1] * 3}),
    "resnet-tiny": ("resnet", {**_BASIC, "embedding_size": 16, "hidden_sizes": [16, 32, 64], "depths": [1] * 3}),
}


def parse_config_overrides(overrides: str | None) -> dict[str, Any]:
    """``'{"hidden_size": 64, "depths": [1, 1]}'`` (a JSON object) as a dict; ``None`` or empty gives ``{}``."""
    if not overrides:
        return {}
    try:
        parsed = json.loads(overrides)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"Config overrides must be a JSON object such as '{{\"hidden_size\": 64}}': {error}"
        ) from None
    if not isinstance(parsed, dict):
        raise ValueError(f"Config overrides must be a JSON object, got {overrides!r}.")
    return parsed


def image_model_from_config(
    model_type: str,
    labels: list[str],
    *,
    num_channels: int = 3,
    image_size: int | None = None,
    overrides: dict[str, Any] | None = None,
    with_distillation_token: bool = False,
) -> PreTrainedModel:
    """A randomly initialised image classifier (``resnet``, ``convnext``, ``vit``, ``deit``, ..., or a preset such as
    ``resnet-tiny``: :data:`IMAGE_MODEL_PRESETS`, ``overrides`` replacing its fields) for ``labels``.

    ``num_channels`` stays 3 for grey datasets too (the data path makes grey images RGB, as pipelines feed RGB).
    ``image_size`` is set on configs that have one (ViT, DeiT); ``with_distillation_token`` builds
    `DeiTForImageClassificationWithTeacher` (``model_type="deit"``) for :class:`DeiTDistillationTrainer`.
    """
    model_type, preset = IMAGE_MODEL_PRESETS.get(model_type, (model_type, {}))
    overrides = {**preset, **(overrides or {})}  # the caller's fields replace the preset's
    try:
        config = AutoConfig.for_model(
            model_type,
            **label_config(labels),
            num_channels=num_channels,
            **overrides,
        )
    except ValueError as error:
        if "Unrecognized model identifier" not in str(error):
            raise
        raise ValueError(
            f"Unknown image model type {model_type!r}: use a transformers model type (resnet, convnext, vit, deit, "
            f"...) or a preset ({', '.join(IMAGE_MODEL_PRESETS)})."
        ) from None
    if image_size is not None and hasattr(config, "image_size") and "image_size" not in overrides:
        config.image_size = image_size
    if with_distillation_token:
        if model_type != "deit":
            raise ValueError(f"A distillation token needs model_type='deit', got {model_type!r}.")
        return DeiTForImageClassificationWithTeacher(config)
    return AutoModelForImageClassification.from_config(config)


def load_image_processor(name_or_path: str, **from_pretrained_kwargs: Any) -> Any | None:
    """The image processor saved with a model, or ``None`` when it has none (models built from a config)."""
    try:
        return AutoImageProcessor.from_pretrained(name_or_path, **from_pretrained_kwargs)
    except (OSError, ValueError):
        return None


def pretrained_image_model(name_or_path: str, labels: list[str], **load_kwargs: Any) -> PreTrainedModel:
    """A pretrained image classifier for ``labels``. A checkpoint whose classes are the same names (in any order)
    keeps its head; any other (an ImageNet ViT as a student or teacher) gets a new head: ``id2label`` and
    ``label2id`` set from ``labels`` (``num_labels`` follows) with ``ignore_mismatched_sizes=True``."""
    hub = {k: v for k, v in load_kwargs.items() if k != "ignore_mismatched_sizes"}
    if set(label_names(AutoConfig.from_pretrained(name_or_path, **hub))) == set(labels):
        return AutoModelForImageClassification.from_pretrained(name_or_path, **hub)
    load_kwargs.setdefault("ignore_mismatched_sizes", True)
    return AutoModelForImageClassification.from_pretrained(
        name_or_path,
        **label_config(labels),
        **load_kwargs,
    )
