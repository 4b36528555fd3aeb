"""Seeded, reproducible image views: random resized crop and horizontal flip, sampled as integers.

A *view* is five integers ``(top, left, height, width, flip)`` on the original image. It is sampled once and then
cropped and flipped with Pillow; each model's own transformers image processor (:class:`PixelFormat`) resizes and
normalises the crop, so a teacher and a student with different inputs judge exactly the same crop, and a stored view
renders the same pixels again. torchvision's ``transforms.v2`` would sample the crop too, but PyPI's torchvision is a
CUDA build that does not import beside the CPU torch wheel (docs/image.md); the sampling rule below is its
``RandomResizedCrop.get_params``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

VIEW_SIZE = 5  # top, left, height, width, flip


def to_pil(image: Any) -> Image.Image:
    """A grey (``L``) or ``RGB`` PIL image from a PIL image or a 0-255 array of shape (H, W) or (H, W, C)."""
    if isinstance(image, Image.Image):
        return image if image.mode in ("L", "RGB") else image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or array.size == 0 or array.min() < 0 or array.max() > 255:
            raise TypeError(
                f"Images must be PIL images or integer arrays with values in 0-255, got dtype {array.dtype}. "
                "Scale float images with (x * 255).round().astype(np.uint8)."
            )
        array = array.astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise ValueError(f"Images must have shape (H, W) or (H, W, C) with C in 1, 3, 4; got {array.shape}.")
    return Image.fromarray(array if array.ndim == 2 else array[:, :, :3])


@dataclass(frozen=True)
class RandomResizedCropFlip:
    """Random resized crop (area share in ``scale``, aspect ratio in ``ratio``) and a horizontal flip with
    probability ``flip_prob``: the Inception-style augmentation DeiT trains with (Touvron et al., 2021).
    Sampling follows torchvision's ``RandomResizedCrop.get_params`` (10 tries, then a centre crop)."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}.")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}.")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}.")

    def sample(self, height: int, width: int, generator: torch.Generator) -> list[int]:
        """One view ``[top, left, height, width, flip]`` of an image of the given size."""
        uniform = torch.rand(22, generator=generator, dtype=torch.float64).tolist()
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        area = height * width
        for attempt in range(10):
            u_area, u_ratio = uniform[2 * attempt], uniform[2 * attempt + 1]
            target = area * (self.scale[0] + u_area * (self.scale[1] - self.scale[0]))
            aspect = math.exp(log_ratio[0] + u_ratio * (log_ratio[1] - log_ratio[0]))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(uniform[20] * (height - h + 1))
                left = int(uniform[21] * (width - w + 1))
                break
        else:
            aspect = width / height
            if aspect < self.ratio[0]:
                w, h = width, round(width / self.ratio[0])
            elif aspect > self.ratio[1]:
                w, h = round(height * self.ratio[1]), height
            else:
                w, h = width, height
            top, left = (height - h) // 2, (width - w) // 2
        flip = int(torch.rand(1, generator=generator).item() < self.flip_prob)
        return [top, left, h, w, flip]


def identity_view(height: int, width: int) -> list[int]:
    """The whole image, unflipped."""
    return [0, 0, height, width, 0]


def crop_view(image: Image.Image, view: Sequence[int]) -> Image.Image:
    """``view`` of a PIL image: the crop, mirrored when its flip bit is set (at the original resolution)."""
    top, left, height, width, flip = (int(v) for v in view)
    if height < 1 or width < 1 or top < 0 or left < 0 or top + height > image.height or left + width > image.width:
        raise ValueError(f"View {list(view)} does not fit an image of size {(image.height, image.width)}.")
    crop = image.crop((left, top, left + width, top + height))
    return ImageOps.mirror(crop) if flip else crop
