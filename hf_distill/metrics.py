"""Classification metrics computed locally with numpy (``evaluate.load`` needs the Hub)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from transformers import EvalPrediction


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(predictions) == np.asarray(labels)).mean())


def macro_f1(predictions: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions (as scikit-learn)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    classes = range(num_classes) if num_classes is not None else np.union1d(predictions, labels)
    scores = []
    for c in classes:
        tp = np.sum((predictions == c) & (labels == c))
        fp = np.sum((predictions == c) & (labels != c))
        fn = np.sum((predictions != c) & (labels == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def agreement(student_logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Top-1 agreement: the share of examples on which student and teacher predict the same class."""
    return float((np.argmax(student_logits, -1) == np.argmax(teacher_logits, -1)).mean())


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of logits against integer labels (``-100`` rows skipped)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    keep = labels != -100
    predictions = logits[keep].argmax(-1)
    return {"accuracy": accuracy(predictions, labels[keep]), "macro_f1": macro_f1(predictions, labels[keep])}


def compute_metrics_fn() -> Callable[[EvalPrediction], dict[str, float]]:
    """A ``compute_metrics`` for `Trainer`: accuracy and macro-F1 of the student's predictions."""

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_metrics(logits, prediction.label_ids)

    return compute_metrics
