import numpy as np
import pytest

from hf_distill.evaluation.metrics import accuracy, agreement, classification_metrics, macro_f1


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


def test_mean_kl_matches_float64_torch_and_stays_finite():
    import torch
    import torch.nn.functional as F

    from hf_distill.evaluation.metrics import mean_kl

    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(7, 5, generator=g) * 3, torch.randn(7, 5, generator=g) * 3
    teacher[0, 1] += 200.0  # a margin at which log(softmax) underflows
    for temperature in (1.0, 4.0):
        reference = F.kl_div(
            F.log_softmax(student.double() / temperature, -1),
            F.log_softmax(teacher.double() / temperature, -1),
            log_target=True,
            reduction="batchmean",
        )
        value = mean_kl(student.float().numpy(), teacher.float().numpy(), temperature)
        assert np.isfinite(value)
        assert value == pytest.approx(reference.item(), rel=1e-5)
    assert mean_kl(teacher.numpy(), teacher.numpy()) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="temperature"):
        mean_kl(student.numpy(), teacher.numpy(), temperature=0)


def test_expected_calibration_error_by_hand():
    from hf_distill.evaluation.metrics import expected_calibration_error

    probabilities = np.array(
        [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.4, 0.35, 0.25], [0.2, 0.3, 0.5]]
    )
    labels = np.array([0, 1, 0, 2, -100])
    # bin (0, 0.5]: confidences 0.4, 0.4, accuracy 0.5 -> |0.5 - 0.4| * 2/4; bin (0.5, 1]: |0.5 - 0.9| * 2/4
    assert expected_calibration_error(np.log(probabilities), labels, num_bins=2) == pytest.approx(0.05 + 0.2)
    confident_and_right = np.log(np.array([[1.0 - 2e-12, 1e-12, 1e-12]] * 3))
    assert expected_calibration_error(confident_and_right, np.zeros(3, dtype=int)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="num_bins"):
        expected_calibration_error(np.log(probabilities), labels, num_bins=0)


def test_evaluate_module_loads_by_path_offline():
    evaluate = pytest.importorskip("evaluate")
    import hf_distill.evaluate_metric
    from hf_distill.evaluation.metrics import expected_calibration_error, mean_kl

    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(12, 3)), rng.normal(size=(12, 3))
    labels = np.arange(12) % 3
    metric = evaluate.load(hf_distill.evaluate_metric.PATH)
    results = metric.compute(predictions=student, references=teacher, labels=labels, num_bins=5)
    assert results["agreement"] == pytest.approx(agreement(student, teacher))
    assert results["mean_kl"] == pytest.approx(mean_kl(student, teacher), rel=1e-5)  # float32 features
    assert results["accuracy"] == pytest.approx(accuracy(student.argmax(-1), labels))
    assert results["ece"] == pytest.approx(expected_calibration_error(student, labels, 5), abs=1e-5)
    for start in (0, 6):
        metric.add_batch(predictions=student[start : start + 6], references=teacher[start : start + 6])
    assert set(metric.compute()) == {"agreement", "mean_kl"}
