"""Streamed data (`datasets.IterableDataset`)."""

from __future__ import annotations

import copy
import itertools

from datasets import Dataset, IterableDataset


def first_rows(dataset: IterableDataset, n: int) -> Dataset:
    """The first ``n`` rows of a stream as a map-style `Dataset` with the stream's features and info (provenance)."""
    rows = list(itertools.islice(dataset.with_format(None), n))
    return Dataset.from_list(rows, features=dataset.features, info=copy.deepcopy(dataset.info))
