"""One model's row of a comparison. A module of its own so that the comparison (``compare``) and its figure
(``plots``) both read it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelResult:
    """One row of a :class:`~hf_distill.evaluation.compare.ComparisonReport`. Ratios are the teacher's value over this model's (teacher = 1)."""

    name: str
    role: str
    num_parameters: int
    size_bytes: int
    latency_ms_median: float
    latency_ms_p95: float
    throughput: float
    speedup: float
    throughput_speedup: float
    compression: float
    size_compression: float
    accuracy: float | None = None
    macro_f1: float | None = None
    ece: float | None = None
    agreement: float | None = None
    mean_kl: float | None = None
    backend: str = "pytorch"
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    agreement_low: float | None = None
    agreement_high: float | None = None
