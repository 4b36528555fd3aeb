"""The benchmark scripts run end to end on tiny settings, so a change to the library cannot silently break them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_distill.vision import image_model_from_config, load_sklearn_digits

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, timeout: int = 300) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_distillation_throughput_reports_every_ratio_of_its_tasks(tmp_path):
    out = tmp_path / "cpu.json"
    tasks = ["text-tiny", "text-1000-classes", "image-8-views-1000-classes"]
    run("distillation_throughput.py", "--tasks", *tasks, "--rounds", "1", "--steps", "1", "--warmup_steps", "1",
        "--output", str(out))  # fmt: skip
    results = json.loads(out.read_text())
    assert sorted(results["tasks"]) == sorted(tasks)
    assert "kd_in_batch / ideal" in results["tasks"]["text-tiny"]["ratios"]
    many = results["tasks"]["image-8-views-1000-classes"]["ratios"]
    assert all(value > 0 for value in many.values()) and "kd_precomputed / ce, CPU time without full GC" in many
    assert "kd_precomputed / ce, median step CPU time" in many
    assert "| image-8-views-1000-classes |" in run("distillation_throughput.py", "--table", str(out))


def test_logit_path_costs_times_every_part(tmp_path):
    out = tmp_path / "costs.json"
    run("logit_path_costs.py", "--classes", "10", "--batch_size", "4", "--views", "2", "--rows", "16",
        "--chunk_rows", "4", "--output", str(out))  # fmt: skip
    costs = json.loads(out.read_text())["cpu_ms_per_batch"]
    assert len(costs) == 13 and all(ms > 0 for ms in costs.values())
    assert "gather logits, cache file of 4 chunks" in costs
    assert "collate token ids + logits as one array" in costs


def test_paired_steps_reports_both_trainers_and_their_difference():
    out = run("paired_steps.py", "--steps", "4", "--skip", "1")
    assert "text-1000-classes: ce" in out and "paired difference" in out and "median-step ratio" in out


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("distillation_throughput.py", ["--steps", "0"], "--steps must be >= 1"),
        ("paired_steps.py", ["--steps", "4", "--skip", "4"], "--skip (4) must be >= 0 and below --steps (4)"),
    ],
)
def test_benchmarks_refuse_step_counts_that_time_nothing(script, args, message):
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr


@pytest.fixture
def digits_teacher(tmp_path) -> str:
    labels = load_sklearn_digits()["train"].features["label"].names
    overrides = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"}
    teacher = image_model_from_config("resnet", labels, image_size=8, overrides=overrides)
    teacher.save_pretrained(tmp_path / "teacher")
    return str(tmp_path / "teacher")


def test_methods_table_runs_image_methods_and_reports_them(tmp_path, digits_teacher):
    out = tmp_path / "methods.jsonl"
    args = ["fmnist", "--dataset", "sklearn_digits", "--teacher", digits_teacher, "--train_samples", "64"]
    args += ["--epochs", "1", "--seeds", "0", "1", "--methods", "kd", "ce_only", "two_stage", "--output", str(out)]
    run("methods_table.py", *args)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["method"], r["seed"]) for r in records) == sorted(
        (m, s) for m in ("kd", "ce_only", "two_stage") for s in (0, 1)
    )
    run("methods_table.py", *args)  # finished runs are skipped
    assert len(out.read_text().splitlines()) == 6
    table = run("methods_table.py", "--report", str(out))
    assert "| two_stage | 2 |" in table and "| kd | 2 |" in table
