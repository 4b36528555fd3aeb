"""Two CPU processes (torchrun, gloo) against one process at the same global batch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("distributed_train.py")
ROOT = SCRIPT.parents[1]


def run(tmp_path, nproc: int, batch_size: int) -> dict:
    out = tmp_path / f"run{nproc}.json"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), str(SCRIPT), str(out), str(batch_size)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_two_process_training_matches_one_process_at_equal_global_batch(tmp_path):
    single = run(tmp_path, nproc=1, batch_size=8)
    ddp = run(tmp_path, nproc=2, batch_size=4)
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    steps_1 = [e for e in single["log_history"] if "loss" in e]
    steps_2 = [e for e in ddp["log_history"] if "loss" in e]
    assert len(steps_1) == len(steps_2) == 2
    for a, b in zip(steps_1, steps_2, strict=True):
        for key in ("loss", "loss_ce", "loss_kd", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), key
    for key in ("eval_loss", "eval_loss_ce", "eval_loss_kd", "eval_agreement", "eval_teacher_accuracy"):
        assert ddp["eval"][key] == pytest.approx(single["eval"][key], rel=1e-4), key
