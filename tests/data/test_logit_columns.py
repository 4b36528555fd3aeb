"""Logit columns reach the trainer's batches as float32 / int64 tensors equal to the stored values."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from datasets import Dataset, Features, List, Value, load_from_disk
from transformers import DataCollatorWithPadding, default_data_collator

from hf_distill import DataCollatorForDistillation, DistillationTrainer
from hf_distill.data.logit_columns import ChunkedColumn, LogitColumns, column_array
from tests.conftest import make_args, tiny_bert, tiny_text_dataset

SCRIPT = Path(__file__).with_name("dataloader_logits.py")
NAMES = ("full float32", "full float16", "top-k", "K views")


def launch(tmp_path: Path, nproc: int) -> list[dict]:
    out = tmp_path / f"batches{nproc}.json"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), str(SCRIPT), str(out)]
    proc = subprocess.run(cmd, cwd=SCRIPT.parents[2], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(Path(f"{out}.{rank}").read_text()) for rank in range(nproc)]


@pytest.mark.parametrize("nproc", [1, 2])
def test_dataloader_batches_carry_the_stored_logits_as_float32(tmp_path, nproc):
    results = launch(tmp_path, nproc)
    for name in NAMES:
        assert all(process[name]["ok"] for process in results), name
        assert all(process["processes"] == nproc for process in results)
        ids = [process[name]["ids"] for process in results]
        assert sorted(sum(ids, [])) == list(range(32)), name  # every row once per epoch, split over the processes
        assert all(len(part) == 32 // nproc for part in ids)


def test_column_array_reshapes_nested_fixed_lists_and_refuses_ragged_ones():
    values = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
    features = Features({"x": List(List(Value("float16"), length=4), length=3), "i": List(Value("int16"), length=2)})
    data = Dataset.from_dict({"x": values, "i": [[1, 2], [3, 4]]}, features=features)
    x, i = column_array(data.data.table, "x"), column_array(data.data.table, "i")
    assert x.dtype == np.float32 and x.shape == (2, 3, 4) and np.array_equal(x, values.astype(np.float32))
    assert i.dtype == np.int64 and i.tolist() == [[1, 2], [3, 4]]
    ragged = pa.table({"x": [[1.0], [1.0, 2.0]]})
    with pytest.raises(ValueError, match="lists of any length.*LogitColumns"):
        column_array(ragged, "x")


def test_logit_columns_follow_selections_and_keep_other_columns():
    data = Dataset.from_dict({"teacher_logits": np.arange(12.0).reshape(6, 2), "text": list("abcdef")})
    data = data.cast_column("teacher_logits", List(Value("float32"), length=2)).shuffle(seed=0).select([4, 1, 2])
    wrapped = LogitColumns(data, ["teacher_logits", "teacher_logits_indices"])
    assert len(wrapped) == 3 and wrapped.column_names == ["text", "teacher_logits"]
    rows = wrapped.__getitems__([2, 0])
    assert [row["text"] for row in rows] == [data[2]["text"], data[0]["text"]]
    assert [row["teacher_logits"].tolist() for row in rows] == [data[2]["teacher_logits"], data[0]["teacher_logits"]]


def test_trainer_dataloader_reads_logits_from_arrow_not_python_lists(tmp_path):
    data = tiny_text_dataset(8)
    data = data.add_column("teacher_logits", [[float(i), 0.0, 1.0] for i in range(8)])
    data = data.cast_column("teacher_logits", List(Value("float16"), length=3))
    trainer = DistillationTrainer(
        model=tiny_bert(), args=make_args(tmp_path), train_dataset=data, data_collator=DataCollatorForDistillation()
    )
    loader = trainer.get_train_dataloader()
    assert isinstance(loader.dataset, LogitColumns) and "text" not in loader.dataset.column_names
    row = loader.dataset.__getitems__([5])[0]
    assert isinstance(row["teacher_logits"], np.ndarray) and row["teacher_logits"].dtype == np.float32
    assert row["teacher_logits"].tolist() == [5.0, 0.0, 1.0] and isinstance(row["input_ids"], list)


def test_logit_columns_read_every_chunk_of_a_memory_mapped_cache_without_copying_or_pickling_it(tmp_path):
    values = np.random.default_rng(0).standard_normal((600, 10)).astype(np.float16)
    features = Features({"teacher_logits": List(Value("float16"), length=10), "id": Value("int64")})
    Dataset.from_dict({"teacher_logits": values, "id": range(600)}, features=features).save_to_disk(
        str(tmp_path / "cache"), max_shard_size="4KB"
    )
    data = load_from_disk(str(tmp_path / "cache"))
    assert data.data.table.column("teacher_logits").num_chunks > 1
    subset = data.shuffle(seed=1).select(range(100, 500))
    wrapped = LogitColumns(subset, ["teacher_logits"])
    positions = [399, 0, 17, 250, 3]
    rows = wrapped.__getitems__(positions)
    assert [row["id"] for row in rows] == [subset[p]["id"] for p in positions]
    for row in rows:
        assert row["teacher_logits"].dtype == np.float32
        assert np.array_equal(row["teacher_logits"], values[row["id"]].astype(np.float32))
    address = data.data.table.column("teacher_logits").chunks[0].flatten().buffers()[1].address
    region = wrapped._readers["teacher_logits"].regions[0]  # the first shard file's mapping, not a copy of it
    assert not region.flags.owndata and region.ctypes.data <= address < region.ctypes.data + region.nbytes
    dumped = pickle.dumps(wrapped)  # workers get the file path, not the logits
    assert len(dumped) < values.nbytes / 3 and values[:4].tobytes() not in dumped


@pytest.mark.parametrize("on_disk", [False, True])
def test_rows_of_many_chunks_are_gathered_from_their_shared_buffer(tmp_path, on_disk):
    """`map` writes a chunk per batch, in memory or in a cache file; a batch's rows come from any of them, as whole
    rows or as one stored view of a K-view column."""
    values = np.random.default_rng(0).standard_normal((300, 3, 4)).astype(np.float32)
    features = Features({"id": Value("int64"), "teacher_logits": List(List(Value("float32"), length=4), length=3)})
    data = Dataset.from_dict({"id": range(300)}).map(
        lambda batch: {"teacher_logits": values[batch["id"]]},
        batched=True,
        batch_size=16,
        writer_batch_size=16,
        features=features,
        cache_file_name=str(tmp_path / "cache.arrow") if on_disk else None,
    )
    assert bool(data.cache_files) == on_disk and data.data.table.column("teacher_logits").num_chunks > 10
    reader = ChunkedColumn(data.data.table, "teacher_logits")
    assert len(reader.regions) == 1
    rows = np.array([299, 0, 17, 150, 16, 15, 17])
    assert np.array_equal(reader.take(rows), values[rows])
    views = np.array([2, 0, 1, 1, 2, 0, 0])
    assert np.array_equal(reader.take(rows, views), values[rows, views])
    assert reader.take(np.array([], dtype=np.int64)).shape == (0, 3, 4)
    empty = Dataset.from_dict(
        {"teacher_logits": values[:0]}, features=Features({"teacher_logits": features["teacher_logits"]})
    )
    assert (
        ChunkedColumn(empty.data.table, "teacher_logits").take(np.array([], dtype=np.int64)).size == 0
    )  # no rows, no error


def test_logit_columns_of_a_dataset_of_logits_alone():
    data = Dataset.from_dict({"teacher_logits": np.eye(3, dtype=np.float32)})
    data = data.cast_column("teacher_logits", List(Value("float32"), length=3))
    wrapped = LogitColumns(data, ["teacher_logits"])
    assert len(wrapped) == 3 and wrapped.column_names == ["teacher_logits"]
    assert [row["teacher_logits"].tolist() for row in wrapped.__getitems__([2, 0])] == [[0, 0, 1], [1, 0, 0]]
    assert wrapped.__getitems__([]) == []


def test_a_list_column_of_one_width_is_cast_once_and_a_ragged_one_refused(tmp_path):
    logits = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    data = tiny_text_dataset(8).add_column("teacher_logits", logits.tolist())  # lists of any length, as users build
    assert data.features["teacher_logits"].length == -1
    trainer = DistillationTrainer(
        model=tiny_bert(), args=make_args(tmp_path), train_dataset=data, data_collator=DataCollatorForDistillation()
    )
    wrapped = trainer.get_train_dataloader().dataset
    assert wrapped.logits.features["teacher_logits"].length == 3  # one Arrow cast
    rows = wrapped.__getitems__([5, 0])
    np.testing.assert_array_equal(np.stack([row["teacher_logits"] for row in rows]), logits[[5, 0]])
    trainer.train()  # control: it trains
    # K views per row from a map returning nested lists
    views = data.map(lambda row: {"teacher_logits": [row["teacher_logits"]] * 2})
    assert LogitColumns(views, ["teacher_logits"]).__getitems__([1])[0]["teacher_logits"].shape == (2, 3)
    ragged = data.remove_columns("teacher_logits").add_column("teacher_logits", [[1.0, 2.0, 3.0]] * 7 + [[1.0]])
    with pytest.raises(ValueError, match=r"holds lists of varying length \(from 1 to 3 values"):
        LogitColumns(ragged, ["teacher_logits"])
    with pytest.raises(ValueError, match="ragged"):  # the trainer refuses it before training
        DistillationTrainer(
            model=tiny_bert(),
            args=make_args(tmp_path),
            train_dataset=ragged,
            data_collator=DataCollatorForDistillation(),
        )


def test_several_precomputed_columns_take_the_fast_arrow_path(tmp_path):
    data = tiny_text_dataset(8)
    data = data.add_column("logits_a", [[float(i), 0.0, 1.0] for i in range(8)])
    data = data.add_column("logits_b", [[0.0, float(i), 2.0] for i in range(8)])
    for column in ("logits_a", "logits_b"):
        data = data.cast_column(column, List(Value("float32"), length=3))
    trainer = DistillationTrainer(
        model=tiny_bert(),
        args=make_args(tmp_path, teacher_logits_columns="logits_a,logits_b"),
        train_dataset=data,
        data_collator=DataCollatorForDistillation(),
    )
    loader = trainer.get_train_dataloader()
    assert isinstance(loader.dataset, LogitColumns) and loader.dataset.columns == ["logits_a", "logits_b"]
    row = loader.dataset.__getitems__([5])[0]
    assert all(isinstance(row[c], np.ndarray) and row[c].dtype == np.float32 for c in ("logits_a", "logits_b"))
    assert row["logits_a"].tolist() == [5.0, 0.0, 1.0] and row["logits_b"].tolist() == [0.0, 5.0, 2.0]
    trainer.train()
    assert all(np.isfinite(log["loss_kd"]) for log in trainer.state.log_history if "loss" in log)


@pytest.mark.parametrize("views", [1, 8])  # 8: the batch size, where the extra axis silently broadcast
def test_logits_with_an_extra_axis_are_refused_before_training_naming_the_shape_and_the_fix(tmp_path, views):
    logits = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    flat = tiny_text_dataset(8).remove_columns("text").add_column("teacher_logits", logits.tolist())
    stacked = flat.map(lambda row: {"teacher_logits": [row["teacher_logits"]] * views})

    def trainer(train):
        return DistillationTrainer(
            model=tiny_bert(),
            args=make_args(tmp_path),
            train_dataset=train,
            data_collator=DataCollatorForDistillation(),
        )

    with pytest.raises(ValueError, match=rf"shape \({views}, 3\) per example.*Squeeze.*DistillationImageTransform"):
        trainer(stacked)
    # a dataset that is not Arrow is read as it comes: the first batch's shape is refused before any optimizer step
    rows = [{**row, "teacher_logits": np.asarray(row["teacher_logits"], dtype=np.float32)} for row in stacked]
    plain = trainer(rows)
    with pytest.raises(ValueError, match=rf"shape \(8, {views}, 3\) for a batch.*needs \(batch, classes\)"):
        plain.train()
    assert plain.state.global_step == 0
    # control: the same logits as one row per example train
    flat_trainer = trainer(flat)
    flat_trainer.train()
    assert all(np.isfinite(log["loss_kd"]) for log in flat_trainer.state.log_history if "loss" in log)


@pytest.mark.parametrize(
    ("collator", "workers"), [("padding", 0), ("default", 0), ("distillation", 0), ("distillation", 1), ("custom", 0)]
)
def test_batches_are_the_collators_own_and_a_custom_collator_sees_the_logits_per_row(
    tmp_path, word_tokenizer, collator, workers
):
    """Around a collator that stacks logit columns unchanged, the rows come without their logits after the first batch
    and the gathered arrays become the batch's tensors; every batch still equals the collator's own batch of the same
    rows, in a DataLoader worker too. Any other collator keeps receiving rows that carry their logits."""
    data = tiny_text_dataset(20, ragged=collator != "default").remove_columns("text")
    data = data.add_column("teacher_logits", np.random.default_rng(0).standard_normal((20, 3)).tolist())
    seen = []

    def custom(rows):
        seen.append(all("teacher_logits" in row for row in rows))
        return DataCollatorForDistillation()(rows)

    collators = {
        "padding": DataCollatorWithPadding(word_tokenizer),
        "default": default_data_collator,
        "distillation": DataCollatorForDistillation(),
        "custom": custom,
    }
    args = make_args(tmp_path, per_device_eval_batch_size=6, dataloader_num_workers=workers)
    trainer = DistillationTrainer(
        model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data, data_collator=collators[collator]
    )
    loader = trainer.get_eval_dataloader()
    batches = list(loader)
    assert len(batches) == 4
    for k, batch in enumerate(batches):
        expected = collators[collator]([data[i] for i in range(6 * k, min(6 * k + 6, 20))])
        assert set(batch) == set(expected)
        for key, value in expected.items():
            assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), (k, key)
    if workers == 0:
        assert loader.dataset.batch_arrays == (collator != "custom")
    if collator == "custom":
        assert len(seen) == 8 and all(seen)  # 4 batches from the loader, 4 from the check above
