"""`Dataset.set_transform` callables that turn images into student and teacher inputs of the same view."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.logit_columns import VIEW_INDEX_KEY
from .augment import RandomResizedCropFlip, crop_view, identity_view, to_pil
from .processing import PixelFormat

VIEWS_COLUMN = "teacher_views"


@dataclass
class DistillationImageTransform:
    """Turns a batch of ``image``/``label`` rows into ``pixel_values`` (the student's), ``teacher_pixel_values``
    (the teacher's, when ``teacher`` is given) and ``labels``, for ``dataset.set_transform(...)``.

    Each image gets ONE view, cropped and flipped once from the original pixels, then resized and normalised by each
    model's own image processor (:class:`PixelFormat`): with ``augment`` a fresh random view, else the whole image.
    Rows of a K-view cache (:func:`~hf_distill.vision.precompute_teacher_views`) carry
    ``views_column`` and ``K`` logits per image in ``teacher_logits_column``: one of the K stored views is drawn each
    time the row is read (once per epoch) and its logits are passed on, so augmentation needs no teacher in the loop.
    Without the logits column in the batch (`DistillationTrainer` reads it from Arrow, see
    :class:`~hf_distill.data.logit_columns.LogitColumns`), the drawn view's index is returned under ``VIEW_INDEX_KEY``.

    Randomness comes from a generator seeded with ``seed`` (and the DataLoader worker's seed in workers), so runs
    repeat exactly. Train with ``remove_unused_columns=False``: the transform needs the raw image column.

    ``clean_teacher_logits=True`` (with a one-view cache of the whole image) gives the student a fresh augmented
    view but the teacher's logits of the clean image: the mismatched baseline of the augmentation study (Beyer et al.,
    "Knowledge distillation: A good teacher is patient and consistent", 2022).
    """

    student: PixelFormat
    teacher: PixelFormat | None = None
    augment: RandomResizedCropFlip | None = None
    image_column: str = "image"
    label_column: str | None = "label"
    teacher_input_prefix: str = "teacher_"
    teacher_logits_column: str = "teacher_logits"
    views_column: str = VIEWS_COLUMN
    seed: int = 0
    clean_teacher_logits: bool = False
    _generators: dict[int, torch.Generator] = field(default_factory=dict, init=False, repr=False)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if self.image_column not in batch:
            raise ValueError(
                f"The batch has no image column {self.image_column!r} (its columns: {list(batch)}). If the dataset "
                "has it, the Trainer dropped it before this transform: train with remove_unused_columns=False "
                "(--remove_unused_columns false), since the transform needs the raw images. Else pass "
                "image_column=... (the recipe's --image_column_name)."
            )
        generator = self._generator()
        images = [to_pil(image) for image in batch[self.image_column]]
        out: dict[str, list[Any]] = {}
        if self.views_column in batch:
            picks = [int(torch.randint(len(views), (1,), generator=generator)) for views in batch[self.views_column]]
            views = [views[j] for views, j in zip(batch[self.views_column], picks, strict=True)]
            if self.teacher_logits_column in batch:
                out[self.teacher_logits_column] = [
                    torch.as_tensor(logits[j], dtype=torch.float32)
                    for logits, j in zip(batch[self.teacher_logits_column], picks, strict=True)
                ]
            else:  # `DistillationTrainer` reads the drawn view's logits from Arrow (`LogitColumns`)
                out[VIEW_INDEX_KEY] = picks
            if self.clean_teacher_logits and self.augment is not None:
                views = [self.augment.sample(image.height, image.width, generator) for image in images]
        elif self.augment is not None:
            views = [self.augment.sample(image.height, image.width, generator) for image in images]
        else:
            views = [identity_view(image.height, image.width) for image in images]
        if self.teacher_logits_column in batch and self.teacher_logits_column not in out:
            if self.augment is not None:
                raise ValueError(
                    f"Column {self.teacher_logits_column!r} holds the teacher's logits of the clean image, which do "
                    "not match randomly augmented views. Precompute K augmented views with "
                    "hf_distill.vision.precompute_teacher_views, or let the teacher run in the loop."
                )
            out[self.teacher_logits_column] = batch[self.teacher_logits_column]
        crops = [crop_view(image, view) for image, view in zip(images, views, strict=True)]
        out["pixel_values"] = list(self.student(crops))
        if self.teacher is not None:
            out[self.teacher_input_prefix + "pixel_values"] = list(self.teacher(crops))
        if self.label_column is not None and self.label_column in batch:
            out["labels"] = batch[self.label_column]
        return out

    def _generator(self) -> torch.Generator:
        worker = torch.utils.data.get_worker_info()
        key = -1 if worker is None else worker.id
        if key not in self._generators:
            seed = self.seed if worker is None else hash((self.seed, worker.seed)) % 2**63
            self._generators[key] = torch.Generator().manual_seed(seed)
        return self._generators[key]
