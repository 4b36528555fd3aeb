"""Image distillation: augmented views shared by teacher and student, K-view teacher caches, DeiT training."""

from .augment import PixelSpec, RandomResizedCropFlip, identity_view, render_view, to_chw_uint8
from .datasets import class_names, eval_split, load_fashion_mnist, load_image_dataset, load_sklearn_digits
from .deit import DeiTDistillationTrainer, deit_distillation_loss
from .kview import precompute_teacher_views
from .models import (
    image_model_from_config,
    image_processor_for,
    load_image_processor,
    parse_config_overrides,
    pixel_spec_for,
)
from .recipe import ImageDataArguments, image_shape, prepare_image_splits
from .transforms import VIEWS_COLUMN, DistillationImageTransform

__all__ = [
    "VIEWS_COLUMN",
    "DeiTDistillationTrainer",
    "DistillationImageTransform",
    "ImageDataArguments",
    "PixelSpec",
    "RandomResizedCropFlip",
    "class_names",
    "deit_distillation_loss",
    "eval_split",
    "identity_view",
    "image_shape",
    "image_model_from_config",
    "image_processor_for",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_image_processor",
    "load_sklearn_digits",
    "parse_config_overrides",
    "pixel_spec_for",
    "prepare_image_splits",
    "precompute_teacher_views",
    "render_view",
    "to_chw_uint8",
]
