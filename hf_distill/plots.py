"""Uncertainty and figures for comparisons: percentile-bootstrap intervals over the evaluation set
(Efron & Tibshirani, "An Introduction to the Bootstrap", 1993; through `scipy.stats.bootstrap`) and the
two-panel plot of :class:`~hf_distill.compare.ComparisonReport`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .compare import ModelResult

BACKEND_MARKERS = {"pytorch": "o", "onnxruntime": "s", "onnxruntime-int8": "D"}


def bootstrap_interval(
    hits: np.ndarray, n_resamples: int = 1000, confidence_level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of per-example 0/1 ``hits`` (accuracy, agreement): examples are
    resampled with replacement ``n_resamples`` times. The same ``seed`` draws the same resamples for every model."""
    from scipy.stats import bootstrap

    hits = np.asarray(hits, dtype=np.float64)
    if hits.ndim != 1 or len(hits) == 0:
        raise ValueError(f"hits must be a non-empty 1-D array, got shape {hits.shape}.")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}.")
    result = bootstrap(
        (hits,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence_level,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def plot_comparison(
    results: Sequence[ModelResult], settings: dict, path: str | os.PathLike, title: str | None = None
) -> Path:
    """Left: accuracy (agreement without labels) with its bootstrap interval against batch-1 median latency.
    Right: agreement with the teacher against speed-up. Models are told apart by colour (one per model) and marker
    (one per backend) in a shared legend below the panels, so no label can overlap a point or another label."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("The comparison plot needs matplotlib: pip install matplotlib") from error
    labelled = results[0].accuracy is not None
    metric = "accuracy" if labelled else "agreement"
    figure = Figure(figsize=(10, 4.8), dpi=120, layout="constrained")
    left, right = figure.subplots(1, 2)
    colours = {}
    for r in results:
        base = r.name.split(" (")[0]
        colours.setdefault(base, f"C{len(colours) % 10}")
    for r in results:
        colour = colours[r.name.split(" (")[0]]
        marker = "*" if r.role == "teacher" else BACKEND_MARKERS.get(r.backend, "o")
        size = 12 if r.role == "teacher" else 8
        y, low, high = getattr(r, metric), getattr(r, f"{metric}_low"), getattr(r, f"{metric}_high")
        error = None if low is None else [[y - low], [high - y]]
        left.errorbar(
            r.latency_ms_median, y, yerr=error, fmt=marker, color=colour, markersize=size, capsize=3,
            label=f"{r.name}, {format_count(r.num_parameters)} params",
        )  # fmt: skip
        if r.role == "student":
            error = (
                None
                if r.agreement_low is None
                else [[r.agreement - r.agreement_low], [r.agreement_high - r.agreement]]
            )
            right.errorbar(r.speedup, r.agreement, yerr=error, fmt=marker, color=colour, markersize=size, capsize=3)
    right.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    level = settings.get("confidence_level", 0.95)
    left.set_xlabel(
        f"batch-1 median latency (ms), {settings.get('device', '')}, {settings.get('num_threads', '?')} threads"
    )
    left.set_ylabel(f"{'accuracy' if labelled else 'top-1 agreement with the teacher'} ({level:.0%} bootstrap CI)")
    left.set_title(title or f"{metric.capitalize()} against latency")
    right.set_xlabel("speed-up over the teacher (teacher latency / model latency)")
    right.set_ylabel(f"top-1 agreement with the teacher ({level:.0%} CI)")
    right.set_title("What a student keeps, against what it saves")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.margins(x=0.15, y=0.15)
    figure.legend(loc="outside lower center", ncols=min(3, len(results)), fontsize=8, frameon=False)
    figure.savefig(path, format="png")
    return Path(path)


def format_count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"
