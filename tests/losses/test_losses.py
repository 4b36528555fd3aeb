import math

import pytest
import torch

from hf_distill import available_losses, distillation_loss, get_loss, register_loss
from hf_distill.losses import _LOSSES


def reference_loss(student, teacher, labels, alpha, temperature):
    """Float64 reference written from the definitions, not from the library's code."""
    s, t = student.double(), teacher.double()
    p_t = torch.softmax(t / temperature, -1)
    log_p_s = torch.log_softmax(s / temperature, -1)
    kd = (p_t * (torch.log(p_t) - log_p_s)).sum(-1).mean() * temperature**2
    mask = labels != -100
    log_probs = torch.log_softmax(s, -1)[mask]
    ce = -log_probs.gather(1, labels[mask].unsqueeze(1)).mean()
    return alpha * ce + (1 - alpha) * kd, ce, kd


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 8.0])
def test_kl_loss_matches_float64_reference(alpha, temperature):
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 5, generator=g) * 3, torch.randn(6, 5, generator=g) * 3
    labels = torch.tensor([0, 4, -100, 2, 1, 3])
    out = distillation_loss(student, teacher, labels, alpha=alpha, temperature=temperature)
    ref, ref_ce, ref_kd = reference_loss(student, teacher, labels, alpha, temperature)
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss.double(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.ce.double(), ref_ce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.kd.double(), ref_kd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("temperature", [0.5, 2.0, 8.0])
def test_kl_gradient_matches_float64_reference_and_leaves_the_teacher_alone(temperature):
    g = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(8, 1000, generator=g) * 4, torch.randn(8, 1000, generator=g) * 4
    teacher.requires_grad_(True)
    reference = student.double().requires_grad_(True)
    _, _, ref_kd = reference_loss(reference, teacher.detach(), torch.zeros(8, dtype=torch.long), 0.0, temperature)
    ref_kd.backward()
    fast = student.clone().requires_grad_(True)
    get_loss("kl")(fast, teacher, temperature).backward()
    torch.testing.assert_close(fast.grad.double(), reference.grad, rtol=1e-4, atol=1e-7)
    assert teacher.grad is None
    low = student.bfloat16().requires_grad_(True)
    get_loss("kl")(low, teacher.half(), temperature).backward()
    assert low.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("labels", [[0, 999, -100, 2, 5, 7, 1, 3], [-100] * 8])
@pytest.mark.parametrize(("temperature", "spread"), [(2.0, 4.0), (1.0, 4.0), (3.0, 4.0), (4.0, 30.0), (2.5, 4.0)])
def test_ce_and_kl_in_one_step_match_float64_gradients(label_smoothing, labels, temperature, spread):
    """The default objective computes CE and KL in one step; its values and gradient match float64 references of both
    parts, with label smoothing and ``-100`` labels (a batch with none labelled gets the KL's gradient only), at the
    temperatures where the label softmax is the tempered one (1), its power (2, 3, 4; with logits 30 apart on
    average at 4, where powers underflow) or its own exponential (2.5)."""
    g = torch.Generator().manual_seed(4)
    student, teacher = torch.randn(8, 1000, generator=g) * spread, torch.randn(8, 1000, generator=g) * 4
    labels = torch.tensor(labels)
    reference = student.double().requires_grad_(True)
    _, _, ref_kd = reference_loss(reference, teacher, labels, 0.0, temperature)
    ce_terms = torch.nn.functional.cross_entropy(reference, labels, label_smoothing=label_smoothing, reduction="sum")
    ref_ce = ce_terms / (labels != -100).sum().clamp(min=1)
    (0.3 * ref_ce + 0.7 * ref_kd).backward()
    fast = student.clone().requires_grad_(True)
    out = distillation_loss(fast, teacher, labels, alpha=0.3, temperature=temperature, label_smoothing=label_smoothing)
    out.loss.backward()
    torch.testing.assert_close(out.ce.double(), ref_ce.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.kd.double(), ref_kd.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.grad.double(), reference.grad, rtol=1e-4, atol=1e-7)
    low = student.bfloat16().requires_grad_(True)
    distillation_loss(low, teacher.half(), labels, alpha=0.3, temperature=2.0).loss.backward()
    assert low.grad.dtype == torch.bfloat16


def test_a_label_outside_the_classes_is_an_error_not_a_class():
    for label in (5, -1):
        with pytest.raises((IndexError, RuntimeError)):
            distillation_loss(torch.randn(2, 5), torch.randn(2, 5), torch.tensor([0, label]), alpha=0.5, temperature=2)


def test_half_precision_logits_give_float32_loss_close_to_reference():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    labels = torch.tensor([1, 2, 3, 4])
    out = distillation_loss(student.bfloat16(), teacher.half(), labels, alpha=0.5, temperature=2.0)
    ref, _, _ = reference_loss(student.bfloat16().float(), teacher.half().float(), labels, 0.5, 2.0)
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss.double(), ref, rtol=1e-5, atol=1e-6)


def test_kl_stays_finite_at_huge_logit_margins():
    student = torch.tensor([[200.0, -200.0, 0.0]])
    teacher = torch.tensor([[-200.0, 200.0, 0.0]])
    out = distillation_loss(student, teacher, None, alpha=0.0, temperature=1.0)
    assert math.isfinite(out.loss.item()) and out.loss.item() > 100


def test_identical_logits_give_zero_kd():
    logits = torch.randn(3, 4)
    out = distillation_loss(logits, logits.clone(), None, alpha=0.0, temperature=3.0)
    assert out.kd.abs().item() < 1e-6


def test_mse_loss_matches_reference():
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    out = distillation_loss(student, teacher, None, alpha=0.0, temperature=4.0, loss="mse")
    expected = ((student.double() - teacher.double()) ** 2).mean()
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=1e-6)


def test_all_ignored_labels_give_zero_ce_not_nan():
    out = distillation_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([-100, -100]), alpha=0.5, temperature=1)
    assert out.ce.item() == 0.0 and math.isfinite(out.loss.item())


def test_alpha_above_zero_without_labels_is_refused():
    with pytest.raises(ValueError, match="alpha=0.5.*no `labels`.*alpha=0"):
        distillation_loss(torch.randn(2, 3), torch.randn(2, 3), None, alpha=0.5, temperature=1.0)


def test_unknown_loss_lists_known_losses():
    with pytest.raises(ValueError, match="Unknown distillation_loss 'nope'.*kl.*mse"):
        get_loss("nope")


def test_registering_a_loss_takes_a_few_lines():
    @register_loss("l1_test")
    def l1(student_logits, teacher_logits, temperature, labels=None):
        return (student_logits.float() - teacher_logits.float()).abs().mean()

    try:
        assert "l1_test" in available_losses()
        out = distillation_loss(torch.ones(2, 3), torch.zeros(2, 3), None, alpha=0.0, temperature=1.0, loss="l1_test")
        assert out.loss.item() == pytest.approx(1.0)
        with pytest.raises(ValueError, match="already registered"):
            register_loss("l1_test")(l1)
    finally:
        _LOSSES.pop("l1_test")
