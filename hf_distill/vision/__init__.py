"""Image distillation: augmented views shared by teacher and student, K-view teacher caches, DeiT training.

- ``augment``: seeded, reproducible image views (random resized crop and flip).
- ``transforms``: ``Dataset.set_transform`` callables giving student and teacher inputs of the same view.
- ``processing``: each model's inputs through its own image processor.
- ``kview``: teacher logits of K augmented views per image, computed once.
- ``deit``: DeiT-style distillation through a distillation token.
- ``datasets``: image classification datasets (Hub, image folders, two offline ones).
- ``models``: image classifiers from configs and presets, and their image processors.
- ``channel_pruning``: structured channel pruning of ResNet classifiers.
- ``recipe``: the image recipes' argument dataclass and data preparation.
"""

from .augment import RandomResizedCropFlip, crop_view, identity_view, to_pil
from .channel_pruning import prune_resnet_channels
from .datasets import class_names, eval_split, load_fashion_mnist, load_image_dataset, load_sklearn_digits
from .deit import DeiTDistillationTrainer, deit_distillation_loss
from .kview import precompute_teacher_views
from .models import (
    IMAGE_MODEL_PRESETS,
    image_model_from_config,
    load_image_processor,
    parse_config_overrides,
    pretrained_image_model,
)
from .processing import PixelFormat, default_image_processor, pixel_format_for
from .recipe import ImageDataArguments, image_shape, prepare_image_splits
from .transforms import VIEWS_COLUMN, DistillationImageTransform

__all__ = [
    "IMAGE_MODEL_PRESETS",
    "VIEWS_COLUMN",
    "DeiTDistillationTrainer",
    "DistillationImageTransform",
    "ImageDataArguments",
    "PixelFormat",
    "RandomResizedCropFlip",
    "class_names",
    "crop_view",
    "default_image_processor",
    "deit_distillation_loss",
    "eval_split",
    "identity_view",
    "image_model_from_config",
    "image_shape",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_image_processor",
    "load_sklearn_digits",
    "parse_config_overrides",
    "pixel_format_for",
    "prepare_image_splits",
    "precompute_teacher_views",
    "prune_resnet_channels",
    "pretrained_image_model",
    "to_pil",
]
