"""The teacher's own metrics in evaluation: computed once per evaluation set, from the logits the loss used."""

import pytest
import torch

from hf_distill import DataCollatorForDistillation, DistillationTrainer, precompute_teacher_logits
from hf_distill.evaluation.metrics import classification_metrics, compute_metrics_fn
from tests.conftest import make_args, tiny_bert, tiny_text_dataset, varied_bert


def direct_teacher_metrics(teacher, dataset):
    batch = DataCollatorForDistillation()([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return classification_metrics(logits.numpy(), batch["labels"].numpy())


def test_teacher_metrics_once_per_eval_set_without_extra_teacher_passes(tmp_path):
    teacher, student = varied_bert(seed=1, layers=3, hidden=32), varied_bert(seed=3)
    sets = {"a": tiny_text_dataset(16, seed=3).remove_columns("text"), "b": tiny_text_dataset(8, seed=4)}
    sets["b"] = sets["b"].remove_columns("text")
    calls = []
    metric = compute_metrics_fn()

    def counting_metrics(prediction):
        calls.append(prediction.predictions.shape)
        return metric(prediction)

    expected = {name: direct_teacher_metrics(teacher, dataset) for name, dataset in sets.items()}
    teacher_batches = []
    teacher.register_forward_hook(lambda module, args, output: teacher_batches.append(1))
    trainer = DistillationTrainer(
        model=student,
        args=make_args(tmp_path, per_device_eval_batch_size=4),
        teacher_model=teacher,
        eval_dataset=sets,
        data_collator=DataCollatorForDistillation(),
        compute_metrics=counting_metrics,
    )
    first = trainer.evaluate()
    assert len(teacher_batches) == 4 + 2  # one teacher pass per batch: the loss's
    assert len(calls) == 4  # student and teacher, for each set
    for name in sets:
        assert first[f"eval_{name}_teacher_accuracy"] == pytest.approx(expected[name]["accuracy"])
        assert first[f"eval_{name}_teacher_macro_f1"] == pytest.approx(expected[name]["macro_f1"])
        assert first[f"eval_{name}_teacher_accuracy"] != first[f"eval_{name}_accuracy"]  # not the student's

    second = trainer.evaluate()
    assert len(calls) == 6  # only the student's metrics are computed again
    assert len(teacher_batches) == 12
    for name in sets:
        assert second[f"eval_{name}_teacher_accuracy"] == first[f"eval_{name}_teacher_accuracy"]

    other = tiny_text_dataset(8, seed=5).remove_columns("text")
    third = trainer.evaluate(other)
    assert third["eval_teacher_accuracy"] == pytest.approx(direct_teacher_metrics(teacher, other)["accuracy"])


def test_teacher_metrics_from_precomputed_logits(tmp_path):
    teacher = varied_bert(seed=1, layers=3, hidden=32)
    dataset = tiny_text_dataset(16).remove_columns("text")
    with_logits = precompute_teacher_logits(teacher, dataset, batch_size=8)
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2),
        args=make_args(tmp_path),
        eval_dataset=with_logits,
        data_collator=DataCollatorForDistillation(),
    )
    metrics = trainer.evaluate()  # no compute_metrics: accuracy and macro-F1
    expected = direct_teacher_metrics(teacher, dataset)
    assert metrics["eval_teacher_accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["eval_teacher_macro_f1"] == pytest.approx(expected["macro_f1"])
    assert "eval_accuracy" not in metrics


def test_predict_reports_the_teacher_metrics_as_evaluate_does(tmp_path):
    dataset = tiny_text_dataset(8).remove_columns("text")
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2),
        args=make_args(tmp_path),
        teacher_model=tiny_bert(seed=1),
        data_collator=DataCollatorForDistillation(),
    )
    predicted = trainer.predict(dataset, metric_key_prefix="test").metrics  # --do_predict's test scores feed the card
    evaluated = trainer.evaluate(dataset, metric_key_prefix="test")
    assert predicted["test_teacher_accuracy"] == evaluated["test_teacher_accuracy"]
    unlabelled = trainer.predict(dataset.remove_columns("label")).metrics
    assert not any("teacher" in key for key in unlabelled)


def test_teacher_metrics_of_a_plain_torch_dataset(tmp_path):
    """A set without a fingerprint gets its own teacher metrics at each evaluation, never another set's."""
    teacher = varied_bert(seed=1, layers=3, hidden=32)
    first, second = tiny_text_dataset(16, seed=3).remove_columns("text"), tiny_text_dataset(16, seed=4)
    second = second.remove_columns("text")
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2),
        args=make_args(tmp_path),
        teacher_model=teacher,
        data_collator=DataCollatorForDistillation(),
    )
    for dataset in (first, second):
        metrics = trainer.evaluate(torch.utils.data.Subset(dataset, range(16)))
        expected = direct_teacher_metrics(teacher, dataset)
        assert metrics["eval_teacher_accuracy"] == pytest.approx(expected["accuracy"])
