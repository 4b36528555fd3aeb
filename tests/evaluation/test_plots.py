"""The comparison plot: labels a reader can trust, one legend entry per model and backend, no hidden markers."""

import pytest

from hf_distill.evaluation.compare import ModelResult
from hf_distill.evaluation.plots import plot_comparison

pytest.importorskip("matplotlib")


def result(name: str, role: str, backend: str, latency: float, accuracy: float, params: int) -> ModelResult:
    return ModelResult(
        name=name, role=role, num_parameters=params, size_bytes=4 * params, latency_ms_median=latency,
        latency_ms_p95=latency * 1.2, throughput=100 / latency, speedup=4.0 / latency, throughput_speedup=1.0,
        compression=1.0, size_compression=1.0, accuracy=accuracy, agreement=None if role == "teacher" else 0.9,
        backend=backend, accuracy_low=accuracy - 0.02, accuracy_high=accuracy + 0.02,
    )  # fmt: skip


def test_plot_names_dataset_threads_and_the_teachers_speed_once_per_model(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *args, **kwargs: saved.append(self))
    results = [
        result("teacher", "teacher", "pytorch", 4.0, 0.80, 22_700_000),
        result("kd", "student", "pytorch", 2.0, 0.78, 17_400_000),
        result("kd (onnxruntime)", "student", "onnxruntime", 1.0, 0.78, 17_400_000),
        result("ce", "student", "pytorch", 2.0, 0.78, 17_400_000),  # same point as kd's
        result("ce (onnxruntime)", "student", "onnxruntime", 1.0, 0.77, 17_400_000),
    ]
    settings = {"device": "cpu", "num_threads": 1, "num_examples": 2000, "dataset": "tweet_sentiment, test split"}
    plot_comparison(results, settings, tmp_path / "plot.png")
    (figure,) = saved
    left, right = figure.axes
    assert figure.get_suptitle() == "Teacher vs. students on tweet_sentiment, test split (2,000 examples)"
    assert left.get_xlabel().endswith("cpu, 1 thread")
    assert any("teacher's speed (1x)" in text.get_text() for text in right.texts)
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == [
        "teacher (22.7M params)", "kd (17.4M params)", "ce (17.4M params)", "PyTorch", "ONNX Runtime",
    ]  # fmt: skip
    figure.canvas.draw()
    kd, ce = (left.containers[i].lines[0].get_transform().transform((2.0, 0.78)) for i in (1, 3))  # their markers
    assert abs(kd[0] - ce[0]) > 5  # pixels apart: the same point is drawn side by side, not on top
