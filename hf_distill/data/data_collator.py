"""Collation of batches that carry teacher inputs beside the student's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from .top_k import indices_column


def pad_features(columns: dict[str, list], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Tensors from per-example values. Ragged sequences are right-padded (``*input_ids`` with ``pad_token_id``,
    others with 0) and get an attention mask when they have none; strings are dropped; floats become float32."""
    batch = {}
    for name, values in columns.items():
        if values[0] is None or isinstance(values[0], str):
            continue
        if len({np.shape(v) for v in values}) > 1:
            width = max(len(v) for v in values)
            padded = np.full((len(values), width), pad_token_id if name.endswith("input_ids") else 0, dtype=np.int64)
            for i, row in enumerate(values):
                padded[i, : len(row)] = row
            batch[name] = torch.from_numpy(padded)
            if name == "input_ids" and "attention_mask" not in columns:
                batch["attention_mask"] = (
                    torch.arange(width) < torch.tensor([len(v) for v in values])[:, None]
                ).long()
        elif isinstance(values[0], torch.Tensor):
            batch[name] = torch.stack(values)
        else:
            batch[name] = torch.as_tensor(np.asarray(values))
        if batch[name].is_floating_point():
            batch[name] = batch[name].float()
    return batch


@dataclass
class DataCollatorForDistillation:
    """Pads the student's features with ``tokenizer`` and the ``teacher_``-prefixed ones with ``teacher_tokenizer``.

    Use it when teacher and student tokenize differently: the dataset holds ``input_ids`` for the student and
    ``teacher_input_ids`` for the teacher, and each side is padded to its own longest sequence. Precomputed logits
    and labels pass through as float32 / int64 tensors, top-k class indices (``<teacher_logits_column>_indices``) as
    int64. Without a tokenizer, ragged token ids are padded with ``pad_token_id`` and other features (pixel values)
    are stacked.
    """

    tokenizer: PreTrainedTokenizerBase | None = None
    teacher_tokenizer: PreTrainedTokenizerBase | None = None
    teacher_input_prefix: str = "teacher_"
    teacher_logits_column: str = "teacher_logits"
    pad_to_multiple_of: int | None = None
    pad_token_id: int = 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prefix = self.teacher_input_prefix
        indices = indices_column(self.teacher_logits_column)

        def is_teacher_input(key: str) -> bool:
            return key.startswith(prefix) and key not in (self.teacher_logits_column, indices)

        student = [{k: v for k, v in f.items() if not is_teacher_input(k)} for f in features]
        teacher = [{k[len(prefix) :]: v for k, v in f.items() if is_teacher_input(k)} for f in features]
        batch = self._collate(student, self.tokenizer)
        if teacher[0]:
            teacher_batch = self._collate(teacher, self.teacher_tokenizer or self.tokenizer)
            batch.update({prefix + k: v for k, v in teacher_batch.items()})
        if indices in batch:
            batch[indices] = batch[indices].long()
        return batch

    def _collate(self, features: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase | None) -> dict:
        if tokenizer is None or "input_ids" not in features[0]:
            columns = {key: [f[key] for f in features] for key in features[0]}
            if "label" in columns:
                columns["labels"] = columns.pop("label")
            return pad_features(columns, self.pad_token_id)
        return dict(DataCollatorWithPadding(tokenizer, pad_to_multiple_of=self.pad_to_multiple_of)(features))
