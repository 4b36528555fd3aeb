import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import TrainingArguments

from hf_distill import DataCollatorForDistillation, DistillationTrainer, precompute_teacher_logits
from hf_distill.loss_log import all_finite
from tests.conftest import LABELS, make_args, on_device, permuted_teacher, tiny_bert, tiny_text_dataset, trainer_for


def collate(trainer, dataset, n=8):
    """One padded batch of the first ``n`` rows, as the trainer's dataloader would build it."""
    return trainer.data_collator([dataset[i] for i in range(n)])


def batch_loss(trainer, batch):
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, on_device(trainer, batch))
    trainer.loss_log.pop("eval")
    return loss


def test_in_batch_and_precomputed_teachers_give_the_same_loss(tmp_path, data):
    teacher, student = tiny_bert(seed=1), tiny_bert(seed=2)
    padded = tiny_text_dataset(16, ragged=False).remove_columns("text")
    in_batch = trainer_for(tmp_path, student, padded, teacher)
    precomputed = precompute_teacher_logits(teacher, padded, batch_size=4)
    from_column = trainer_for(tmp_path, student, precomputed)
    loss_a = batch_loss(in_batch, collate(in_batch, padded))
    loss_b = batch_loss(from_column, collate(from_column, precomputed))
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_matches_a_full_batch(tmp_path, data):
    """bs 8 x GA 1 and bs 4 x GA 2 must log the same loss and gradient norm (trainer-api note, item 2)."""
    teacher = tiny_bert(seed=1)
    with torch.no_grad():  # a confident teacher: a KL far from 0, so that the KD part's weighting is what is compared
        teacher.classifier.weight.mul_(100)
    logs = []
    for bs, ga in [(8, 1), (4, 2)]:
        trainer = DistillationTrainer(
            model=tiny_bert(seed=2),
            args=make_args(
                tmp_path, per_device_train_batch_size=bs, gradient_accumulation_steps=ga, max_steps=1, alpha=0.3
            ),
            teacher_model=teacher,
            train_dataset=data.select(range(8)),
            data_collator=DataCollatorForDistillation(),
        )
        trainer.train()
        logs.append(trainer.state.log_history[0])
    full, accumulated = logs
    for key in ("loss", "grad_norm", "loss_ce", "loss_kd"):
        assert accumulated[key] == pytest.approx(full[key], rel=1e-4), key


def test_logits_column_survives_remove_unused_columns(tmp_path):
    teacher, student = tiny_bert(seed=1), tiny_bert(seed=2)
    dataset = precompute_teacher_logits(teacher, tiny_text_dataset(16), batch_size=8)  # keeps the "text" column
    args = make_args(tmp_path, remove_unused_columns=True)
    assert args.remove_unused_columns
    trainer = DistillationTrainer(
        model=student, args=args, train_dataset=dataset, data_collator=DataCollatorForDistillation()
    )
    kept = trainer.get_train_dataloader().dataset  # what training reads: unused columns dropped
    assert "teacher_logits" in kept.column_names and "text" not in kept.column_names
    trainer.train()  # no teacher: the loss can only come from the column
    assert all(math.isfinite(entry["loss_kd"]) for entry in trainer.state.log_history if "loss_kd" in entry)


def test_teacher_is_frozen_and_never_saved(tmp_path, data):
    teacher, student = tiny_bert(seed=1), tiny_bert(seed=2)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = trainer_for(tmp_path, student, data, teacher, max_steps=3)
    trainer.train()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    trainer.save_model(str(tmp_path / "saved"))
    saved = load_file(str(tmp_path / "saved" / "model.safetensors"))
    assert set(saved) == set(student.state_dict())
    assert not any(t.data_ptr() == s.data_ptr() for t in teacher.parameters() for s in student.parameters())


def test_teacher_sharing_weights_with_student_is_refused(tmp_path, data):
    student = tiny_bert(seed=2)
    with pytest.raises(ValueError, match="shares parameters with the student.*deepcopy"):
        trainer_for(tmp_path, student, data, teacher=student)


def test_permuted_teacher_label_order_gives_the_same_loss(tmp_path, data):
    teacher, student = tiny_bert(seed=1), tiny_bert(seed=2)
    shuffled = permuted_teacher(teacher, [2, 0, 1])
    assert shuffled.config.id2label != teacher.config.id2label
    aligned = trainer_for(tmp_path, student, data, teacher)
    reordered = trainer_for(tmp_path, student, data, shuffled)
    batch = collate(aligned, data)
    torch.testing.assert_close(batch_loss(aligned, batch), batch_loss(reordered, batch))

    column = trainer_for(tmp_path, student, precompute_teacher_logits(shuffled, data, batch_size=8))
    torch.testing.assert_close(
        batch_loss(aligned, batch), batch_loss(column, collate(column, column.train_dataset)), rtol=1e-5, atol=1e-6
    )


