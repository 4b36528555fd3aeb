"""The text recipes end to end on tiny models, a tiny csv and a tiny WordPiece tokenizer."""

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import BertTokenizerFast

from tests.conftest import LABELS, WORDS, tiny_bert

ROOT = Path(__file__).resolve().parents[1]


def load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def write_csv(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = ["text,label"]
    for _ in range(n):
        label = rng.choice(LABELS)
        words = rng.sample(WORDS, 4) + [{"negative": "awful", "neutral": "ok", "positive": "great"}[label]]
        rows.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def assets(tmp_path, word_tokenizer):
    teacher = tiny_bert(seed=1, vocab_size=word_tokenizer.vocab_size)
    teacher.save_pretrained(tmp_path / "teacher")
    word_tokenizer.save_pretrained(tmp_path / "teacher")
    # A pretrained-style student with another vocabulary and tokenizer.
    vocab = tmp_path / "student_vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(WORDS, reverse=True)]) + "\n")
    student_tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    tiny_bert(seed=5, vocab_size=student_tokenizer.vocab_size, layers=1).save_pretrained(tmp_path / "student_base")
    student_tokenizer.save_pretrained(tmp_path / "student_base")
    write_csv(tmp_path / "train.csv", 24, seed=0)
    write_csv(tmp_path / "validation.csv", 12, seed=1)
    return tmp_path


def common_flags(assets: Path, out: str) -> list[str]:
    return [
        "--teacher_model_name_or_path",
        str(assets / "teacher"),
        "--train_file",
        str(assets / "train.csv"),
        "--validation_file",
        str(assets / "validation.csv"),
        "--output_dir",
        str(assets / out),
        "--do_train",
        "--do_eval",
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "8",
        "--report_to",
        "none",
        "--use_cpu",
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
        "--max_seq_length",
        "16",
    ]


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
    tiny_bert(seed=7, vocab_size=32).save_pretrained(assets / "teacher2")  # a second teacher, same labels
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
