"""Each model's inputs through transformers' own image processors: the processor saved with a model resizes,
rescales and normalises a view for it, and is what `pipeline("image-classification")` loads back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from transformers import PretrainedConfig, ViTImageProcessorPil

from .augment import crop_view, to_pil


@dataclass(frozen=True)
class PixelFormat:
    """What one model's ``pixel_values`` look like: its image processor, and its channel count (images are turned
    into ``RGB``, or into grey ``L`` for a model with one input channel, before the processor sees them)."""

    processor: Any
    num_channels: int = 3

    def __post_init__(self) -> None:
        if self.num_channels not in (1, 3):
            raise ValueError(f"PixelFormat.num_channels must be 1 or 3, got {self.num_channels}.")
        mean = getattr(self.processor, "image_mean", None)
        if getattr(self.processor, "do_normalize", False) and mean is not None and len(mean) != self.num_channels:
            raise ValueError(
                f"The image processor normalises {len(mean)} channel(s) but the model takes {self.num_channels}; "
                "save the model with a processor for its channels (hf_distill.vision.default_image_processor)."
            )

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """``pixel_values`` (float32, ``(N, C, H, W)``) of PIL images of any sizes."""
        mode = "L" if self.num_channels == 1 else "RGB"
        converted = [image.convert(mode) for image in images]
        return self.processor(images=converted, return_tensors="pt")["pixel_values"].float()

    def render(self, image: Any, view: Sequence[int]) -> torch.Tensor:
        """``pixel_values`` (``(C, H, W)``) of one ``view`` of ``image`` (PIL image or 0-255 array)."""
        return self([crop_view(to_pil(image), view)])[0]


def default_image_processor(size: tuple[int, int], num_channels: int = 3) -> ViTImageProcessorPil:
    """transformers' ViT image processor for a model built from a config: resize to ``size``, ``(x - 0.5) / 0.5`` on
    each channel, images converted to RGB first (as pipelines do) when the model takes 3 channels."""
    return ViTImageProcessorPil(
        do_resize=True,
        size={"height": size[0], "width": size[1]},
        image_mean=[0.5] * num_channels,
        image_std=[0.5] * num_channels,
        do_convert_rgb=num_channels == 3,
    )


def pixel_format_for(config: PretrainedConfig, processor: Any | None = None, default_size: int = 224) -> PixelFormat:
    """A model's :class:`PixelFormat`: its own image processor when it has one, else :func:`default_image_processor`
    at the config's ``image_size`` (ViT, DeiT) or ``default_size`` (CNNs take any size)."""
    num_channels = int(getattr(config, "num_channels", 3))
    if processor is None:
        side = int(getattr(config, "image_size", None) or default_size)
        processor = default_image_processor((side, side), num_channels)
    return PixelFormat(processor, num_channels)
