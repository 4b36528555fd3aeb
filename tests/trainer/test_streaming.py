"""Streamed data: `datasets.IterableDataset` with a teacher-logits column, precomputed or lazily computed."""

import numpy as np
import pytest
import torch
from datasets import Dataset, IterableDataset

from hf_distill import DataCollatorForDistillation, DistillationTrainer, precompute_teacher_logits, read_logits_info
from tests.conftest import make_args, tiny_bert, tiny_text_dataset, varied_bert


def train_losses(tmp_path, dataset, **args) -> list[dict]:
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2),
        # sequential: the map-style run reads the rows in the stream's order
        args=make_args(tmp_path, per_device_train_batch_size=4, max_steps=4, alpha=0.3, **args),
        train_dataset=dataset,
        data_collator=DataCollatorForDistillation(),
    )
    trainer.train()
    keys = ("loss", "loss_ce", "loss_kd", "grad_norm")
    return [{k: e[k] for k in keys} for e in trainer.state.log_history if "loss" in e]


def test_training_on_a_stream_matches_the_map_style_dataset(tmp_path):
    # "text" must be dropped by remove_unused_columns and "teacher_logits" kept: without it there is no teacher.
    data = precompute_teacher_logits(varied_bert(seed=1), tiny_text_dataset(16), batch_size=4)
    map_style = train_losses(tmp_path, data, train_sampling_strategy="sequential")
    streamed = train_losses(tmp_path, data.to_iterable_dataset())
    assert len(map_style) == 4
    for a, b in zip(map_style, streamed, strict=True):
        assert b == pytest.approx(a, rel=1e-6)


def test_precompute_on_a_stream_is_lazy_and_equals_the_map_style_result():
    teacher, data = tiny_bert(seed=1), tiny_text_dataset(23)
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    stream = precompute_teacher_logits(teacher, data.to_iterable_dataset(), batch_size=4)
    assert isinstance(stream, IterableDataset) and not calls
    rows = list(stream)
    assert calls
    expected = precompute_teacher_logits(teacher, data, batch_size=4)
    assert torch.equal(
        torch.tensor(np.stack([r["teacher_logits"] for r in rows])), torch.tensor(expected["teacher_logits"])
    )
    assert [r["text"] for r in rows] == data["text"]
    assert read_logits_info(stream, "teacher_logits") == read_logits_info(expected, "teacher_logits")


def test_stream_without_features_is_refused_with_the_fix():
    stream = IterableDataset.from_generator(lambda: iter([{"input_ids": [2, 7, 3]}]))
    with pytest.raises(ValueError, match="features are unknown.*features="):
        precompute_teacher_logits(tiny_bert(), stream)


@pytest.mark.parametrize(
    "logits, message",
    [([[0.0, 1.0]] * 8, "holds 2 logits per example but the student has 3"), ([[0.0, np.nan, 1.0]] * 8, "NaN or inf")],
)
def test_stream_with_bad_logits_is_refused_before_training(tmp_path, logits, message):
    data = tiny_text_dataset(8).add_column("teacher_logits", logits)
    with pytest.raises(ValueError, match=message):
        DistillationTrainer(model=tiny_bert(), args=make_args(tmp_path), train_dataset=data.to_iterable_dataset())


def test_stream_without_logits_or_teacher_is_refused(tmp_path):
    stream = Dataset.from_dict({"input_ids": [[2, 7, 3]], "label": [0]}).to_iterable_dataset()
    with pytest.raises(ValueError, match="no 'teacher_logits' column"):
        DistillationTrainer(model=tiny_bert(), args=make_args(tmp_path), train_dataset=stream)


def test_nan_in_a_streamed_column_after_the_checked_rows_names_the_stored_logits(tmp_path):
    from hf_distill.data.dataset_checks import STREAM_CHECK_ROWS

    n = STREAM_CHECK_ROWS + 16
    data = precompute_teacher_logits(varied_bert(seed=1), tiny_text_dataset(n), batch_size=16)
    broken = data.map(
        lambda row, i: {"teacher_logits": [np.nan] * 3 if i == n - 3 else row["teacher_logits"]}, with_indices=True
    )
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2),
        args=make_args(tmp_path, per_device_train_batch_size=8, max_steps=n // 8, alpha=0.3),
        train_dataset=broken.to_iterable_dataset(),  # checked by its first rows: the NaN row is past them
        data_collator=DataCollatorForDistillation(),
    )
    with pytest.raises(FloatingPointError, match=r"stored teacher logits \(column 'teacher_logits'\)") as error:
        trainer.train()
    assert "student diverged" not in str(error.value)
    assert trainer.state.global_step == n // 8  # the batch holding the NaN row is the last one
    # control: the same stream without the broken row trains to finite losses
    logs = train_losses(tmp_path, data.to_iterable_dataset())
    assert all(np.isfinite(e["loss"]) and np.isfinite(e["loss_kd"]) for e in logs)