def test_evaluate_before_training_equals_evaluate_after(tmp_path, data):
    trainer = trainer_for(tmp_path, tiny_bert(seed=2), data, tiny_bert(seed=1), learning_rate=0.0, weight_decay=0.0)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    for key in ("eval_loss", "eval_loss_ce", "eval_loss_kd", "eval_agreement"):
        assert after[key] == pytest.approx(before[key], rel=1e-6), key


def test_logs_loss_parts_in_training_and_evaluation(tmp_path, data):
    trainer = trainer_for(tmp_path, tiny_bert(seed=2), data, tiny_bert(seed=1), eval_strategy="steps", eval_steps=2)
    trainer.train()
    train_logs = [e for e in trainer.state.log_history if "loss" in e]
    eval_logs = [e for e in trainer.state.log_history if "eval_loss" in e]
    assert train_logs and eval_logs
    for entry in train_logs:
        assert entry["loss"] == pytest.approx(0.5 * entry["loss_ce"] + 0.5 * entry["loss_kd"], rel=1e-4)
    for entry in eval_logs:
        assert entry["eval_loss"] == pytest.approx(0.5 * entry["eval_loss_ce"] + 0.5 * entry["eval_loss_kd"], rel=1e-4)
        assert 0.0 <= entry["eval_agreement"] <= 1.0


def test_pure_distillation_on_unlabelled_data(tmp_path):
    unlabelled = tiny_text_dataset(16, labels=False).remove_columns("text")
    trainer = trainer_for(tmp_path, tiny_bert(seed=2), unlabelled, tiny_bert(seed=1), alpha=0.0)
    trainer.train()
    assert all("loss_ce" not in e for e in trainer.state.log_history)
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and metrics["eval_loss"] == pytest.approx(metrics["eval_loss_kd"])


def test_teacher_with_its_own_tokenizer_reads_prefixed_inputs(tmp_path, word_tokenizer):
    """Student and teacher use different vocabularies; the teacher must see teacher_input_ids."""
    texts = ["good movie", "the food was very bad", "ok", "not great not awful", "fine"] * 2
    student_ids = [[2, *[5 + (hash(w) % 20) for w in t.split()], 3] for t in texts]
    teacher_enc = word_tokenizer(texts)
    dataset = Dataset.from_dict(
        {
            "input_ids": student_ids,
            "teacher_input_ids": teacher_enc["input_ids"],
            "teacher_attention_mask": teacher_enc["attention_mask"],
            "label": [0, 1, 2, 0, 1] * 2,
        }
    )
    teacher = tiny_bert(seed=1, vocab_size=word_tokenizer.vocab_size)
    seen = []
    teacher.register_forward_hook(lambda module, args, kwargs, out: seen.append(kwargs["input_ids"]), with_kwargs=True)
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2),
        args=make_args(tmp_path, max_steps=1, per_device_train_batch_size=10),
        teacher_model=teacher,
        train_dataset=dataset,
        data_collator=DataCollatorForDistillation(tokenizer=word_tokenizer, teacher_tokenizer=word_tokenizer),
    )
    trainer.train()
    fed = {tuple(row[row != word_tokenizer.pad_token_id].tolist()) for row in seen[0]}
    assert fed == {tuple(ids) for ids in teacher_enc["input_ids"]}


