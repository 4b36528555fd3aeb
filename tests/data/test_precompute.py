import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from hf_distill import precompute_teacher_logits, read_logits_info
from tests.conftest import LABELS, tiny_bert, tiny_text_dataset


def one_by_one(teacher, dataset):
    with torch.no_grad():
        return torch.cat([teacher(input_ids=torch.tensor([row["input_ids"]])).logits for row in dataset])


def test_length_grouped_batches_match_one_example_at_a_time_in_original_order():
    teacher, data = tiny_bert(seed=1), tiny_text_dataset(23)
    out = precompute_teacher_logits(teacher, data, batch_size=4)
    assert out["text"] == data["text"]  # order and other columns untouched
    torch.testing.assert_close(torch.tensor(out["teacher_logits"]), one_by_one(teacher, data), rtol=1e-4, atol=1e-5)


def test_float16_storage_and_provenance_survive_save_and_load(tmp_path):
    teacher = tiny_bert(seed=1)
    out = precompute_teacher_logits(teacher, tiny_text_dataset(8), dtype="float16", column="t_logits")
    out.save_to_disk(str(tmp_path / "ds"))
    loaded = Dataset.load_from_disk(str(tmp_path / "ds"))
    assert loaded.features["t_logits"].feature.dtype == "float16"
    info = read_logits_info(loaded, "t_logits")
    assert info.labels == LABELS and info.dtype == "float16" and info.teacher == "BertForSequenceClassification"
    assert read_logits_info(loaded, "teacher_logits") is None
    expected = one_by_one(teacher, tiny_text_dataset(8))
    torch.testing.assert_close(torch.tensor(loaded["t_logits"]), expected, rtol=2e-3, atol=2e-3)


def test_second_call_on_a_cached_dataset_does_not_run_the_teacher(tmp_path):
    tiny_text_dataset(16).save_to_disk(str(tmp_path / "ds"))
    data = Dataset.load_from_disk(str(tmp_path / "ds"))
    teacher = tiny_bert(seed=1)
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    first = precompute_teacher_logits(teacher, data, batch_size=4)
    n_calls = len(calls)
    assert n_calls == 4
    second = precompute_teacher_logits(teacher, data, batch_size=4)
    assert len(calls) == n_calls
    assert second["teacher_logits"] == first["teacher_logits"]
    assert read_logits_info(second, "teacher_logits").labels == LABELS
    with torch.no_grad():
        teacher.classifier.bias.add_(1.0)  # other weights: a new fingerprint, a new computation
    precompute_teacher_logits(teacher, data, batch_size=4)
    assert len(calls) == 2 * n_calls


def test_dataset_dict_gets_every_split():
    splits = DatasetDict({"train": tiny_text_dataset(6), "validation": tiny_text_dataset(4, seed=1)})
    out = precompute_teacher_logits(tiny_bert(seed=1), splits)
    assert set(out) == {"train", "validation"}
    assert all(np.shape(split["teacher_logits"]) == (len(split), 3) for split in out.values())


def test_prefixed_teacher_columns_are_preferred():
    data = tiny_text_dataset(6)
    both = data.add_column("teacher_input_ids", [[2, 7, 3]] * 6)
    out = precompute_teacher_logits(tiny_bert(seed=1), both)
    with torch.no_grad():
        expected = tiny_bert(seed=1)(input_ids=torch.tensor([[2, 7, 3]])).logits.expand(6, -1)
    torch.testing.assert_close(torch.tensor(out["teacher_logits"]), expected, rtol=1e-4, atol=1e-5)


def test_recomputing_replaces_the_column_and_keeps_the_format():
    data = tiny_text_dataset(6).with_format("torch", columns=["input_ids", "label"])
    once = precompute_teacher_logits(tiny_bert(seed=1), data)
    twice = precompute_teacher_logits(tiny_bert(seed=2), once)
    assert twice.format["type"] == "torch" and "teacher_logits" in twice.format["columns"]
    assert not torch.equal(once[0]["teacher_logits"], twice[0]["teacher_logits"])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"dtype": "bfloat16"}, "dtype must be one of"), ({"batch_size": 0}, "batch_size must be >= 1")],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        precompute_teacher_logits(tiny_bert(), tiny_text_dataset(4), **kwargs)


def test_dataset_without_teacher_inputs_is_refused():
    with pytest.raises(ValueError, match="none of the teacher's inputs.*tokenize"):
        precompute_teacher_logits(tiny_bert(), Dataset.from_dict({"text": ["a", "b"]}))


def test_an_interrupted_precomputation_leaves_no_partial_cache_and_a_rerun_is_complete(tmp_path):
    tiny_text_dataset(600).save_to_disk(str(tmp_path / "ds"))
    data = Dataset.load_from_disk(str(tmp_path / "ds"))
    files_before = sorted(p.name for p in (tmp_path / "ds").iterdir())
    teacher, calls = tiny_bert(seed=1), []

    def fail_midway(*args):
        calls.append(1)
        if len(calls) == 40:  # batch size 8 in map batches of 256 rows: the first map batch is already written
            raise KeyboardInterrupt("simulated interruption")

    hook = teacher.register_forward_hook(fail_midway)
    with pytest.raises(KeyboardInterrupt):
        precompute_teacher_logits(teacher, data, batch_size=8)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == files_before  # no partial cache file
    hook.remove()
    out = precompute_teacher_logits(teacher, data, batch_size=8)
    assert len(out) == 600 and out.cache_files[0]["filename"].startswith(str(tmp_path / "ds"))
    expected = precompute_teacher_logits(teacher, tiny_text_dataset(600), batch_size=8)  # in memory, never cached
    assert out["teacher_logits"] == expected["teacher_logits"]
