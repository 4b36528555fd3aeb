import math

import pytest
import torch

from hf_distill import DataCollatorForDistillation, DistillationTrainer, precompute_teacher_logits, read_logits_info
from hf_distill.data.top_k import top_k_logits
from hf_distill.losses import TopKLogits, distillation_loss, top_k_kl_loss
from hf_distill.vision.deit import deit_distillation_loss
from tests.conftest import make_args, on_device, permuted_teacher, tiny_text_dataset, varied_bert

CLASSES = [f"class_{i}" for i in range(10)]


def reference_bucket_kl(student, teacher, k, temperature):
    """Float64 KL over the teacher's top-k classes plus one bucket for the rest, from the definition."""
    s, t = student.double() / temperature, teacher.double() / temperature
    p_s, p_t = torch.softmax(s, -1), torch.softmax(t, -1)
    top = t.topk(k, -1).indices
    q = torch.cat([p_t.gather(-1, top), 1 - p_t.gather(-1, top).sum(-1, keepdim=True)], -1)
    p = torch.cat([p_s.gather(-1, top), 1 - p_s.gather(-1, top).sum(-1, keepdim=True)], -1)
    return (q * (q.log() - p.log())).sum(-1).mean() * temperature**2


def logits(seed, shape=(6, 10)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_top_k_with_every_class_equals_the_full_kl(temperature):
    student, teacher = logits(0).requires_grad_(True), logits(1)
    top, indices = teacher.topk(10, -1)
    values = torch.cat([top, torch.full((6, 1), -math.inf)], -1)  # an empty rest bucket
    loss = top_k_kl_loss(student, TopKLogits(values, indices), temperature)
    s = student.detach().double()
    p_t = torch.softmax(teacher.double() / temperature, -1)
    full = (p_t * (p_t.log() - torch.log_softmax(s / temperature, -1))).sum(-1).mean()
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), full * temperature**2, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("k", [1, 3, 9])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_top_k_loss_matches_float64_bucket_reference(k, temperature):
    student, teacher = logits(2), logits(3)
    values, indices = top_k_logits(teacher, k, temperature)
    loss = top_k_kl_loss(student, TopKLogits(values, indices), temperature)
    torch.testing.assert_close(
        loss.double(), reference_bucket_kl(student, teacher, k, temperature), rtol=1e-5, atol=1e-6
    )


def test_top_k_hard_loss_uses_the_top_class_and_mse_is_refused():
    student, teacher = logits(4), logits(5)
    stored = TopKLogits(*top_k_logits(teacher, 3, 1.0))
    hard = distillation_loss(student, stored, None, alpha=0.0, temperature=1.0, loss="hard")
    full = distillation_loss(student, teacher, None, alpha=0.0, temperature=1.0, loss="hard")
    torch.testing.assert_close(hard.loss, full.loss)
    with pytest.raises(ValueError, match="distillation_loss='mse' needs every teacher logit.*'kl' or 'hard'"):
        distillation_loss(student, stored, None, alpha=0.0, temperature=1.0, loss="mse")


def test_deit_loss_takes_top_k_logits():
    cls_logits, dist_logits, teacher = logits(6), logits(7), logits(8)
    labels = torch.arange(6)
    stored = TopKLogits(*top_k_logits(teacher, 4, 2.0))
    out = deit_distillation_loss(cls_logits, dist_logits, stored, labels, alpha=0.5, temperature=2.0)
    torch.testing.assert_close(
        out.kd.double(), reference_bucket_kl(dist_logits, teacher, 4, 2.0), rtol=1e-5, atol=1e-6
    )


def test_dense_logits_keep_top1_and_top_k_probabilities():
    teacher = logits(9)
    stored = TopKLogits(*top_k_logits(teacher, 3, 2.0))
    dense = stored.dense(10, 2.0)
    assert torch.equal(dense.argmax(-1), teacher.argmax(-1))
    torch.testing.assert_close(
        torch.softmax(dense / 2, -1).gather(-1, stored.indices),
        torch.softmax(teacher / 2, -1).gather(-1, stored.indices),
    )


def test_precompute_top_k_round_trip():
    teacher, data = varied_bert(seed=1, labels=CLASSES), tiny_text_dataset(12)
    out = precompute_teacher_logits(teacher, data, batch_size=4, top_k=4, temperature=2.0)
    assert out.features["teacher_logits"].feature.dtype == "float16"
    assert out.features["teacher_logits"].length == 5
    assert out.features["teacher_logits_indices"].feature.dtype == "int16"
    info = read_logits_info(out, "teacher_logits")
    assert (info.top_k, info.temperature, info.dtype, info.labels) == (4, 2.0, "float16", CLASSES)
    full = precompute_teacher_logits(teacher, data, batch_size=4)
    expected_values, expected_indices = top_k_logits(torch.tensor(full["teacher_logits"]), 4, 2.0)
    assert torch.equal(torch.tensor(out["teacher_logits_indices"]).long(), expected_indices)
    torch.testing.assert_close(torch.tensor(out["teacher_logits"]).float(), expected_values, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"top_k": 0, "temperature": 1.0}, r"top_k must be an integer in \[1, 10\).*got 0.*top_k=None"),
        ({"top_k": 10, "temperature": 1.0}, r"top_k must be an integer in \[1, 10\).*got 10"),
        ({"top_k": 2.5, "temperature": 1.0}, "top_k must be an integer"),
        ({"top_k": 3}, "pass temperature=T > 0, the --temperature you will train with"),
        ({"top_k": 3, "temperature": 0.0}, "pass temperature=T > 0"),
        ({"temperature": 2.0}, "temperature only applies to top_k storage"),
    ],
)
def test_bad_top_k_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        precompute_teacher_logits(varied_bert(labels=CLASSES), tiny_text_dataset(4), **kwargs)


