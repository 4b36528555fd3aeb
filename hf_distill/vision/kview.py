"""Teacher logits of K augmented views per image, computed once: augmentation without a teacher in the loop.

Logits of the clean image do not match a randomly cropped view. Instead, each image gets ``num_views`` random views,
stored as ``(top, left, height, width, flip)`` rows, with the teacher's logits of each view (prepared by the teacher's
image processor). :class:`~hf_distill.vision.DistillationImageTransform` then draws one stored view per epoch and
prepares it for the student. The same idea as the "FKD" relabelling of Shen & Xing (2022) and the augmentation-aware
precomputation of Beyer et al., "Knowledge distillation: A good teacher is patient and consistent" (2022).
"""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset, DatasetDict, List, Value
from transformers import PreTrainedModel

from ..data.precompute import TeacherRunner, check_storage_options, teacher_runner, write_teacher_columns
from .augment import VIEW_SIZE, RandomResizedCropFlip, crop_view, identity_view, to_pil
from .processing import PixelFormat
from .transforms import VIEWS_COLUMN


def view_generator(seed: int, index: int) -> torch.Generator:
    """The generator that samples the views of row ``index``: the views depend on the seed and the row only."""
    return torch.Generator().manual_seed(hash((seed, index)) % 2**63)


def precompute_teacher_views(
    teacher: PreTrainedModel | str,
    dataset: Dataset | DatasetDict,
    *,
    teacher_format: PixelFormat,
    augment: RandomResizedCropFlip | None,
    num_views: int | None = None,
    image_column: str = "image",
    column: str = "teacher_logits",
    views_column: str = VIEWS_COLUMN,
    seed: int = 0,
    batch_size: int = 64,
    dtype: str = "float32",
    device: str | torch.device | None = None,
    autocast: bool = True,
    load_from_cache_file: bool = True,
) -> Dataset | DatasetDict:
    """``dataset`` plus ``views_column`` (``num_views`` views per image) and ``column`` (the teacher's logits of each
    view, shape ``(num_views, num_labels)``); ``num_views`` defaults to 4, or 1 with ``augment=None``, where the single
    view is the whole image (for evaluation splits). Views depend only on ``seed`` and the row index; results are cached
    by `datasets` like :func:`~hf_distill.precompute_teacher_logits`, and the column records the teacher and its label
    order. The teacher runs on ``device`` (default as for ``precompute_teacher_logits``); under several processes
    every process computes every view (no sharding yet)."""
    if num_views is None:
        num_views = 1 if augment is None else 4
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}.")
    if augment is None and num_views != 1:
        raise ValueError(f"Without augment every view is the whole image: use num_views=1, not {num_views}.")
    check_storage_options(dtype, batch_size)
    runner = teacher_runner(teacher, device, autocast, pad_token_id=0)
    options = dict(
        teacher_format=teacher_format,
        augment=augment,
        num_views=num_views,
        image_column=image_column,
        column=column,
        views_column=views_column,
        seed=seed,
        batch_size=batch_size,
        dtype=dtype,
        load_from_cache_file=load_from_cache_file,
    )
    if isinstance(dataset, DatasetDict):
        return DatasetDict({split: _precompute_split(runner, ds, **options) for split, ds in dataset.items()})
    return _precompute_split(runner, dataset, **options)


def _precompute_split(
    runner: TeacherRunner,
    dataset: Dataset,
    *,
    teacher_format: PixelFormat,
    augment: RandomResizedCropFlip | None,
    num_views: int,
    image_column: str,
    column: str,
    views_column: str,
    seed: int,
    batch_size: int,
    dtype: str,
    load_from_cache_file: bool,
) -> Dataset:
    if image_column not in dataset.column_names:
        raise ValueError(f"The dataset has no image column {image_column!r}; its columns are {dataset.column_names}.")
    dataset = dataset.remove_columns([c for c in (column, views_column) if c in dataset.column_names])
    num_labels = len(runner.labels)

    def add_views(images: list, indices: list[int]) -> dict[str, np.ndarray]:
        views, crops = [], []
        for image, index in zip(images, indices, strict=True):
            image = to_pil(image)
            generator = view_generator(seed, index)
            for _ in range(num_views):
                if augment is None:
                    view = identity_view(image.height, image.width)
                else:
                    view = augment.sample(image.height, image.width, generator)
                views.append(view)
                crops.append(crop_view(image, view))
        logits = np.concatenate(
            [
                runner({"pixel_values": list(teacher_format(crops[i : i + batch_size]))})
                for i in range(0, len(crops), batch_size)
            ]
        )
        if not np.isfinite(logits).all():
            raise ValueError("The teacher produced NaN/inf logits. Run it in float32 (autocast=False).")
        return {
            views_column: np.asarray(views, dtype=np.int32).reshape(len(images), num_views, VIEW_SIZE),
            column: logits.astype(dtype).reshape(len(images), num_views, num_labels),
        }

    key = [teacher_format, augment, num_views, image_column, column, views_column, seed, dtype]
    new_columns = {
        views_column: List(List(Value("int32"), length=VIEW_SIZE), length=num_views),
        column: List(List(Value(dtype), length=num_labels), length=num_views),
    }
    return write_teacher_columns(
        runner,
        dataset,
        add_views,
        new_columns=new_columns,
        input_columns=[image_column],
        batch_size=batch_size,
        key=[repr(value) for value in key],
        column=column,
        dtype=dtype,
        load_from_cache_file=load_from_cache_file,
        with_indices=True,
        desc=f"Teacher logits of {num_views} view(s)",
    )
