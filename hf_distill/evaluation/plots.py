"""Uncertainty and figures for comparisons: percentile-bootstrap intervals over the evaluation set
(Efron & Tibshirani, "An Introduction to the Bootstrap", 1993; through `scipy.stats.bootstrap`) and the
two-panel plot of :class:`~hf_distill.evaluation.compare.ComparisonReport`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .model_result import ModelResult

BACKEND_MARKERS = {"pytorch": "o", "onnxruntime": "s", "onnxruntime-int8": "D"}
BACKEND_NAMES = {"pytorch": "PyTorch", "onnxruntime": "ONNX Runtime", "onnxruntime-int8": "ONNX Runtime int8"}


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
    Right: agreement with the teacher against speed-up, with the teacher's own speed (1x) marked. Models are told
    apart by colour and backends by marker, in one legend below the panels (each model named once, with its size);
    the models sharing a backend are nudged a few points apart so that their markers and intervals do not cover each
    other. The title names the dataset (``settings["dataset"]``, when known) and the number of examples."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.transforms import offset_copy
    except ImportError as error:
        raise ImportError("The comparison plot needs matplotlib: pip install matplotlib") from error
    labelled = results[0].accuracy is not None
    metric = "accuracy" if labelled else "agreement"
    figure = Figure(figsize=(10, 5.2), dpi=120, layout="constrained")
    left, right = figure.subplots(1, 2)
    models: dict[str, ModelResult] = {}  # base name (backend suffix removed) -> its first row
    for r in results:
        models.setdefault(r.name.split(" (")[0], r)
    colours = {name: f"C{i % 10}" for i, name in enumerate(models)}
    students = [name for name, r in models.items() if r.role == "student"]
    nudge = {name: 6.0 * (i - (len(students) - 1) / 2) for i, name in enumerate(students)}  # points
    for r in results:
        base = r.name.split(" (")[0]
        style = {
            "fmt": "*" if r.role == "teacher" else BACKEND_MARKERS.get(r.backend, "o"),
            "color": colours[base],
            "markersize": 12 if r.role == "teacher" else 8,
            "capsize": 3,
        }
        y, low, high = getattr(r, metric), getattr(r, f"{metric}_low"), getattr(r, f"{metric}_high")
        error = None if low is None else [[y - low], [high - y]]
        shift = offset_copy(left.transData, figure, x=nudge.get(base, 0.0), units="points")
        _move(left.errorbar(r.latency_ms_median, y, yerr=error, **style), shift)
        if r.role == "student":
            low, high = r.agreement_low, r.agreement_high
            error = None if low is None else [[r.agreement - low], [high - r.agreement]]
            shift = offset_copy(right.transData, figure, x=nudge.get(base, 0.0), units="points")
            _move(right.errorbar(r.speedup, r.agreement, yerr=error, **style), shift)
    right.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    right.text(1.0, 0.98, " teacher's speed (1x)", transform=right.get_xaxis_transform(), color="grey", fontsize=8,
               rotation=90, ha="right", va="top")  # fmt: skip
    level = settings.get("confidence_level", 0.95)
    left.set_xlabel(f"batch-1 median latency (ms), {_hardware(settings)}")
    left.set_ylabel(f"{'accuracy' if labelled else 'top-1 agreement with the teacher'} ({level:.0%} bootstrap CI)")
    left.set_title(f"{metric.capitalize()} against latency")
    right.set_xlabel("speed-up over the teacher (teacher latency / model latency)")
    right.set_ylabel(f"top-1 agreement with the teacher ({level:.0%} CI)")
    right.set_title("What a student keeps, against what it saves")
    figure.suptitle(title or _default_title(settings))
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.margins(x=0.15, y=0.15)
    right.set_xlim(0, right.get_xlim()[1])  # speed-ups from 0, so that 1x sits where it belongs
    handles = [
        Line2D([], [], color=colours[name], marker="*" if r.role == "teacher" else "o", linestyle="",
               markersize=9, label=f"{name} ({format_count(r.num_parameters)} params)")
        for name, r in models.items()
    ]  # fmt: skip
    backends = list(dict.fromkeys(r.backend for r in results if r.role == "student"))
    if len(backends) > 1:
        handles += [
            Line2D([], [], color="grey", marker=BACKEND_MARKERS.get(b, "o"), linestyle="", markersize=7,
                   label=BACKEND_NAMES.get(b, b))
            for b in backends
        ]  # fmt: skip
    columns = len(handles) if len(handles) <= 6 else 4
    figure.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize=8, frameon=False)
    figure.savefig(path, format="png")
    return Path(path)


def _move(container, transform) -> None:
    """Draw an errorbar's marker, bar and caps with ``transform`` (a nudge); the axes keep the limits of the data."""
    for artist in container.get_children():
        artist.set_transform(transform)


def _hardware(settings: dict) -> str:
    """``cpu, 1 thread`` / ``cuda`` for an axis label."""
    device, threads = settings.get("device", "?"), settings.get("num_threads")
    if device != "cpu" or threads is None:
        return str(device)
    return f"{device}, {threads} thread{'' if threads == 1 else 's'}"


def _default_title(settings: dict) -> str:
    n = settings.get("num_examples")
    examples = f"{n:,} examples" if isinstance(n, int) else "the evaluation set"
    dataset = settings.get("dataset")
    return f"Teacher vs. students on {dataset} ({examples})" if dataset else f"Teacher vs. students on {examples}"


def format_count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"
