"""The text recipes end to end on tiny models, a tiny csv and a tiny WordPiece tokenizer."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import (
    LABELS,
    ROOT,
    common_flags,
    label_names_of,
    load_recipe,
    permuted_teacher,
    tiny_bert,
    varied_bert,
)


def test_train_teacher_keeps_a_snapshot_per_epoch(assets):
    metrics = load_recipe("train_teacher").main(
        [
            "--model_name_or_path",
            str(assets / "teacher"),
            "--train_file",
            str(assets / "train.csv"),
            "--validation_file",
            str(assets / "validation.csv"),
            "--output_dir",
            str(assets / "ft"),
            "--do_train",
            "--do_eval",
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "8",
            "--eval_strategy",
            "epoch",
            "--save_strategy",
            "epoch",
            "--report_to",
            "none",
            "--use_cpu",
        ]
    )
    snapshots = json.loads((assets / "ft" / "snapshots.json").read_text())
    assert [s["epoch"] for s in snapshots] == [1.0, 2.0]
    assert all(Path(s["path"], "model.safetensors").exists() and "eval_accuracy" in s for s in snapshots)
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0


@pytest.mark.parametrize("precompute", [False, True])
@pytest.mark.parametrize("student", ["teacher_layers", "pretrained"])
def test_distillation_recipe_runs(assets, precompute, student):
    flags = common_flags(assets, f"out-{student}-{precompute}") + ["--student_init", student]
    if student == "pretrained":  # another tokenizer: the teacher reads teacher_input_ids
        flags += ["--student_model_name_or_path", str(assets / "student_base")]
    else:
        flags += ["--student_num_layers", "1"]
    if precompute:
        flags += ["--precompute_teacher_logits", "--teacher_logits_dtype", "float16"]
    metrics = load_recipe("text_classification").main(flags)
    for key in ("eval_accuracy", "eval_macro_f1", "eval_agreement", "eval_loss_kd", "eval_loss_ce"):
        assert key in metrics, key
    out = assets / f"out-{student}-{precompute}"
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists() and (out / "README.md").exists()
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert all("loss_kd" in entry for entry in history if "loss" in entry)


def test_recipe_reads_a_yaml_config(assets):
    config = {
        "teacher_model_name_or_path": str(assets / "teacher"),
        "train_file": str(assets / "train.csv"),
        "validation_file": str(assets / "validation.csv"),
        "output_dir": str(assets / "yaml-run"),
        "do_train": True,
        "do_eval": True,
        "max_steps": 2,
        "student_num_layers": 1,
        "alpha": 0.0,
        "report_to": "none",
        "use_cpu": True,
        "save_strategy": "no",
    }
    (assets / "run.yaml").write_text(yaml.safe_dump(config))
    metrics = load_recipe("text_classification").main([str(assets / "run.yaml")])
    assert "eval_agreement" in metrics


def test_two_process_recipe_run(assets):
    flags = common_flags(assets, "ddp") + ["--student_num_layers", "1", "--per_device_train_batch_size", "4"]
    flags += ["--precompute_teacher_logits", "--cache_dir", str(assets / "cache")]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(ROOT / "recipes" / "text_classification.py"),
        *flags,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((assets / "ddp" / "all_results.json").read_text())
    assert "eval_agreement" in results and "eval_loss_kd" in results
    # 24 and 12 rows, blocks of 32 batches: process 0 computes both splits, process 1 gets no rows and waits
    assert len(list((assets / "cache").glob("**/hf_distill-*/shard-00000-of-00002"))) == 2
    assert not list((assets / "cache").glob("**/hf_distill-*/shard-00001-of-00002"))


@pytest.mark.parametrize(
    "method",
    [
        ["--hidden_state_loss", "mse", "--attention_loss", "kl", "--layer_map", "0:1"],
        [
            "--teacher_weights",
            "0.7,0.3",
            "--precompute_teacher_logits",
            "--teacher_logits_columns",
            "logits_a,logits_b",
        ],
        ["--teacher_weights", "0.7,0.3"],
    ],
    ids=["intermediate", "two-teachers-precomputed", "two-teachers"],
)
def test_recipe_exposes_intermediate_and_multi_teacher_methods(assets, method):
    vocab_size = json.loads((assets / "teacher" / "config.json").read_text())["vocab_size"]  # teachers share one
    tiny_bert(seed=7, vocab_size=vocab_size).save_pretrained(assets / "teacher2")  # a second teacher, same labels
    flags = common_flags(assets, "out-method") + ["--student_num_layers", "1", *method]
    if "--teacher_weights" in method:
        flags[1] = f"{assets / 'teacher'},{assets / 'teacher2'}"
    metrics = load_recipe("text_classification").main(flags)
    history = json.loads((assets / "out-method" / "trainer_state.json").read_text())["log_history"]
    if "--hidden_state_loss" in method:
        assert "eval_loss_hidden_state" in metrics and "eval_loss_attention" in metrics
        assert all("loss_hidden_state" in entry for entry in history if "loss" in entry)
    card = (assets / "out-method" / "README.md").read_text()
    assert f"| {method[0][2:]} | {method[1]} |" in card  # the method's settings are recorded in the card
    if "--teacher_weights" in method:  # both teachers are named, in-batch or precomputed
        assert f"{assets / 'teacher'} + {assets / 'teacher2'}" in card


def test_teacher_with_non_alphabetical_labels_is_scored_by_name(assets, word_tokenizer):
    """csv label strings are encoded in the student's (teacher's) label order, not sorted: the teacher's accuracy the
    recipe reports is the one computed by label name."""
    teacher = permuted_teacher(varied_bert(seed=3, vocab_size=word_tokenizer.vocab_size), [2, 0, 1])
    assert label_names_of(teacher) == ["positive", "negative", "neutral"]
    teacher.save_pretrained(assets / "pnn")
    word_tokenizer.save_pretrained(assets / "pnn")
    flags = common_flags(assets, "pnn-out") + ["--student_num_layers", "1", "--max_steps", "1"]
    flags[flags.index("--teacher_model_name_or_path") + 1] = str(assets / "pnn")
    metrics = load_recipe("text_classification").main(flags)
    rows = [line.rsplit(",", 1) for line in (assets / "validation.csv").read_text().splitlines()[1:]]
    encoded = word_tokenizer(
        [text for text, _ in rows], truncation=True, max_length=16, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        predicted = teacher(**encoded).logits.argmax(-1).tolist()
    by_name = sum(label_names_of(teacher)[p] == label for p, (_, label) in zip(predicted, rows, strict=True)) / len(
        rows
    )
    by_sorted_index = sum(sorted(LABELS)[p] == label for p, (_, label) in zip(predicted, rows, strict=True)) / len(
        rows
    )
    assert by_name != by_sorted_index  # the data tells the two encodings apart
    assert metrics["eval_teacher_accuracy"] == pytest.approx(by_name)


def test_rerun_resumes_from_the_crashed_runs_last_checkpoint(assets, caplog):
    """Running the command again on an output_dir with checkpoints resumes from the last one (a run cut off at step
    2 of 4 goes on from its saved state); --resume_from_checkpoint True does so explicitly or says there is none."""
    flags = common_flags(assets, "rerun") + [
        "--student_num_layers",
        "1",
        "--save_steps",
        "1",
        "--save_total_limit",
        "2",
    ]
    flags[flags.index("--save_strategy") + 1] = "steps"
    recipe = load_recipe("text_classification")
    recipe.main([*flags, "--max_steps", "2"])
    out = assets / "rerun"
    with pytest.raises(
        ValueError, match="holds a finished run.*--overwrite_output_dir.*--resume_from_checkpoint True"
    ):
        recipe.main([*flags, "--max_steps", "2"])  # the finished run's results are not overwritten
    # The run "crashed" after step 2: it never got to write its final model and results.
    for name in ("train_results.json", "eval_results.json", "all_results.json", "model.safetensors"):
        (out / name).unlink()
    crashed = [e["loss"] for e in json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]]
    with caplog.at_level(logging.INFO):
        recipe.main([*flags, "--max_steps", "4", "--learning_rate", "0.5"])  # from scratch, step 2 would differ
    assert "Checkpoint detected, resuming training at" in caplog.text
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert [e["loss"] for e in state["log_history"] if "loss" in e][:2] == crashed
    recipe.main([*flags, "--max_steps", "5", "--resume_from_checkpoint", "True"])
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 5
    with pytest.raises(ValueError, match="--resume_from_checkpoint True, but .* holds no checkpoint"):
        recipe.main([*common_flags(assets, "fresh"), "--student_num_layers", "1", "--resume_from_checkpoint", "True"])


def test_recipe_exposes_the_methods_as_flags(assets):
    flags = common_flags(assets, "methods") + ["--student_num_layers", "1", "--precompute_teacher_logits"]
    flags += ["--max_steps", "6", "--distillation_loss", "dkd", "--dkd_beta", "4", "--teacher_correction", "swap"]
    flags += ["--alpha", "0.2", "--alpha_end", "0.8", "--alpha_schedule", "cosine", "--logit_standardization"]
    flags += ["--distillation_epochs", "1", "--two_stage_steps", "2"]  # 24 rows at batch size 8: 3 steps an epoch
    metrics = load_recipe("text_classification").main(flags)
    assert "eval_accuracy" in metrics
    out = assets / "methods"
    history = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert [("loss_kd" in e, e["alpha"] == 1.0) for e in history] == [(True, False)] * 3 + [(False, True)] * 3
    assert history[0]["alpha"] == pytest.approx(0.2) and history[1]["alpha"] > history[0]["alpha"]
    method = yaml.safe_load((out / "README.md").read_text().split("---")[1])["distillation"]
    assert method["distillation_loss"] == "dkd" and method["dkd_beta"] == 4.0
    assert method["alpha_schedule"] == "cosine to 0.8" and method["two_stage_steps"] == 2


@pytest.mark.parametrize("recipe", ["text_classification", "image_classification"])
def test_recipe_help_lists_the_method_flags(recipe):
    from transformers import HfArgumentParser

    from hf_distill import DistillationTrainingArguments
    from hf_distill.text.data import TextDataArguments
    from hf_distill.vision import ImageDataArguments

    module = load_recipe(recipe)
    if recipe == "text_classification":
        parser = HfArgumentParser((module.StudentArguments, TextDataArguments, DistillationTrainingArguments))
    else:
        parser = HfArgumentParser((module.ModelArguments, ImageDataArguments, DistillationTrainingArguments))
    text = parser.format_help()  # a '%' in any help string would raise here
    for flag in ("--distillation_loss", "--dkd_beta", "--teacher_correction", "--logit_standardization"):
        assert flag in text
    for flag in ("--alpha_schedule", "--temperature_end", "--distillation_epochs", "--two_stage_steps"):
        assert flag in text


def test_custom_loss_hyperparameter_from_the_recipe_flag(assets, scaled_kl):
    """``--loss_kwargs`` fills a registered loss's own keyword-only parameter: at the first step (before any update)
    the distillation term is ``scale`` times the plain KL of the same batch."""
    first_kd = {}
    for name, extra in (("kl", []), ("scaled", ["--distillation_loss", scaled_kl, "--loss_kwargs", '{"scale": 2}'])):
        flags = common_flags(assets, f"loss-{name}") + ["--max_steps", "1", *extra]
        flags += ["--student_init", "pretrained", "--student_model_name_or_path", str(assets / "student_base")]
        load_recipe("text_classification").main(flags)
        history = json.loads((assets / f"loss-{name}" / "trainer_state.json").read_text())["log_history"]
        first_kd[name] = next(entry["loss_kd"] for entry in history if "loss" in entry)
    assert first_kd["kl"] > 0 and first_kd["scaled"] == pytest.approx(2 * first_kd["kl"], rel=1e-5)
    card = (assets / "loss-scaled" / "README.md").read_text()
    assert yaml.safe_load(card.split("---")[1])["distillation"]["loss_kwargs"] == '{"scale": 2}'
