"""The one latency timer: ``torch.utils.benchmark`` calls of several models, interleaved call by call.

Used by ``hf-distill compare`` (latency and throughput) and by structured pruning (latency before and after).
Interleaving makes load drifts on a shared machine hit every model alike; each call is one
``torch.utils.benchmark.Timer.timeit(1)``, which synchronises CUDA and sets the number of torch threads.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.utils.benchmark as benchmark
from tqdm.auto import tqdm


def time_calls(
    runs: Mapping[str, Callable[[Any], Any]], batches: Sequence[Any], warmup_runs: int = 1, threads: int = 1
) -> dict[str, list[float]]:
    """Seconds of each call ``runs[name](batch)`` for every batch in turn, after ``warmup_runs`` untimed calls of each,
    the runs interleaved call by call, with ``threads`` torch threads."""
    timers = {
        name: benchmark.Timer(
            "run(next(batches))", globals={"run": run, "batches": itertools.cycle(batches)}, num_threads=threads
        )
        for name, run in runs.items()
    }
    if warmup_runs:
        for timer in timers.values():
            timer.timeit(warmup_runs)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in tqdm(range(len(batches)), desc="Timing", unit="run", leave=False, disable=None):
        for name, timer in timers.items():
            times[name].append(timer.timeit(1).median)
    return times
