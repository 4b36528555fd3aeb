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
from tests.conftest import (
    LABELS,
    ROOT,
    WORDS,
    common_flags,
    load_recipe,
    make_args,
    tiny_bert,
    tiny_text_dataset,
    varied_bert,
    write_csv,
)


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
    from safetensors.torch import load_file

    adapter = load_file(
        assets / "lora-self" / "adapter_model.safetensors"
    )  # then the adapter moves away from the base
    assert any("lora_B" in name and tensor.abs().sum() > 0 for name, tensor in adapter.items())
    assert "self_distillation" in (assets / "lora-self" / "README.md").read_text()


def test_predict_results_follow_the_datasets_row_order_under_length_grouping(tmp_path):
    import torch

    from hf_distill import DataCollatorForDistillation, DistillationTrainer
    from hf_distill.workflow.publish import PREDICTIONS_FILE, write_predictions

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
    # the trainer's own predict (called from Python) follows the rows' order too; evaluation as well
    predicted = trainer.predict(test).predictions.argmax(-1)
    assert [LABELS[c] for c in predicted] == expected and len(set(expected)) > 1
    assert isinstance(trainer.get_test_dataloader(test).sampler, torch.utils.data.SequentialSampler)
    # control: training keeps its length-grouped sampler
    trainer.train_dataset = test
    assert type(trainer._get_train_sampler()).__name__ == "LengthGroupedSampler"


def recipe_parser(recipe: str = "text_classification"):
    from hf_distill import DistillationTrainingArguments
    from hf_distill.text.data import TextDataArguments
    from hf_distill.workflow.arguments import RecipeArgumentParser

    module = load_recipe(recipe)
    dataclasses = (module.StudentArguments, TextDataArguments, DistillationTrainingArguments)
    return RecipeArgumentParser(dataclasses, description=module.__doc__, groups={module.StudentArguments: "student"})


def test_run_classification_flag_names_map_to_ours(tmp_path):
    from hf_distill.workflow.arguments import parse_arguments

    flags = ["--model_name_or_path", "my/student", "--text_column_names", "a,b", "--label_column_name", "y"]
    flags += ["--teacher_model_name_or_path", "t", "--output_dir", str(tmp_path / "out"), "--do_eval"]
    student, data, _ = parse_arguments(recipe_parser(), flags)
    assert (student.student_model_name_or_path, data.text_columns, data.label_column) == ("my/student", "a,b", "y")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"teacher_model_name_or_path: t\ntext_column_names: a\nlabel_column_name: y\noutput_dir: {tmp_path}\n"
        "do_eval: true\n"
    )
    _, data, _ = parse_arguments(recipe_parser(), [str(config)])
    assert (data.text_columns, data.label_column) == ("a", "y")


def test_model_name_or_path_stays_the_teachers_own_flag_in_train_teacher():
    from hf_distill.text.data import TextDataArguments
    from hf_distill.workflow.arguments import RecipeArgumentParser
    from hf_distill.workflow.checkpoints import TeacherTrainingArguments

    module = load_recipe("train_teacher")
    parser = RecipeArgumentParser((module.TeacherArguments, TextDataArguments, TeacherTrainingArguments))
    assert parser.aliases == {"text_columns": "--text_column_names", "label_column": "--label_column_name"}


def test_unknown_flag_and_config_key_name_the_nearest(tmp_path):
    from hf_distill.workflow.arguments import parse_arguments

    flags = ["--teacher_model_name_or_path", "t", "--output_dir", str(tmp_path), "--do_train"]
    with pytest.raises(ValueError, match=r"unknown flag --alhpa: did you mean --alpha\?\. `--help`"):
        parse_arguments(recipe_parser(), [*flags, "--alhpa", "0.3"])  # its value is not a second problem
    with pytest.raises(ValueError, match="unknown flag --temprature: did you mean --temperature"):
        parse_arguments(recipe_parser(), [*flags, "--temprature=3"])
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"teacher_model_name_or_path": "t", "output_dir": "o", "studnet_init": "random"}))
    with pytest.raises(ValueError, match="unknown key 'studnet_init': did you mean 'student_init'"):
        parse_arguments(recipe_parser(), [str(config)])


def test_a_run_with_nothing_to_do_is_refused(assets):
    flags = [f for f in common_flags(assets, "nothing") if f not in ("--do_train", "--do_eval")]
    with pytest.raises(ValueError, match="Nothing to do: pass --do_train, --do_eval and/or --do_predict"):
        load_recipe("text_classification").main(flags)
    assert not (assets / "nothing").exists()


def test_recipe_help_starts_with_description_example_and_first_group_and_errors_are_one_line(assets):
    recipe = [sys.executable, str(ROOT / "recipes" / "text_classification.py")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    env.pop("HF_DISTILL_TRACEBACK", None)
    text = subprocess.run([*recipe, "--help"], env=env, capture_output=True, text=True, check=True).stdout
    head = "\n".join(text.splitlines()[:30])
    assert "Distil a text classifier into a smaller student" in head
    assert "accelerate launch recipes/text_classification.py --teacher_model_name_or_path" in head
    assert "\ndata:\n" in head and "--dataset_name" in head
    titles = [line[:-1] for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert titles == ["options", "data", "student", "distillation method", "training", "Hub"]
    assert "--use_liger_kernel" not in text and "--label_names" not in text  # refused by DistillationTrainer
    assert "--text_columns TEXT_COLUMNS, --text_column_names" in text
    assert "(default: None)" not in text and "--dataset-name" not in text
    assert "pruning_results.json" in text.split("--latency_seconds")[1].split("--")[0]  # says what it times

    flags = [f for f in common_flags(assets, "nothing") if f not in ("--do_train", "--do_eval")]
    proc = subprocess.run([*recipe, *flags], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].startswith("text_classification.py: error: Nothing to do: pass --do_train")
    proc = subprocess.run([*recipe, *flags], env={**env, "HF_DISTILL_TRACEBACK": "1"}, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_recipe_card_names_copied_layers_and_drops_an_unused_student_flag(assets, caplog, monkeypatch):
    monkeypatch.chdir(assets)
    flags = common_flags(assets, "layers") + ["--student_layers", "0,1"]
    flags += ["--student_model_name_or_path", str(assets / "student_base")]  # not used by teacher_layers
    monkeypatch.setattr(sys, "argv", [str(ROOT / "recipes" / "text_classification.py"), *flags])
    with caplog.at_level("WARNING"):
        load_recipe("text_classification").main(flags)
    assert "does not use --student_model_name_or_path: ignored" in caplog.text
    card = (assets / "layers" / "README.md").read_text()
    assert "copies of the teacher's layers 0, 1" in " ".join(card.split())
    command = card.split("## How to reproduce")[1].split("```bash\n")[1].split("```")[0]
    assert "--student_model_name_or_path" not in command and "--student_layers 0,1" in command
    assert str(assets) not in command and str(ROOT) not in command  # no absolute path
