"""Every study config under recipes/studies/ runs end to end on tiny models and data.

The configs' models and data are replaced by tiny ones and the seeds cut to one; every other grid entry (every arm)
runs. Trials run in this process (the recipe's ``main(argv)`` stands in for the subprocess) to keep the suite fast;
tests/sweeps/test_sweep.py covers the real subprocesses.
"""

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from hf_distill.workflow.sweep import SweepConfig, run_sweep
from tests.conftest import ROOT, load_recipe, tiny_bert, write_csv

STUDIES = sorted((ROOT / "recipes" / "studies").glob("*.yaml"))


@pytest.fixture
def in_process(monkeypatch):
    """Run each trial's recipe in this process instead of a subprocess, on one thread (tiny models gain nothing from
    more threads and lose much to waiting for them on a busy machine)."""
    recipes = {}

    def run(command, stdout=None, stderr=None):
        script = next(part for part in command if part.endswith(".py"))
        name = Path(script).stem
        recipes.setdefault(name, load_recipe(name))
        recipes[name].main(command[command.index(script) + 1 :])
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr("hf_distill.workflow.sweep.subprocess.run", run)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def text_assets(tmp_path, word_tokenizer):
    teacher = tmp_path / "teacher"
    model = tiny_bert(seed=1, vocab_size=word_tokenizer.vocab_size, layers=6)
    snapshots = []
    for step in (1, 2):
        model.save_pretrained(teacher / f"checkpoint-{step}")
        word_tokenizer.save_pretrained(teacher / f"checkpoint-{step}")
        snapshots.append({"path": str(teacher / f"checkpoint-{step}"), "step": step, "eval_accuracy": 0.3 * step})
    model.save_pretrained(teacher)
    word_tokenizer.save_pretrained(teacher)
    (teacher / "snapshots.json").write_text(json.dumps(snapshots))
    tiny_bert(seed=2, vocab_size=word_tokenizer.vocab_size, layers=6).save_pretrained(tmp_path / "pretrained")
    word_tokenizer.save_pretrained(tmp_path / "pretrained")
    write_csv(tmp_path / "train.csv", 24, seed=0)
    write_csv(tmp_path / "validation.csv", 12, seed=1)
    return tmp_path


@pytest.fixture
def image_teacher(tmp_path):
    from hf_distill.vision import image_model_from_config

    overrides = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}
    model = image_model_from_config("resnet", [str(i) for i in range(10)], num_channels=1, overrides=overrides)
    model.save_pretrained(tmp_path / "image_teacher")
    return tmp_path / "image_teacher"


def tiny_overrides(config: dict, assets: Path) -> None:
    """Point a study config at tiny models and data, keeping every grid entry but one seed."""
    config["grid"]["seed"] = [1]
    args = config["args"]
    common = {"use_cpu": True, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "warmup_steps": 0}
    if config["script"].endswith("text_classification.py"):
        args.pop("dataset_name", None)
        args |= common | {"train_file": str(assets / "train.csv"), "validation_file": str(assets / "validation.csv")}
        if "test_file" in args:
            args["test_file"] = str(assets / "validation.csv")
        args |= {"student_model_name_or_path": str(assets / "pretrained"), "max_seq_length": 16}
        args |= {"pruning_samples": 8, "pruning_batch_size": 4, "latency_seconds": 0.01}
        if "teacher_model_name_or_path" in config["grid"]:
            config["grid"]["teacher_model_name_or_path"] = {"snapshots": str(assets / "teacher")}
        else:
            args["teacher_model_name_or_path"] = str(assets / "teacher")
    else:
        args |= common | {"dataset_name": "sklearn_digits", "max_train_samples": 32, "max_eval_samples": 16}
        args |= {"teacher_model_name_or_path": str(assets / "image_teacher"), "num_train_epochs": 1}
        vit = args.get("student_model_type", "vit") in ("vit", "deit")
        if vit and "prune_channels" not in str(config["grid"]):  # CNN presets and the pruned teacher are small
            args["student_config_overrides"] = {"patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1}
            args["student_config_overrides"] |= {"num_attention_heads": 2, "intermediate_size": 16}
        config["objective"] = "eval_accuracy"  # the digits have no test split
    for dimension in config["grid"].values():  # one epoch per trial; stage switches inside its 6 steps (else refused)
        for cell in dimension.values() if isinstance(dimension, dict) else ():
            if not isinstance(cell, dict):
                continue
            for key, tiny in (
                ("num_train_epochs", 1),
                ("two_stage_steps", 2),
                ("two_stage_epochs", 0.5),
                ("distillation_epochs", 0.5),
            ):
                if key in cell:
                    cell[key] = tiny
    config["output_dir"] = str(assets / "study")


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_config_runs_end_to_end(path, text_assets, image_teacher, in_process, monkeypatch):
    import yaml

    monkeypatch.setenv("MINILM", str(text_assets / "pretrained"))
    raw = yaml.safe_load(path.read_text())
    tiny_overrides(raw, text_assets)
    (text_assets / "study.yaml").write_text(yaml.safe_dump(raw))
    config = SweepConfig.from_yaml(text_assets / "study.yaml")
    results = run_sweep(config, log=lambda *_: None)
    assert len(results) == len(config.points()) and results[config.objective].between(0, 1).all()
    table = (Path(config.output_dir) / "results.md").read_text()
    assert table.count("\n") >= len(config.points()) + 2
    csv = pd.read_csv(Path(config.output_dir) / "results.csv")
    assert csv[config.objective].tolist() == pytest.approx(results[config.objective].tolist())
    if raw["study"] == "eskd":
        assert "best-teaching snapshot: checkpoint-" in table and "snapshot_eval_accuracy" in csv
    if raw["study"] == "pruning":
        pruned = csv[csv["recovery"] == "none"]
        assert (pruned["parameters_after"] < pruned["parameters_before"]).all()
        assert "eval_teacher_accuracy" in csv and "train_runtime" not in pruned.dropna(axis=1)
    if raw["study"] == "pruning_cnn":
        pruned = csv[csv["student"].str.startswith("pruned")]
        assert (pruned["parameters_after"] < pruned["parameters_before"]).all()
        assert pruned["parameters_after"].nunique() == 1
