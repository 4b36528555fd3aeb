"""Image models from configs, and the pixel format (:class:`PixelSpec`) each model expects."""

from __future__ import annotations

import json
from typing import Any

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    DeiTForImageClassificationWithTeacher,
    PretrainedConfig,
    PreTrainedModel,
    ViTImageProcessor,
)

from .augment import PixelSpec


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
    num_channels: int,
    image_size: int | None = None,
    overrides: dict[str, Any] | None = None,
    with_distillation_token: bool = False,
) -> PreTrainedModel:
    """A randomly initialised image classifier (``resnet``, ``convnext``, ``vit``, ``deit``, ...) for ``labels``.

    ``image_size`` is set on configs that have one (ViT, DeiT); ``with_distillation_token`` builds
    `DeiTForImageClassificationWithTeacher` (``model_type="deit"``) for :class:`DeiTDistillationTrainer`.
    """
    overrides = dict(overrides or {})
    config = AutoConfig.for_model(
        model_type,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        num_channels=num_channels,
        **overrides,
    )
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


def _processor_size(processor: Any) -> tuple[int, int] | None:
    size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None)
    if not size:
        return None
    size = dict(size)
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    return None


def pixel_spec_for(config: PretrainedConfig, processor: Any | None = None, default_size: int = 224) -> PixelSpec:
    """The inputs a model expects: size and normalisation from its image processor when it has one, else the
    config's ``image_size`` (ViT, DeiT) or ``default_size`` (CNNs take any size) and ``(x - 0.5) / 0.5``."""
    size = _processor_size(processor) if processor is not None else None
    if size is None:
        side = int(getattr(config, "image_size", None) or default_size)
        size = (side, side)
    mean = tuple(getattr(processor, "image_mean", None) or (0.5,))
    std = tuple(getattr(processor, "image_std", None) or (0.5,))
    num_channels = int(getattr(config, "num_channels", 3))
    if len(mean) != num_channels:
        mean, std = mean[:1], std[:1]
    return PixelSpec(size=size, num_channels=num_channels, mean=mean, std=std)


def image_processor_for(spec: PixelSpec) -> ViTImageProcessor:
    """An image processor that reproduces ``spec`` (resize to its size, then ``(x - mean) / std``), to save with a
    model so that pipelines and :func:`pixel_spec_for` find its input format."""
    return ViTImageProcessor(
        do_resize=True,
        size={"height": spec.size[0], "width": spec.size[1]},
        image_mean=list(spec.mean),
        image_std=list(spec.std),
    )
