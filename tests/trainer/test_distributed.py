"""Several CPU processes (torchrun, gloo) against one: DDP training at the same global batch, sharded
precomputation, FSDP teacher placement and DeepSpeed ZeRO-3 training. Each launch checks several things."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import PartialState
from datasets import load_from_disk

from hf_distill import precompute_teacher_logits, read_logits_info
from tests.conftest import tiny_bert, tiny_text_dataset

SCRIPT = Path(__file__).with_name("distributed_train.py")
ROOT = SCRIPT.parents[2]
STEP_KEYS = ("loss", "loss_ce", "loss_kd", "grad_norm")
EVAL_KEYS = ("eval_loss", "eval_loss_ce", "eval_loss_kd", "eval_agreement", "eval_teacher_accuracy")


def run(workdir: Path, nproc: int, batch_size: int, *options: str) -> dict:
    out = workdir / f"run{nproc}{''.join(options)}.json".replace("/", "_")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), str(SCRIPT), str(out), str(batch_size), *options]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def steps(record: dict) -> list[dict]:
    return [e for e in record["log_history"] if "loss" in e]


def assert_same_training(a: dict, b: dict) -> None:
    assert len(steps(a)) == len(steps(b)) == 2
    for step_a, step_b in zip(steps(a), steps(b), strict=True):
        for key in STEP_KEYS:
            assert step_b[key] == pytest.approx(step_a[key], rel=1e-4), key
    for key in EVAL_KEYS if b["eval"] is not None else ():
        # abs: an evaluation KD loss near 0 (~2e-5) differs by ~1e-8 between reduction orders in float32
        assert b["eval"][key] == pytest.approx(a["eval"][key], rel=1e-4, abs=1e-7), key


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict, dict]:
    workdir = tmp_path_factory.mktemp("distributed")
    single = run(workdir, 1, 8, "--precompute-dir", str(workdir))
    return workdir, single, run(workdir, 2, 4, "--precompute-dir", str(workdir), "--fsdp-teacher")


def test_two_process_training_matches_one_process_at_equal_global_batch(runs):
    _, single, ddp = runs
    assert ddp["processes_seen_by_trainer"] == 2 and single["processes_seen_by_trainer"] == 1
    assert ddp["teacher"]["type"] == "BertForSequenceClassification"  # DDP: moved to the device, not wrapped
    assert_same_training(single, ddp)


def test_two_process_intermediate_distillation_keeps_projections_in_sync(tmp_path):
    """The projections live outside the DDP model: their gradients are averaged over processes by the trainer."""
    single, ddp = run(tmp_path, 1, 8, "--intermediate"), run(tmp_path, 2, 4, "--intermediate")
    for step_a, step_b in zip(steps(single), steps(ddp), strict=True):
        for key in (*STEP_KEYS, "loss_hidden_state"):
            assert step_b[key] == pytest.approx(step_a[key], rel=1e-4), key
    ranks = [record["projections"] for record in ddp["processes"]]
    for name, value in single["projections"].items():
        for rank in ranks:
            assert torch.allclose(torch.tensor(rank[name]), torch.tensor(value), atol=1e-6), name


def test_two_process_precomputation_equals_one_process(runs):
    workdir, _, ddp = runs
    one, two = load_from_disk(str(workdir / "logits-1")), load_from_disk(str(workdir / "logits-2"))
    assert two.column_names == one.column_names and two.features == one.features
    assert two["text"] == one["text"]
    assert two["teacher_logits"] == one["teacher_logits"]  # exact: the same batches on the same kernels
    assert read_logits_info(two, "teacher_logits") == read_logits_info(one, "teacher_logits") is not None
    assert len(list(workdir.glob("data/hf_distill-*/shard-0000[01]-of-00002"))) == 2
    for process in ddp["processes"]:
        assert process["teacher_calls"][0] > 0 and process["teacher_calls"][1] == 0  # the second call reads shards
        assert "held in memory" in process["in_memory_error"] and "cache_dir=" in process["in_memory_error"]


@pytest.mark.parametrize("version", [1, 2])
def test_fsdp_placed_teacher_is_sharded_frozen_and_gives_the_same_loss(runs, version):
    _, _, ddp = runs
    for process in ddp["processes"]:
        placed = process["fsdp_teacher"][f"fsdp{version}"]
        assert placed["max_logit_diff"] < 1e-5
        assert placed["loss"] == pytest.approx(placed["expected_loss"], rel=1e-5, abs=1e-7)
        assert placed["local_size"] < 0.6 * placed["full_size"]  # each of the 2 processes holds about half
        assert not placed["trainable"]


def test_deepspeed_zero3_teacher_is_partitioned_and_training_matches_one_process(runs, tmp_path):
    pytest.importorskip("deepspeed")
    _, single, _ = runs
    zero3 = run(tmp_path, 2, 8, "--deepspeed-stage", "3")
    # On CPU accelerate does not count DeepSpeed's processes (the Trainer sees 1): every process reads the same
    # batches, so ZeRO-3 over 2 processes must train exactly as one process at the same per-device batch. (It cannot
    # evaluate: gathering predictions over a group of 2 that accelerate counts as 1 fails.)
    assert zero3["processes_seen_by_trainer"] == 1 and len(zero3["processes"]) == 2
    for process in zero3["processes"]:
        teacher = process["teacher"]
        assert teacher["type"] == "DeepSpeedEngine" and teacher["local_size"] < teacher["full_size"]
    assert_same_training(single, zero3)


def test_a_launch_that_accelerate_does_not_see_is_refused(monkeypatch):
    PartialState()  # this test process: one process, no launcher
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="started 2 processes.*PartialState\\(cpu=True\\)"):
        precompute_teacher_logits(tiny_bert(), tiny_text_dataset(4))
