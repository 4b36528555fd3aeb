"""Seeded, reproducible image views in a few lines of torch: random resized crop and horizontal flip.

A *view* is five integers ``(top, left, height, width, flip)`` on the original image. It is sampled once and then
rendered at any model's resolution, channel count and normalisation (:class:`PixelSpec`), so a teacher and a student
with different inputs judge exactly the same crop, and a stored view renders the same pixels again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

VIEW_SIZE = 5  # top, left, height, width, flip
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class PixelSpec:
    """What a model's ``pixel_values`` look like: size ``(height, width)``, channels, and ``(x - mean) / std``."""

    size: tuple[int, int]
    num_channels: int = 3
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"PixelSpec.size must be (height, width) with positive sides, got {self.size}.")
        if self.num_channels not in (1, 3):
            raise ValueError(f"PixelSpec.num_channels must be 1 or 3, got {self.num_channels}.")
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, self.num_channels):
                raise ValueError(f"PixelSpec.{name} needs 1 or {self.num_channels} values, got {getattr(self, name)}.")
        if min(self.std) <= 0:
            raise ValueError(f"PixelSpec.std must be positive, got {self.std}.")


def to_chw_uint8(image: Any) -> torch.Tensor:
    """A ``(C, H, W)`` uint8 tensor (C = 1 or 3) from a PIL image or a 0-255 array of shape (H, W) or (H, W, C)."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL, without importing it
        image = np.asarray(image if image.mode in ("L", "RGB") else image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or array.size == 0 or array.min() < 0 or array.max() > 255:
            raise TypeError(
                f"Images must be PIL images or integer arrays with values in 0-255, got dtype {array.dtype}. "
                "Scale float images with (x * 255).round().astype(np.uint8)."
            )
        array = array.astype(np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Images must have shape (H, W) or (H, W, C) with C in 1, 3, 4; got {array.shape}.")
    return torch.from_numpy(array[:, :, :3].copy()).permute(2, 0, 1)  # a copy: datasets hands out read-only arrays


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


def render_view(image: torch.Tensor, view: Sequence[int], spec: PixelSpec) -> torch.Tensor:
    """``pixel_values`` (float32, ``(spec.num_channels, *spec.size)``) of ``view`` of a uint8 ``(C, H, W)`` image:
    crop, antialiased bilinear resize, flip, grey <-> RGB as the model needs, then normalise."""
    top, left, height, width, flip = (int(v) for v in view)
    if (
        height < 1
        or width < 1
        or top < 0
        or left < 0
        or top + height > image.shape[1]
        or left + width > image.shape[2]
    ):
        raise ValueError(f"View {list(view)} does not fit an image of size {tuple(image.shape[1:])}.")
    crop = image[:, top : top + height, left : left + width].float().div_(255.0)
    if (height, width) != tuple(spec.size):
        crop = F.interpolate(crop[None], size=spec.size, mode="bilinear", antialias=True, align_corners=False)[0]
    if flip:
        crop = crop.flip(-1)
    if crop.shape[0] == 1 and spec.num_channels == 3:
        crop = crop.expand(3, -1, -1)
    elif crop.shape[0] == 3 and spec.num_channels == 1:
        crop = torch.einsum("chw,c->hw", crop, torch.tensor(_LUMA))[None]
    mean = torch.tensor(spec.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(spec.std, dtype=torch.float32)[:, None, None]
    return ((crop - mean) / std).contiguous()
