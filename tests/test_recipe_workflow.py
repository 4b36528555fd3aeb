"""The recipes as users of transformers' example scripts expect them: predictions, logging, PEFT and the Hub."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, RepoUrl
from transformers import BertTokenizerFast

from hf_distill.text.data import detect_text_columns
from tests.conftest import LABELS, WORDS, tiny_bert
from tests.test_text_recipe import ROOT, common_flags, load_recipe, write_csv


@pytest.fixture
def assets(tmp_path, word_tokenizer):
    teacher = tiny_bert(seed=1, vocab_size=word_tokenizer.vocab_size)
    teacher.save_pretrained(tmp_path / "teacher")
    word_tokenizer.save_pretrained(tmp_path / "teacher")
    tiny_bert(seed=5, vocab_size=word_tokenizer.vocab_size, layers=1).save_pretrained(tmp_path / "student_base")
    BertTokenizerFast.from_pretrained(tmp_path / "teacher").save_pretrained(tmp_path / "student_base")
    write_csv(tmp_path / "train.csv", 24, seed=0)
    write_csv(tmp_path / "validation.csv", 12, seed=1)
    texts = [" ".join(WORDS[i : i + 4]) for i in range(6)]
    (tmp_path / "test.csv").write_text("text\n" + "\n".join(texts) + "\n")  # no label column
    return tmp_path


def predictions(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines[0] == "index\tprediction"
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(i) for i, _ in rows] == list(range(len(rows)))
    return [name for _, name in rows]


def test_do_predict_on_an_unlabelled_file_writes_named_predictions_and_logs_info(assets):
    flags = common_flags(assets, "predict") + ["--student_num_layers", "1", "--test_file", str(assets / "test.csv")]
    cmd = [sys.executable, str(ROOT / "recipes" / "text_classification.py"), *flags, "--do_predict"]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert re.search(r"INFO - __main__ - Teacher .*parameters", proc.stderr), proc.stderr[-4000:]
    assert "text ['text']" in proc.stderr  # detected, no --text_columns
    names = predictions(assets / "predict" / "predict_results.txt")
    assert len(names) == 6 and set(names) <= set(LABELS)
    assert not (assets / "predict" / "test_results.json").exists()  # no labels, no test metrics


def test_no_model_card_without_training(assets):
    flags = [f for f in common_flags(assets, "eval-only") if f != "--do_train"] + ["--student_num_layers", "1"]
    metrics = load_recipe("text_classification").main(flags)
    assert "eval_accuracy" in metrics
    assert not (assets / "eval-only" / "README.md").exists()


def test_detect_text_columns_as_run_glue():
    from datasets import Dataset, DatasetDict

    pair = Dataset.from_dict({"idx": [0], "sentence2": ["b"], "sentence1": ["a"], "label": [1]})
    assert detect_text_columns(DatasetDict(train=pair)) == ["sentence1", "sentence2"]
    single = Dataset.from_dict({"id": [3], "review": ["fine"], "label": ["pos"]})
    assert detect_text_columns(DatasetDict(train=single)) == ["review"]
    with pytest.raises(ValueError, match="--text_columns"):
        detect_text_columns(DatasetDict(train=Dataset.from_dict({"x": [1], "label": [0]})))


def test_offline_push_fails_before_tokenization(assets, monkeypatch):
    recipe = load_recipe("text_classification")

    def must_not_run(*args, **kwargs):
        raise AssertionError("tokenized before the Hub was checked")

    monkeypatch.setattr(recipe, "tokenize_for_distillation", must_not_run)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    flags = common_flags(assets, "offline") + ["--student_num_layers", "1", "--push_to_hub"]
    with pytest.raises(ConnectionError, match="Nothing has been computed yet"):
        recipe.main(flags)


def test_failed_upload_leaves_metrics_and_card_on_disk(assets, monkeypatch):
    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id if '/' in repo_id else 'me/' + repo_id}")

    def upload_folder(self, **kwargs):
        raise ConnectionError("the network went away")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    flags = common_flags(assets, "pushed") + ["--student_num_layers", "1", "--push_to_hub", "--do_predict"]
    flags += ["--test_file", str(assets / "test.csv")]
    with pytest.raises(RuntimeError, match=r"hf upload me/pushed .*pushed"):
        load_recipe("text_classification").main(flags)
    out = assets / "pushed"
    for name in ("all_results.json", "eval_results.json", "trainer_state.json", "README.md", "model.safetensors"):
        assert (out / name).is_file(), name
    assert "eval_accuracy" in json.loads((out / "all_results.json").read_text())
    assert (out / "predict_results.txt").is_file()


def test_peft_recipe_round_trip(assets):
    flags = common_flags(assets, "lora") + ["--student_init", "pretrained"]
    flags += ["--student_model_name_or_path", str(assets / "student_base"), "--use_peft", "--lora_r", "4"]
    flags += ["--lora_target_modules", "query", "value", "--do_predict", "--test_file", str(assets / "test.csv")]
    metrics = load_recipe("text_classification").main(flags)
    out = assets / "lora"
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and sorted(adapter["target_modules"]) == ["query", "value"]
    assert not (out / "model.safetensors").exists()  # only the adapter (and the new head) is saved
    card = (out / "README.md").read_text()
    assert "library_name: peft" in card and "test_accuracy" not in metrics  # the test file has no labels
    assert f"{metrics['eval_teacher_accuracy']:.4f}" in card  # the teacher's accuracy survives the adapter
    assert f"starting from `{assets / 'student_base'}`" in card  # the pretrained student, not the teacher
    # The card's usage snippet, run as printed, reloads the adapter and predicts what --do_predict wrote.
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    namespace: dict = {}
    exec(snippet, namespace)
    model, tokenizer = namespace["model"], BertTokenizerFast.from_pretrained(out)
    texts = (assets / "test.csv").read_text().splitlines()[1:]
    logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits
    assert [model.config.id2label[i] for i in logits.argmax(-1).tolist()] == predictions(out / "predict_results.txt")


def test_train_teacher_scores_the_test_split_and_shows_modality_in_help(assets):
    write_csv(assets / "test_labelled.csv", 9, seed=2)
    flags = common_flags(assets, "teacher-ft")[2:]  # no --teacher_model_name_or_path
    flags += ["--model_name_or_path", str(assets / "teacher"), "--do_predict"]
    flags += ["--test_file", str(assets / "test_labelled.csv")]
    metrics = load_recipe("train_teacher").main(flags)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert len(predictions(assets / "teacher-ft" / "predict_results.txt")) == 9
    assert "test_accuracy" in json.loads((assets / "teacher-ft" / "all_results.json").read_text())
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "train_teacher.py"), "--help"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "--modality {text,image}" in proc.stdout


def test_peft_recipe_self_distils_from_the_frozen_base(assets):
    flags = common_flags(assets, "lora-self") + ["--student_init", "pretrained", "--self_distillation"]
    flags += ["--student_model_name_or_path", str(assets / "student_base"), "--use_peft", "--lora_r", "4"]
    flags += ["--lora_target_modules", "query", "value"]
    load_recipe("text_classification").main(flags)
    history = json.loads((assets / "lora-self" / "trainer_state.json").read_text())["log_history"]
    steps = [entry for entry in history if "loss" in entry]
    assert steps[0]["loss_kd"] < 1e-6  # LoRA starts as the identity: the student equals its base, the teacher
    assert steps[-1]["loss_kd"] > 0  # then the adapter moves away from the base
    assert "self_distillation" in (assets / "lora-self" / "README.md").read_text()


def test_predict_results_follow_the_datasets_row_order_under_length_grouping(tmp_path):
    import numpy as np
    import torch

    from hf_distill import DataCollatorForDistillation, DistillationTrainer
    from hf_distill.workflow.publish import PREDICTIONS_FILE, write_predictions
    from tests.conftest import make_args, tiny_text_dataset, varied_bert

    test = tiny_text_dataset(24, seed=7, labels=False).remove_columns("text")  # rows of 3 to 11 tokens
    model = varied_bert(seed=5)
    trainer = DistillationTrainer(
        model=model,
        args=make_args(tmp_path, train_sampling_strategy="group_by_length", per_device_eval_batch_size=4, alpha=0.0),
        teacher_model=varied_bert(seed=6),
        data_collator=DataCollatorForDistillation(),
    )
    write_predictions(trainer, test)
    lines = (Path(trainer.args.output_dir) / PREDICTIONS_FILE).read_text().splitlines()[1:]
    with torch.no_grad():
        expected = [LABELS[int(model(input_ids=torch.tensor([row["input_ids"]])).logits.argmax())] for row in test]
    assert [line.split("\t") for line in lines] == [[str(i), name] for i, name in enumerate(expected)]
    assert trainer.args.train_sampling_strategy == "group_by_length"  # training keeps its sampler
    # control: the trainer's own predict follows the length-grouped order, which is not the rows' order
    grouped = trainer.predict(test).predictions.argmax(-1)
    assert [LABELS[c] for c in grouped] != expected and len(set(expected)) > 1
    assert np.isin(grouped, range(3)).all()
