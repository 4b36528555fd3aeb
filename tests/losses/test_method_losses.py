"""The method losses (dkd, dist, reverse_kl, jsd) against float64 references written from the papers' definitions."""

import math

import numpy as np
import pytest
import torch

from hf_distill.losses import (
    dist_loss,
    distillation_loss,
    dkd_loss,
    generalized_jsd_loss,
    get_loss,
    kl_divergence_loss,
    loss_hyperparameters,
    reverse_kl_loss,
)
from tests.references import dist_reference, dkd_reference, jsd_reference, kl64, probs

SHAPES = [(1, 2), (3, 10), (16, 2), (16, 1000), (5, 37)]
TEMPERATURES = [0.5, 1.0, 4.0, 8.0]


def random_logits(batch, classes, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, classes, generator=g) * scale, torch.randn(batch, classes, generator=g) * scale


def random_labels(batch, classes, seed=0, ignored=True):
    labels = torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(seed + 1))
    if ignored and batch > 1:
        labels[::3] = -100
    return labels


def assert_matches(value, reference):
    assert value.dtype == torch.float32
    torch.testing.assert_close(value.double(), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch,classes", SHAPES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_dkd_matches_float64_reference(batch, classes, temperature):
    student, teacher = random_logits(batch, classes)
    labels = random_labels(batch, classes)
    for alpha, beta in [(1.0, 8.0), (0.5, 2.0)]:
        value = dkd_loss(student, teacher, temperature, labels, dkd_alpha=alpha, dkd_beta=beta)
        assert_matches(value, dkd_reference(student, teacher, labels, temperature, alpha, beta))


@pytest.mark.parametrize("batch,classes", SHAPES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_dkd_with_identity_weights_equals_kl(batch, classes, temperature):
    """The paper's identity KD = TCKD + (1 - p_t) NCKD, per example (p_t: the teacher's target probability)."""
    student, teacher = random_logits(batch, classes, seed=3)
    labels = random_labels(batch, classes, seed=3, ignored=False)
    p_target = probs(teacher, temperature).gather(1, labels[:, None])[:, 0]
    for i in range(batch):
        row = slice(i, i + 1)
        dkd = dkd_loss(
            student[row], teacher[row], temperature, labels[row], dkd_alpha=1.0, dkd_beta=1 - p_target[i].item()
        )
        kl = kl_divergence_loss(student[row], teacher[row], temperature)
        torch.testing.assert_close(dkd, kl, rtol=1e-4, atol=1e-5)


def test_dkd_gives_rows_without_a_label_the_plain_kd_part():
    student, teacher = random_logits(4, 5)
    student.requires_grad_(True)
    labels = torch.tensor([1, -100, 3, -100])
    mixed = dkd_loss(student, teacher, 2.0, labels)
    # each row counts once in the mean: DKD for the labelled rows, Hinton's KD for the others
    labelled = dkd_loss(student[[0, 2]], teacher[[0, 2]], 2.0, labels[[0, 2]])
    unlabelled = kl_divergence_loss(student[[1, 3]], teacher[[1, 3]], 2.0)
    torch.testing.assert_close(mixed, (labelled + unlabelled) / 2)
    # a batch whose labels are all -100, and one without labels (predict on a test set), train as KD: not 0
    for none in (torch.full((4,), -100), None):
        loss = dkd_loss(student, teacher, 2.0, none)
        torch.testing.assert_close(loss, kl_divergence_loss(student, teacher, 2.0))
        (grad,) = torch.autograd.grad(loss, student)
        assert loss.item() > 0 and grad.abs().sum() > 0
    # control: a labelled row is decoupled, not KD (beta=8 weighs NCKD far above KD's 1 - p_t)
    assert not torch.allclose(labelled, kl_divergence_loss(student[[0, 2]], teacher[[0, 2]], 2.0))


def test_dkd_is_the_same_in_accumulated_micro_batches_as_in_one_batch():
    """Unevenly spread -100 labels: the mean of two micro-batches' losses equals the whole batch's, gradients too."""
    student, teacher = random_logits(8, 6, seed=4)
    labels = torch.tensor([0, 1, 2, 3, -100, -100, -100, 5])  # 4 labelled rows, then 1
    whole = student.clone().requires_grad_(True)
    (grad_whole,) = torch.autograd.grad(dkd_loss(whole, teacher, 2.0, labels), whole)
    halves = student.clone().requires_grad_(True)
    loss = sum(dkd_loss(halves[i : i + 4], teacher[i : i + 4], 2.0, labels[i : i + 4]) / 2 for i in (0, 4))
    (grad_halves,) = torch.autograd.grad(loss, halves)
    torch.testing.assert_close(grad_halves, grad_whole)


@pytest.mark.parametrize("batch,classes", SHAPES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_dist_matches_float64_reference(batch, classes, temperature):
    student, teacher = random_logits(batch, classes, seed=1)
    for beta, gamma in [(1.0, 1.0), (2.0, 0.5)]:
        value = dist_loss(student, teacher, temperature, dist_beta=beta, dist_gamma=gamma)
        assert_matches(value, dist_reference(student, teacher, temperature, beta, gamma))


@pytest.mark.parametrize(
    "student",
    [
        torch.zeros(8, 10),  # constant rows and columns
        torch.randn(1, 10),  # a batch of one: every column is constant
        torch.randn(1, 10).expand(8, 10) + 1e-6 * torch.randn(8, 10),  # near-constant columns
        1e-4 * torch.randn(8, 1000),  # near-uniform rows over many classes
    ],
)
def test_dist_is_finite_in_float32_on_near_constant_inputs(student):
    student = student.clone().requires_grad_(True)
    teacher = torch.randn(student.shape) * 1e-4
    value = dist_loss(student, teacher, 4.0)
    value.backward()
    assert math.isfinite(value.item()) and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("batch,classes", SHAPES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_reverse_kl_matches_float64_reference(batch, classes, temperature):
    student, teacher = random_logits(batch, classes, seed=2)
    reference = kl64(probs(student, temperature), probs(teacher, temperature)).mean() * temperature**2
    assert_matches(reverse_kl_loss(student, teacher, temperature), reference)


@pytest.mark.parametrize("batch,classes", SHAPES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_jsd_matches_float64_reference(batch, classes, temperature, beta):
    student, teacher = random_logits(batch, classes, seed=4)
    value = generalized_jsd_loss(student, teacher, temperature, jsd_beta=beta)
    assert_matches(value, jsd_reference(student, teacher, temperature, beta))


def test_jsd_end_points_are_forward_and_reverse_kl():
    student, teacher = random_logits(6, 7)
    torch.testing.assert_close(
        generalized_jsd_loss(student, teacher, 2.0, jsd_beta=0.0), kl_divergence_loss(student, teacher, 2.0)
    )
    torch.testing.assert_close(
        generalized_jsd_loss(student, teacher, 2.0, jsd_beta=1.0), reverse_kl_loss(student, teacher, 2.0)
    )


@pytest.mark.parametrize("name", ["dkd", "dist", "reverse_kl", "jsd"])
def test_losses_are_zero_for_a_perfect_student_and_finite_at_huge_margins(name):
    labels = torch.tensor([0, 1, 2])
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))  # independent of the tests run before
    fn = get_loss(name)
    assert abs(fn(logits, logits.clone(), 2.0, labels).item()) < 1e-5
    student = torch.tensor([[300.0, -300.0, 0.0, 0.0]] * 3)
    teacher = torch.tensor([[-300.0, 300.0, 0.0, 0.0]] * 3)
    assert math.isfinite(fn(student, teacher, 1.0, labels).item())


def test_loss_hyperparameters_are_keyword_only_parameters():
    assert loss_hyperparameters("dkd") == ["dkd_alpha", "dkd_beta"]
    assert loss_hyperparameters("dist") == ["dist_beta", "dist_gamma"]
    assert loss_hyperparameters("jsd") == ["jsd_beta"]
    assert loss_hyperparameters("kl") == [] and loss_hyperparameters("reverse_kl") == []


def test_distillation_loss_passes_hyperparameters_to_the_loss():
    student, teacher = random_logits(4, 5)
    labels = torch.tensor([0, 1, 2, 3])
    out = distillation_loss(student, teacher, labels, alpha=0.0, temperature=2.0, loss="dkd", dkd_beta=0.0)
    torch.testing.assert_close(out.kd, dkd_loss(student, teacher, 2.0, labels, dkd_beta=0.0))


# ---- through the trainer ----


def _trainer(tmp_path, train, **overrides):
    from hf_distill import DataCollatorForDistillation, DistillationTrainer
    from tests.conftest import make_args, varied_bert

    return DistillationTrainer(
        model=varied_bert(seed=2),
        args=make_args(tmp_path, **overrides),
        teacher_model=varied_bert(seed=1),
        train_dataset=train,
        data_collator=DataCollatorForDistillation(),
    )


def test_dkd_with_gradient_accumulation_and_uneven_ignored_labels_matches_a_full_batch(tmp_path):
    from tests.conftest import tiny_text_dataset

    data = tiny_text_dataset(8).remove_columns("text")
    uneven = data.map(lambda row, i: {"label": -100 if i in (0, 1, 2) else row["label"]}, with_indices=True)
    logs = []
    for bs, ga in [(8, 1), (4, 2), (2, 4)]:
        trainer = _trainer(
            tmp_path,
            uneven,
            distillation_loss="dkd",
            per_device_train_batch_size=bs,
            gradient_accumulation_steps=ga,
            max_steps=1,
            alpha=0.3,
        )
        trainer.train()
        logs.append(trainer.state.log_history[0])
    for accumulated in logs[1:]:
        for key in ("loss", "grad_norm", "loss_ce", "loss_kd"):
            assert accumulated[key] == pytest.approx(logs[0][key], rel=1e-4), key


def test_dkd_trains_on_a_batch_whose_labels_are_all_ignored(tmp_path):
    from tests.conftest import tiny_text_dataset

    data = tiny_text_dataset(16).remove_columns("text")
    mixed = data.map(lambda row, i: {"label": -100 if i < 8 else row["label"]}, with_indices=True)
    trainer = _trainer(tmp_path, mixed, distillation_loss="dkd", alpha=0.0, max_steps=1)
    batch = trainer._prepare_inputs(trainer.data_collator([mixed[i] for i in range(8)]))  # labels all -100
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    assert loss > 0 and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.parameters())
    trainer.train()
    assert trainer.state.log_history[0]["loss_kd"] > 0 and trainer.state.log_history[0]["grad_norm"] > 0


@pytest.mark.parametrize("method", [{"distillation_loss": "dkd"}, {"teacher_correction": "swap"}])
@pytest.mark.parametrize("labels", ["no column", "only -100"])
def test_label_methods_on_a_training_set_without_labels_are_refused(tmp_path, method, labels):
    from tests.conftest import tiny_text_dataset

    if labels == "no column":
        unlabelled = tiny_text_dataset(8, labels=False).remove_columns("text")
    else:
        unlabelled = tiny_text_dataset(8).remove_columns("text").map(lambda _: {"label": -100})
    name = next(iter(method))
    with pytest.raises(ValueError, match=f"no labels .*or only -100.*{name}=.*needs the true class"):
        _trainer(tmp_path, unlabelled, alpha=0.0, max_steps=1, **method)
    # control: plain KD trains on the same rows; one labelled row is enough for the method
    _trainer(tmp_path, unlabelled, alpha=0.0, max_steps=1).train()
    if labels == "only -100":
        one = unlabelled.map(lambda row, i: {"label": 1 if i == 0 else -100}, with_indices=True)
        _trainer(tmp_path, one, alpha=0.0, max_steps=1, **method).train()


@pytest.mark.parametrize("method", [{"distillation_loss": "dkd"}, {"teacher_correction": "swap"}])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_predict_on_an_unlabelled_test_set_with_label_methods_returns_predictions(tmp_path, method, alpha):
    from tests.conftest import tiny_text_dataset

    train = tiny_text_dataset(8).remove_columns("text")
    trainer = _trainer(tmp_path, train, alpha=alpha, max_steps=1, **method)
    trainer.train()
    test = tiny_text_dataset(6, seed=3, labels=False).remove_columns("text")
    output = trainer.predict(test)
    assert output.predictions.shape == (6, 3) and np.isfinite(output.predictions).all()
    # control: the same rows with labels are scored
    labelled = trainer.predict(tiny_text_dataset(6, seed=3).remove_columns("text"))
    np.testing.assert_allclose(labelled.predictions, output.predictions, rtol=1e-5, atol=1e-6)
    assert "test_loss" in labelled.metrics


def test_custom_loss_hyperparameter_from_python(tmp_path, scaled_kl):
    """A registered loss's own keyword-only parameter is filled from ``loss_kwargs`` (a dict from Python)."""
    from hf_distill import DataCollatorForDistillation, DistillationTrainer
    from tests.conftest import make_args, on_device, tiny_bert, tiny_text_dataset

    data = tiny_text_dataset(8).remove_columns("text")
    losses = {}
    for loss, kwargs in (("kl", None), (scaled_kl, {"scale": 3.0})):
        trainer = DistillationTrainer(
            model=tiny_bert(seed=2),
            args=make_args(tmp_path, alpha=0.0, distillation_loss=loss, loss_kwargs=kwargs),
            teacher_model=tiny_bert(seed=1),
            train_dataset=data,
            data_collator=DataCollatorForDistillation(),
        )
        batch = on_device(trainer, trainer.data_collator([data[i] for i in range(8)]))
        with torch.no_grad():
            losses[loss] = trainer.compute_loss(trainer.model.eval(), batch)
        assert trainer.args.method_summary().get("loss_kwargs") == (None if kwargs is None else '{"scale": 3.0}')
    assert losses["kl"] > 0
    torch.testing.assert_close(losses[scaled_kl], 3.0 * losses["kl"])
    with pytest.raises(ValueError, match=r"needs the hyperparameters \['scale'\].*--loss_kwargs"):
        make_args(tmp_path, distillation_loss=scaled_kl)
    with pytest.raises(ValueError, match=r"loss_kwargs sets 'shift'.*keyword-only hyperparameters \['scale'\]"):
        make_args(tmp_path, distillation_loss=scaled_kl, loss_kwargs={"scale": 1.0, "shift": 1.0})
    with pytest.raises(ValueError, match="loss_kwargs sets 'dkd_beta', which is a field of its own"):
        make_args(tmp_path, distillation_loss="dkd", loss_kwargs='{"dkd_beta": 2}')
    with pytest.raises(ValueError, match="loss_kwargs must be a JSON object"):
        make_args(tmp_path, distillation_loss=scaled_kl, loss_kwargs="scale=2")