def top_k_trainer(tmp_path, dataset, **overrides):
    args = make_args(tmp_path, alpha=0.0, temperature=2.0, **overrides)
    return DistillationTrainer(
        model=varied_bert(seed=2, labels=CLASSES),
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=DataCollatorForDistillation(),
    )


def test_trainer_trains_and_evaluates_on_a_top_k_column(tmp_path):
    dataset = precompute_teacher_logits(
        varied_bert(seed=1, labels=CLASSES), tiny_text_dataset(16), top_k=3, temperature=2.0, batch_size=8
    )
    trainer = top_k_trainer(tmp_path, dataset, remove_unused_columns=True, max_steps=3)
    kept = trainer.get_train_dataloader().dataset  # what training reads: unused columns dropped
    assert "teacher_logits_indices" in kept.column_names and "text" not in kept.column_names
    batch = trainer.data_collator([kept[i] for i in range(4)])
    assert batch["teacher_logits_indices"].dtype == torch.int64 and "logits_indices" not in batch
    trainer.train()
    assert all(math.isfinite(entry["loss_kd"]) for entry in trainer.state.log_history if "loss_kd" in entry)
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_agreement"] <= 1.0 and "eval_teacher_accuracy" in metrics


def test_permuted_label_teacher_gives_the_same_top_k_loss(tmp_path):
    teacher, data = varied_bert(seed=1, labels=CLASSES), tiny_text_dataset(8, labels=False)
    shuffled = permuted_teacher(teacher, [3, 7, 0, 9, 1, 5, 2, 8, 6, 4])
    losses = []
    for source in (teacher, shuffled):
        trainer = top_k_trainer(tmp_path, precompute_teacher_logits(source, data, top_k=4, temperature=2.0))
        batch = on_device(trainer, trainer.data_collator([trainer.train_dataset[i] for i in range(8)]))
        with torch.no_grad():
            losses.append(trainer.compute_loss(trainer.model.eval(), batch))
    assert losses[0] > 0
    torch.testing.assert_close(losses[0], losses[1])


def test_top_k_column_at_another_temperature_is_refused(tmp_path):
    dataset = precompute_teacher_logits(varied_bert(labels=CLASSES), tiny_text_dataset(8), top_k=3, temperature=1.0)
    with pytest.raises(
        ValueError, match="top-3 logits at temperature 1.0, but args.temperature is 2.0.*--temperature"
    ):
        top_k_trainer(tmp_path, dataset)


def test_top_k_column_without_provenance_is_refused(tmp_path):
    dataset = precompute_teacher_logits(varied_bert(labels=CLASSES), tiny_text_dataset(8), top_k=3, temperature=2.0)
    dataset.info.description = ""
    with pytest.raises(ValueError, match="no top-k provenance.*top_k=K"):
        top_k_trainer(tmp_path, dataset)


def test_top_k_column_under_a_temperature_schedule_or_a_changed_temperature_is_refused_before_the_first_step(
    tmp_path,
):
    dataset = precompute_teacher_logits(varied_bert(labels=CLASSES), tiny_text_dataset(8), top_k=3, temperature=2.0)
    with pytest.raises(ValueError, match="temperature schedule moves the temperature to 6.0.*--temperature_schedule"):
        top_k_trainer(tmp_path, dataset, temperature_schedule="linear", temperature_end=6.0)
    trainer = top_k_trainer(tmp_path, dataset)
    trainer.args.temperature = 4.0  # changed after the trainer was built
    with pytest.raises(ValueError, match="at temperature 2.0, but args.temperature is 4.0"):
        trainer.train()
    assert trainer.state.global_step == 0
    trainer.args.temperature = 2.0  # control: the stored temperature, constant, trains
    trainer.train()
    assert trainer.state.global_step == 2


def test_top_k_column_with_a_loss_or_correction_needing_every_logit_is_refused_when_the_trainer_is_built(tmp_path):
    dataset = precompute_teacher_logits(varied_bert(labels=CLASSES), tiny_text_dataset(8), top_k=3, temperature=2.0)
    for method, named in [
        ({"distillation_loss": "jsd"}, "distillation_loss='jsd'"),
        ({"teacher_correction": "swap"}, "teacher_correction='swap'"),
        ({"logit_standardization": True}, "logit_standardization"),
    ]:
        with pytest.raises(ValueError, match=rf"{named} need\(s\) every teacher logit, but column 'teacher_logits'"):
            top_k_trainer(tmp_path, dataset, **method)
    for loss in ("kl", "hard"):  # control: the losses that read top-k columns train
        trainer = top_k_trainer(tmp_path, dataset, distillation_loss=loss)
        trainer.train()
        assert trainer.state.global_step == 2
