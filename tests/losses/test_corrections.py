"""Teacher corrections (swap, logit standardization) and the objective that composes them with any loss."""

import pytest
import torch

from hf_distill.losses import (
    DistillationObjective,
    LossParts,
    TopKLogits,
    dkd_loss,
    kl_divergence_loss,
    standardize_logits,
    swap_teacher_mistakes,
)
from tests.conftest import make_args


def test_swap_corrects_mistakes_and_keeps_the_other_logits():
    teacher = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.2, 2.0, 0.1, 0.0], [1.0, 0.0, 4.0, 2.0], [5.0, 0.0, 1.0, 2.0]])
    labels = torch.tensor([0, 2, 3, -100])
    corrected = swap_teacher_mistakes(teacher, labels)
    expected = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.2, 0.1, 2.0, 0.0], [1.0, 0.0, 2.0, 4.0], [5.0, 0.0, 1.0, 2.0]])
    torch.testing.assert_close(corrected, expected)
    assert (corrected[:3].argmax(-1) == labels[:3]).all()
    torch.testing.assert_close(corrected.sort(-1).values, teacher.sort(-1).values)  # same values, same entropy
    assert teacher[1, 1] == 2.0  # the input is not modified in place


def test_swap_leaves_rows_without_labels_as_they_are():
    teacher = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    torch.testing.assert_close(swap_teacher_mistakes(teacher, None), teacher)
    torch.testing.assert_close(swap_teacher_mistakes(teacher, torch.tensor([-100, -100])), teacher)
    # control: a labelled mistaken row is swapped
    torch.testing.assert_close(
        swap_teacher_mistakes(teacher, torch.tensor([-100, 2])), torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    )


def test_standardized_rows_have_zero_mean_and_unit_std_and_constant_rows_stay_finite():
    logits = torch.randn(5, 7) * 10 + 3
    z = standardize_logits(logits)
    torch.testing.assert_close(z.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(-1), torch.ones(5), atol=1e-5, rtol=0)
    assert torch.isfinite(standardize_logits(torch.ones(2, 4))).all()


def test_logit_standardization_ignores_the_teachers_scale_and_shift():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    objective = DistillationObjective("kl", logit_standardization=True)
    base = objective.distillation_term(student, teacher, None, 2.0)
    torch.testing.assert_close(objective.distillation_term(student, teacher * 7 + 3, None, 2.0), base)
    torch.testing.assert_close(base, kl_divergence_loss(standardize_logits(student), standardize_logits(teacher), 2.0))


def test_corrections_compose_in_order_with_any_loss():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g) * 3
    labels = torch.randint(0, 4, (8,), generator=g)
    objective = DistillationObjective("dkd", {"dkd_beta": 2.0}, teacher_correction="swap", logit_standardization=True)
    corrected = standardize_logits(swap_teacher_mistakes(teacher, labels))
    expected = dkd_loss(standardize_logits(student), corrected, 2.0, labels, dkd_beta=2.0)
    torch.testing.assert_close(objective.distillation_term(student, teacher, labels, 2.0), expected)


def test_objective_parts_weights_and_the_ce_phase():
    student, teacher, labels = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    parts = DistillationObjective()(student, teacher, labels, alpha=0.25, temperature=2.0)
    assert set(parts.parts) == {"loss_ce", "loss_kd"} and parts.weights == {"loss_ce": 0.25, "loss_kd": 0.75}
    torch.testing.assert_close(parts.loss, 0.25 * parts.ce + 0.75 * parts.kd)
    ce_only = DistillationObjective()(student, None, labels, alpha=1.0, temperature=2.0)
    assert set(ce_only.parts) == {"loss_ce"} and ce_only.loss is not None
    with pytest.raises(ValueError, match="no teacher logits"):
        DistillationObjective()(student, None, labels, alpha=0.5, temperature=2.0)


def test_extra_terms_add_named_weighted_parts():
    def hidden_term(student_outputs, teacher_outputs, labels, inputs):
        return LossParts({"loss_hidden": student_outputs.sum() * 0 + 2.0}, {"loss_hidden": 0.5})

    student, teacher, labels = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    objective = DistillationObjective(terms=(hidden_term,))
    parts = objective(student, teacher, labels, alpha=0.5, temperature=1.0, student_outputs=student)
    assert set(parts.parts) == {"loss_ce", "loss_kd", "loss_hidden"}
    torch.testing.assert_close(parts.loss, 0.5 * parts.ce + 0.5 * parts.kd + 1.0)


def test_objective_from_args_reads_the_loss_hyperparameters(tmp_path):
    args = make_args(
        tmp_path, distillation_loss="dkd", dkd_beta=3.0, teacher_correction="swap", logit_standardization=True
    )
    objective = DistillationObjective.from_args(args)
    assert objective.loss == "dkd" and dict(objective.hyperparameters) == {"dkd_alpha": 1.0, "dkd_beta": 3.0}
    assert objective.teacher_correction == "swap" and objective.logit_standardization


def test_corrections_refuse_top_k_teacher_logits():
    stored = TopKLogits(torch.randn(2, 3), torch.tensor([[0, 1], [1, 2]]))
    with pytest.raises(ValueError, match="need every teacher logit"):
        DistillationObjective(teacher_correction="swap").distillation_term(torch.randn(2, 4), stored, None, 1.0)


def test_trainer_logs_every_part_of_the_objective(tmp_path):
    import dataclasses

    from hf_distill import DataCollatorForDistillation, DistillationTrainer
    from tests.conftest import tiny_bert, tiny_text_dataset

    def logits_norm(student_outputs, teacher_outputs, labels, inputs):
        return LossParts({"loss_norm": student_outputs.logits.float().pow(2).mean()}, {"loss_norm": 0.1})

    data = tiny_text_dataset(16).remove_columns("text")
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2),
        args=make_args(tmp_path, eval_strategy="steps", eval_steps=2),
        teacher_model=tiny_bert(seed=1),
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorForDistillation(),
    )
    trainer.objective = dataclasses.replace(trainer.objective, terms=(logits_norm,))
    trainer.train()
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    eval_logs = [log for log in trainer.state.log_history if "eval_loss" in log]
    assert all({"loss_ce", "loss_kd", "loss_norm", "alpha", "temperature"} <= set(log) for log in train_logs)
    assert eval_logs and all("eval_loss_norm" in log for log in eval_logs)
