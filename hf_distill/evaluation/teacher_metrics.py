"""The teacher's own metrics on each evaluation set, from the teacher logits the loss already computed.

The trainer opens a collection with an explicit key per evaluation set (:meth:`TeacherMetrics.collecting`), the
loss adds each labelled batch's teacher logits to it, and the metrics are computed once per key and reported with
every later evaluation of that set.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import datasets
import torch

from ..losses import TopKLogits

MetricsFn = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]


def evaluation_set_key(dataset: Any) -> Hashable | None:
    """The key of an evaluation set: a `datasets.Dataset`'s fingerprint (the same data gives the same key); ``None``
    for data that cannot be told apart (its teacher metrics are computed again at each evaluation)."""
    return dataset._fingerprint if isinstance(dataset, datasets.Dataset) else None


class TeacherMetrics:
    """Teacher metrics per evaluation set; ``gather`` collects ``(logits, labels)`` across processes."""

    def __init__(self, gather: Callable[[tuple[torch.Tensor, torch.Tensor]], Any]):
        self.gather = gather
        self.by_set: dict[Hashable, dict[str, float]] = {}
        self._key: Hashable | None = None
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @contextmanager
    def evaluating(self, key: Hashable | None) -> Iterator[None]:
        """Within: an evaluation of the set ``key``, whose teacher logits are collected unless its metrics are known."""
        outer = self._key, self._batches
        self._key = key
        self._batches = None if key in self.by_set else []
        try:
            yield
        finally:
            self._key, self._batches = outer

    def add(
        self,
        teacher_logits: torch.Tensor | TopKLogits | None,
        labels: torch.Tensor | None,
        classes: int,
        temperature: float,
    ) -> None:
        """Add a batch's teacher logits (top-k ones made dense at ``temperature``) while an evaluation collects."""
        if self._batches is None or teacher_logits is None or labels is None:
            return
        if isinstance(teacher_logits, TopKLogits):
            teacher_logits = teacher_logits.dense(classes, temperature)
        self._batches.append(self.gather((teacher_logits.detach(), labels)))

    def result(self, compute: MetricsFn) -> dict[str, float]:
        """The teacher's metrics on the set being evaluated: ``compute(logits, labels)`` of the collected batches,
        once per set, then the stored ones; empty without labelled batches."""
        if self._batches:
            logits = torch.cat([logits for logits, _ in self._batches])
            labels = torch.cat([labels for _, labels in self._batches])
            self._batches = None
            metrics = compute(logits, labels)
            if self._key is not None:
                self.by_set[self._key] = metrics
            return metrics
        return self.by_set.get(self._key, {}) if self._key is not None else {}
