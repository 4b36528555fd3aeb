import numpy as np
import pytest

from hf_distill.metrics import accuracy, agreement, classification_metrics, macro_f1


def test_macro_f1_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1, 2, 0])
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp1 fp0 fn1 -> 2/3
    assert macro_f1(predictions, labels) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert accuracy(predictions, labels) == pytest.approx(4 / 6)


def test_agreement_and_ignored_labels():
    student = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    teacher = np.array([[1.0, 0.0], [1.0, 0.0], [5.0, 1.0]])
    assert agreement(student, teacher) == pytest.approx(2 / 3)
    metrics = classification_metrics(student, np.array([0, -100, 1]))
    assert metrics["accuracy"] == pytest.approx(0.5)