def test_lora_student_trains(tmp_path, data):
    from peft import LoraConfig, TaskType, get_peft_model

    student = get_peft_model(
        tiny_bert(seed=2), LoraConfig(task_type=TaskType.SEQ_CLS, r=4, target_modules=["query", "value"])
    )
    lora_before = {n: p.clone() for n, p in student.named_parameters() if "lora_B" in n}
    trainer = trainer_for(tmp_path, student, data, tiny_bert(seed=1), max_steps=3, learning_rate=1e-2)
    trainer.train()
    assert any(not torch.equal(p, lora_before[n]) for n, p in student.named_parameters() if n in lora_before)
    assert all(math.isfinite(e["loss_kd"]) for e in trainer.state.log_history if "loss_kd" in e)
    trainer.save_model(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


# ---- bad input gets a clear error ----


def test_different_label_sets_name_both_lists(tmp_path, data):
    teacher = tiny_bert(seed=1, labels=["sad", "calm", "happy"])
    with pytest.raises(
        ValueError, match=r"teacher's labels \['sad', 'calm', 'happy'\].*student's labels \['negative'"
    ):
        trainer_for(tmp_path, tiny_bert(seed=2), data, teacher)


def test_different_class_counts_are_refused(tmp_path, data):
    teacher = tiny_bert(seed=1, labels=["negative", "positive"])
    with pytest.raises(ValueError, match=r"teacher has 2 classes.*student has 3"):
        trainer_for(tmp_path, tiny_bert(seed=2), data, teacher)


def test_precomputed_logits_of_other_labels_are_refused(tmp_path, data):
    other = precompute_teacher_logits(tiny_bert(seed=1, labels=["sad", "calm", "happy"]), data, batch_size=8)
    with pytest.raises(ValueError, match=r"\['sad', 'calm', 'happy'\].*\['negative', 'neutral', 'positive'\]"):
        trainer_for(tmp_path, tiny_bert(seed=2), other)


def test_logits_column_of_wrong_width_is_refused(tmp_path, data):
    bad = data.add_column("teacher_logits", [[0.0, 1.0]] * len(data))
    with pytest.raises(ValueError, match="holds 2 logits per example but the student has 3 classes"):
        trainer_for(tmp_path, tiny_bert(seed=2), bad)


def test_nan_logits_are_refused(tmp_path, data):
    bad = data.add_column("teacher_logits", [[0.0, float("nan"), 1.0]] * len(data))
    with pytest.raises(ValueError, match="NaN or inf teacher logits"):
        trainer_for(tmp_path, tiny_bert(seed=2), bad)


def test_batches_are_checked_finite_where_the_dataset_was_not_read_whole_before_training(tmp_path, data):
    """A whole `datasets.Dataset` has every stored logit checked before training, so its batches skip the per-batch
    guard; a transform (which may return other values), a stream and a plain torch Dataset keep it."""
    stored = precompute_teacher_logits(tiny_bert(seed=1), data, batch_size=8)
    checked = {
        "arrow": stored,
        "subset of arrow": torch.utils.data.Subset(stored, range(8)),
        "torch format": stored.with_format("torch"),
        "transform": stored.with_transform(lambda batch: batch),
        "stream": stored.to_iterable_dataset(),
    }
    found = {name: trainer_for(tmp_path, tiny_bert(seed=2), d).plan.checked_columns for name, d in checked.items()}
    assert found == {
        "arrow": {"teacher_logits"},
        "subset of arrow": {"teacher_logits"},
        "torch format": {"teacher_logits"},
        "transform": set(),
        "stream": set(),
    }
    trainer = trainer_for(tmp_path, tiny_bert(seed=2), stored)
    trainer.train_dataset = stored.with_transform(lambda batch: batch)  # a new training set is checked anew
    trainer.get_train_dataloader()
    assert trainer.plan.checked_columns == set()

    def nan_in_row_3(batch):  # finite in the table, NaN where the transform returns it
        logits = [[np.nan] * 3 if i == 3 else v for i, v in zip(batch["idx"], batch["teacher_logits"], strict=True)]
        return {**{k: v for k, v in batch.items() if k != "idx"}, "teacher_logits": logits}

    broken = stored.add_column("idx", list(range(len(stored)))).with_transform(nan_in_row_3)
    trainer = trainer_for(tmp_path, tiny_bert(seed=2), torch.utils.data.Subset(broken, range(16)), max_steps=2)
    with pytest.raises(FloatingPointError, match=r"stored teacher logits \(column 'teacher_logits'\)"):
        trainer.train()


def test_nan_from_in_batch_teacher_is_refused(tmp_path, data):
    teacher = tiny_bert(seed=1)
    with torch.no_grad():
        teacher.classifier.bias.fill_(float("nan"))
    trainer = trainer_for(tmp_path, tiny_bert(seed=2), data, teacher)
    with pytest.raises(ValueError, match="teacher produced NaN/inf logits"):
        trainer.train()


def test_labels_out_of_range_are_refused(tmp_path, data):
    bad = data.map(lambda row: {"label": row["label"] + 3})
    with pytest.raises(ValueError, match=r"labels from 3 to 5.*student has 3 classes.*\[0, 3\) or -100"):
        trainer_for(tmp_path, tiny_bert(seed=2), bad, tiny_bert(seed=1))


def test_no_teacher_and_no_column_says_how_to_fix(tmp_path, data):
    with pytest.raises(ValueError, match="no 'teacher_logits' column.*teacher_model=.*precompute_teacher_logits"):
        trainer_for(tmp_path, tiny_bert(seed=2), data)


def test_plain_training_arguments_are_refused(tmp_path, data):
    with pytest.raises(TypeError, match="needs DistillationTrainingArguments"):
        DistillationTrainer(
            model=tiny_bert(), args=TrainingArguments(output_dir=str(tmp_path)), teacher_model=tiny_bert()
        )


def test_regression_student_is_refused(tmp_path, data):
    student = tiny_bert(labels=["score"])
    with pytest.raises(ValueError, match="single-label classifiers"):
        trainer_for(tmp_path, student, data, tiny_bert(labels=["score"]))


def test_teacher_path_is_loaded_with_the_students_auto_class(tmp_path, data):
    teacher = tiny_bert(seed=1)
    teacher.save_pretrained(tmp_path / "teacher")
    trainer = trainer_for(tmp_path, tiny_bert(seed=2), data, str(tmp_path / "teacher"))
    assert type(trainer.teacher_model) is type(teacher)
    assert not trainer.teacher_model.training
    batch = collate(trainer, data)
    reference = trainer_for(tmp_path, tiny_bert(seed=2), data, teacher)
    torch.testing.assert_close(batch_loss(trainer, batch), batch_loss(reference, batch))


def test_column_provenance_is_used_when_both_sources_exist(tmp_path, data):
    """A batch with the logits column never runs the teacher."""
    teacher = tiny_bert(seed=1)
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    dataset = precompute_teacher_logits(teacher, data, batch_size=8)
    calls.clear()
    trainer_for(tmp_path, tiny_bert(seed=2), dataset, teacher).train()
    assert calls == []


@pytest.mark.parametrize("labels", [LABELS])
def test_label_guard_ignores_unnamed_labels(tmp_path, data, labels):
    """A student built with default LABEL_i names is taken as aligned with a named teacher of the same size."""
    student = tiny_bert(seed=2, labels=[f"LABEL_{i}" for i in range(3)])
    trainer = trainer_for(tmp_path, student, data, tiny_bert(seed=1, labels=labels))
    assert trainer.plan.teacher_permutation is None


@pytest.mark.parametrize("schedule", [{}, {"alpha_schedule": "linear", "alpha_end": 0.0}])
def test_prediction_on_unlabelled_data_uses_the_scheduled_alpha(tmp_path, data, schedule):
    """After a schedule from alpha 0.5 to 0, unlabelled predictions carry the distillation loss (alpha is 0 now);
    with alpha constant at 0.5 they are plain predictions."""
    trainer = trainer_for(tmp_path, tiny_bert(seed=2), data, tiny_bert(seed=1), alpha=0.5, **schedule)
    trainer.train()
    output = trainer.predict(data.remove_columns("label"))
    assert output.predictions.shape == (16, 3)
    if schedule:
        assert math.isfinite(output.metrics["test_loss"]) and output.metrics["test_loss_kd"] > 0
    else:
        assert "test_loss" not in output.metrics


def test_plain_torch_dataset_with_a_column_in_another_label_order_is_reordered_or_refused(tmp_path, data):
    teacher = tiny_bert(seed=1)
    shuffled = permuted_teacher(teacher, [2, 0, 1])
    stored = precompute_teacher_logits(shuffled, data, batch_size=8)  # provenance: the shuffled label order
    reference = precompute_teacher_logits(teacher, data, batch_size=8)

    def eval_loss(train, **overrides):
        trainer = trainer_for(tmp_path, tiny_bert(seed=2), train, **overrides)
        return trainer.evaluate(train)["eval_loss"]

    subset = torch.utils.data.Subset(stored, range(16))  # a plain torch Dataset over the stored rows
    assert eval_loss(subset) == pytest.approx(eval_loss(reference), rel=1e-5)

    class Rows(torch.utils.data.Dataset):  # says nothing of where its rows come from
        def __len__(self):
            return len(stored)

        def __getitem__(self, i):
            return stored[i]

    with pytest.raises(ValueError, match="does not say its order"):
        trainer_for(tmp_path, tiny_bert(seed=2), stored).evaluate(Rows())
    plain = trainer_for(tmp_path, tiny_bert(seed=2), Rows())  # alone, its logits are taken in the student's order
    assert math.isfinite(plain.evaluate(Rows())["eval_loss"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_teacher_logit_guard_finds_any_nan_or_inf(dtype):
    """The per-batch guard reads the extremes only; it must agree with ``isfinite(...).all()`` on every case."""
    for bad in (float("nan"), float("inf"), float("-inf"), None):
        values = torch.randn(4, 7).to(dtype)
        if bad is not None:
            values[2, 3] = bad
        assert all_finite(values).item() == torch.isfinite(values).all().item() == (bad is None)
    assert all_finite(torch.empty(0, 7, dtype=dtype)).item()
