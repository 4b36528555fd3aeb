"""Classification metrics computed locally with scikit-learn and numpy (``evaluate.load`` needs the Hub)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from transformers import EvalPrediction


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(accuracy_score(np.asarray(labels), np.asarray(predictions)))


def macro_f1(predictions: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over ``range(num_classes)``, else over the classes present in labels or
    predictions (``sklearn.metrics.f1_score(average="macro")``; a class never predicted correctly scores 0)."""
    classes = list(range(num_classes)) if num_classes is not None else None
    return float(
        f1_score(np.asarray(labels), np.asarray(predictions), labels=classes, average="macro", zero_division=0.0)
    )


def agreement(student_logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Top-1 agreement: the share of examples on which student and teacher predict the same class."""
    return float((np.argmax(student_logits, -1) == np.argmax(teacher_logits, -1)).mean())


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def mean_kl(student_logits: np.ndarray, teacher_logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean over examples of ``KL(teacher_T || student_T)`` in nats, from log-probabilities in float64.

    This is the divergence knowledge distillation minimises (Hinton et al., 2015, "Distilling the Knowledge in a
    Neural Network"), without the ``T^2`` factor of the training loss.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    log_p_teacher = log_softmax(np.asarray(teacher_logits, dtype=np.float64) / temperature)
    log_p_student = log_softmax(np.asarray(student_logits, dtype=np.float64) / temperature)
    return float((np.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(-1).mean())


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence over ``num_bins`` equal-width bins ``(lo, hi]``.

    ``sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|`` (Guo et al., 2017, "On Calibration of Modern
    Neural Networks"). Rows labelled ``-100`` are skipped.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
    logits, labels = np.asarray(logits), np.asarray(labels)
    keep = labels != -100
    probabilities = np.exp(log_softmax(logits[keep]))
    confidence = probabilities.max(-1)
    correct = probabilities.argmax(-1) == labels[keep]
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    error = 0.0
    for b in np.unique(bins):
        members = bins == b
        error += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(error / max(len(confidence), 1))


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of logits against integer labels (``-100`` rows skipped)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    keep = labels != -100
    predictions = logits[keep].argmax(-1)
    return {"accuracy": accuracy(predictions, labels[keep]), "macro_f1": macro_f1(predictions, labels[keep])}


def teacher_student_metrics(
    student_logits: np.ndarray, teacher_logits: np.ndarray, temperature: float = 1.0
) -> dict[str, float]:
    """Top-1 agreement and mean ``KL(teacher || student)`` of a student's logits against its teacher's."""
    return {
        "agreement": agreement(student_logits, teacher_logits),
        "mean_kl": mean_kl(student_logits, teacher_logits, temperature),
    }


def compute_metrics_fn() -> Callable[[EvalPrediction], dict[str, float]]:
    """A ``compute_metrics`` for `Trainer`: accuracy and macro-F1 of the student's predictions."""

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_metrics(logits, prediction.label_ids)

    return compute_metrics
