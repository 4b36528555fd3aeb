"""`hf-distill compare` on tiny models and tokenizers saved to disk, and a CSV of raw text."""

import csv
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import BertTokenizerFast

from hf_distill.cli import main
from hf_distill.evaluation.metrics import accuracy, mean_kl
from hf_distill.teachers.loading import load_teacher
from tests.conftest import DIGITS, LABELS, WORDS, tiny_bert, varied_bert


def save(model, tokenizer, path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_compare_command_tokenizes_for_each_side(tmp_path, word_tokenizer, capsys):
    vocab = tmp_path / "teacher_vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *reversed(WORDS)]) + "\n")
    teacher_tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    teacher = varied_bert(seed=1, layers=3, hidden=32)
    teacher_dir = save(teacher, teacher_tokenizer, tmp_path / "teacher")
    student_dir = save(tiny_bert(seed=2), word_tokenizer, tmp_path / "student")
    other_dir = save(varied_bert(seed=3), word_tokenizer, tmp_path / "other")

    texts = ["good movie", "awful food", "the food was ok", "not very good", "great", "bad bad movie", "fine"] * 2
    labels = [LABELS[i % 3] for i in range(len(texts))]
    with open(tmp_path / "eval.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "sentiment"])
        writer.writerows(zip(texts, labels, strict=True))

    output = tmp_path / "cmp"
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    code = main(
        ["compare", "--teacher_model_name_or_path", teacher_dir, "--student_model_name_or_path",
         f"distilled={student_dir}", other_dir, "--validation_file", str(tmp_path / "eval.csv"),
         "--text_columns", "sentence", "--label_column", "sentiment",
         "--num_threads", "1", "--latency_runs", "3", "--throughput_batch_size", "4", "--throughput_runs", "2",
         "--warmup_runs", "1", "--output_dir", str(output), *([] if has_matplotlib else ["--no_plot"])]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| distilled |" in printed and "| other |" in printed and "torch.set_num_threads(1)" in printed
    assert (output / "comparison.png").exists() == has_matplotlib
    assert (output / "comparison.md").read_text() in printed
    report = json.loads((output / "comparison.json").read_text())
    assert [r["name"] for r in report["results"]] == ["teacher", "distilled", "other"]

    encoded = teacher_tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        predictions = teacher(**encoded).logits.argmax(-1).numpy()
    expected = accuracy(predictions, [LABELS.index(name) for name in labels])
    assert report["results"][0]["accuracy"] == pytest.approx(expected)


def test_compare_command_refuses_unknown_labels(tmp_path, word_tokenizer):
    model_dir = save(tiny_bert(seed=2), word_tokenizer, tmp_path / "m")
    (tmp_path / "eval.csv").write_text("text,label\ngood,happy\n")
    with pytest.raises(ValueError, match="happy"):
        main(
            ["compare", "--teacher_model_name_or_path", model_dir, "--student_model_name_or_path", model_dir,
             "--validation_file", str(tmp_path / "eval.csv")]
        )  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], r"1 rows have no 'label'; drop them from the evaluation set"),
        (["--dataset_name", "tweet_sentiment"], "Give --dataset_name or --validation_file, not both"),
    ],
    ids=["unlabelled row", "two sources"],
)
def test_compare_command_refuses_an_evaluation_set_it_cannot_score(tmp_path, word_tokenizer, flags, message):
    model_dir = save(tiny_bert(seed=2), word_tokenizer, tmp_path / "m")
    (tmp_path / "eval.csv").write_text("text,label\ngood,positive\nbad,\n")
    with pytest.raises(ValueError, match=message):
        main(
            ["compare", "--teacher_model_name_or_path", model_dir, "--student_model_name_or_path", model_dir,
             "--validation_file", str(tmp_path / "eval.csv"), *flags]
        )  # fmt: skip


def test_compare_command_loads_a_peft_adapter_on_its_base(tmp_path, word_tokenizer):
    peft = pytest.importorskip("peft")
    teacher_dir = save(varied_bert(seed=1), word_tokenizer, tmp_path / "teacher")
    base = varied_bert(seed=3, labels=["a", "b"])  # the student's encoder with a 2-class head that must not be used
    base_dir = save(base, word_tokenizer, tmp_path / "base")
    student = peft.get_peft_model(
        varied_bert(seed=3),
        peft.LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query"], init_lora_weights=False),
    )
    student.peft_config["default"].base_model_name_or_path = base_dir
    student.save_pretrained(tmp_path / "adapter")
    word_tokenizer.save_pretrained(tmp_path / "adapter")
    (tmp_path / "eval.jsonl").write_text('{"text": "good movie", "label": 0}\n{"text": "bad food", "label": 2}\n')
    output = tmp_path / "cmp"
    main(
        ["compare", "--teacher_model_name_or_path", teacher_dir, "--student_model_name_or_path",
         f"lora={tmp_path / 'adapter'}", "--validation_file", str(tmp_path / "eval.jsonl"), "--latency_runs", "1", "--throughput_batch_size", "2",
         "--throughput_runs", "1", "--warmup_runs", "0", "--no_plot", "--output_dir", str(output)]
    )  # fmt: skip
    report = json.loads((output / "comparison.json").read_text())
    expected = student.merge_and_unload()
    assert report["results"][1]["num_parameters"] == sum(p.numel() for p in expected.parameters())
    encoded = word_tokenizer(["good movie", "bad food"], padding=True, return_tensors="pt")
    with torch.no_grad():
        kl = mean_kl(expected(**encoded).logits.numpy(), load_teacher(teacher_dir)(**encoded).logits.numpy())
    assert report["results"][1]["mean_kl"] == pytest.approx(kl, rel=1e-4)


FAST_FLAGS = ["--latency_runs", "2", "--throughput_batch_size", "4", "--throughput_runs", "1", "--warmup_runs", "0",
              "--bootstrap_resamples", "100", "--num_threads", "1", "--no_plot"]  # fmt: skip


def test_compare_command_loads_a_builtin_image_set_as_the_recipe_does(tmp_path):
    """sklearn digits split and subsampled as image_classification.py does; a grey teacher and an RGB student
    each get their own processor's pixels; the student also runs in ONNX Runtime, fp32 and int8."""
    pytest.importorskip("sklearn")
    pytest.importorskip("onnxruntime")
    from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification

    from hf_distill.vision import ImageDataArguments, default_image_processor, prepare_image_splits

    torch.manual_seed(0)
    label_kwargs = dict(id2label=dict(enumerate(DIGITS)), label2id={d: i for i, d in enumerate(DIGITS)})
    teacher = ResNetForImageClassification(
        ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8], depths=[1], **label_kwargs)
    ).eval()
    teacher.save_pretrained(tmp_path / "teacher")
    default_image_processor((8, 8), num_channels=1).save_pretrained(tmp_path / "teacher")
    student = ViTForImageClassification(
        ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=32, **label_kwargs)
    ).eval()  # fmt: skip
    student.save_pretrained(tmp_path / "vit")
    default_image_processor((8, 8)).save_pretrained(tmp_path / "vit")
    output = tmp_path / "cmp"
    main(
        ["compare", "--teacher_model_name_or_path", str(tmp_path / "teacher"), "--student_model_name_or_path",
         f"vit={tmp_path / 'vit'}", "--dataset_name", "sklearn_digits", "--max_eval_samples", "20", "--seed", "3",
         "--backend", "pytorch,onnxruntime", "--quantize", "dynamic", "--output_dir", str(output), *FAST_FLAGS]
    )  # fmt: skip
    report = json.loads((output / "comparison.json").read_text())
    assert [r["name"] for r in report["results"]] == ["teacher", "vit", "vit (onnxruntime)", "vit (onnxruntime int8)"]
    assert (output / "onnx" / "vit.onnx").exists() and (output / "onnx" / "vit.int8.onnx").exists()
    splits, _ = prepare_image_splits(ImageDataArguments(dataset_name="sklearn_digits", max_eval_samples=20), seed=3)
    images, labels = splits["validation"]["image"], np.asarray(splits["validation"]["label"])
    with torch.no_grad():
        grey = torch.tensor(np.asarray(images), dtype=torch.float32)[:, None] / 255 * 2 - 1
        expected = accuracy(teacher(pixel_values=grey).logits.argmax(-1).numpy(), labels)
        rgb = grey.expand(-1, 3, -1, -1)
        expected_student = accuracy(student(pixel_values=rgb).logits.argmax(-1).numpy(), labels)
    assert report["results"][0]["accuracy"] == pytest.approx(expected)
    assert report["results"][1]["accuracy"] == pytest.approx(expected_student)
    assert report["results"][2]["accuracy"] == report["results"][1]["accuracy"]


def test_compare_command_help_uses_the_recipes_names(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = capsys.readouterr().out
    for flag in ("--teacher_model_name_or_path", "--dataset_name", "--max_eval_samples", "--max_seq_length",
                 "--output_dir", "--backend", "--quantize"):  # fmt: skip
        assert flag in text
    assert "(default: validation, else test)." in text and "(default: None)" not in text


def test_top_level_help_loads_neither_torch_nor_transformers():
    code = (
        "import sys\nfrom hf_distill.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "compare" in proc.stdout and "sweep-table" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "[]"


def test_console_errors_are_one_line_unless_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_DISTILL_TRACEBACK", raising=False)
    argv = ["sweep-table", f"kd={tmp_path / 'missing'}", "--metrics", "eval_accuracy"]
    with pytest.raises(ValueError):  # called with an argv list (tests, scripts): raised
        main(argv)
    monkeypatch.setattr(sys, "argv", ["hf-distill", *argv])  # the console script: one line, status 1
    assert main() == 1
    err = capsys.readouterr().err
    assert err.startswith("hf-distill sweep-table: error: ") and "Traceback" not in err
    monkeypatch.setenv("HF_DISTILL_TRACEBACK", "1")
    with pytest.raises(ValueError):
        main()


def test_traceback_is_asked_for_by_environment_or_debug_log_level(monkeypatch):
    from hf_distill.workflow.console import wants_traceback

    monkeypatch.delenv("HF_DISTILL_TRACEBACK", raising=False)
    assert not wants_traceback(["--log_level", "info", "--alpha", "0.5"])
    assert wants_traceback(["--log_level", "debug"]) and wants_traceback(["--log_level=debug"])
    monkeypatch.setenv("HF_DISTILL_TRACEBACK", "0")
    assert not wants_traceback([])
    monkeypatch.setenv("HF_DISTILL_TRACEBACK", "1")
    assert wants_traceback([])


def test_compare_command_finds_and_tokenizes_a_text_pair_as_the_text_recipe_does(tmp_path, word_tokenizer):
    """No --text_columns: the pair columns are found as run_glue.py (and the recipes) find them, and both sides are
    tokenized as pairs by tokenize_for_distillation, the teacher with its own tokenizer."""
    from datasets import DatasetDict

    from hf_distill.text.data import TextDataArguments, tokenize_for_distillation

    vocab = tmp_path / "teacher_vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *reversed(WORDS)]) + "\n")
    teacher_tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    teacher = varied_bert(seed=1, layers=2, hidden=32)
    student = varied_bert(seed=2)
    teacher_dir = save(teacher, teacher_tokenizer, tmp_path / "teacher")
    student_dir = save(student, word_tokenizer, tmp_path / "student")
    premises = ["good movie", "awful food", "the food was ok", "not very good", "great", "bad bad movie", "fine"]
    hypotheses = ["bad", "the food was great", "ok", "not good", "awful movie", "fine food", "very very good"]
    labels = [LABELS[i % 3] for i in range(len(premises))]
    with open(tmp_path / "eval.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["premise", "hypothesis", "label"])
        writer.writerows(zip(premises, hypotheses, labels, strict=True))

    output = tmp_path / "cmp"
    main(
        ["compare", "--teacher_model_name_or_path", teacher_dir, "--student_model_name_or_path", student_dir,
         "--validation_file", str(tmp_path / "eval.csv"), "--output_dir", str(output), *FAST_FLAGS]
    )  # fmt: skip
    report = json.loads((output / "comparison.json").read_text())

    text_args = TextDataArguments(validation_file=str(tmp_path / "eval.csv"))
    raw = text_args.load()
    assert text_args.columns(raw) == ["premise", "hypothesis"]
    recipe = tokenize_for_distillation(
        DatasetDict(raw), word_tokenizer, text_columns=["premise", "hypothesis"], labels=LABELS,
        teacher_tokenizer=teacher_tokenizer,
    )["validation"]  # fmt: skip
    assert recipe["input_ids"][0] == word_tokenizer("good movie", "bad")["input_ids"]
    with torch.no_grad():
        student_logits = student(**word_tokenizer(premises, hypotheses, padding=True, return_tensors="pt")).logits
        teacher_logits = teacher(**teacher_tokenizer(premises, hypotheses, padding=True, return_tensors="pt")).logits
    expected = accuracy(teacher_logits.argmax(-1).numpy(), recipe["labels"])
    assert report["results"][0]["accuracy"] == pytest.approx(expected)
    kl = mean_kl(student_logits.numpy(), teacher_logits.numpy())
    assert report["results"][1]["mean_kl"] == pytest.approx(kl, rel=1e-4)


@pytest.mark.parametrize(
    ("words", "lowercase"), [(list(reversed(WORDS)), True), (WORDS, False)], ids=["another vocabulary", "cased"]
)
def test_compare_command_refuses_students_that_tokenize_differently(tmp_path, word_tokenizer, words, lowercase):
    """One tokenized set feeds every student: a second student whose tokenizer encodes differently (another
    vocabulary, or the same vocabulary without lowercasing) is refused before anything is measured."""
    vocab = tmp_path / "other_vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    other_tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=lowercase)
    model_dir = save(tiny_bert(seed=2), word_tokenizer, tmp_path / "student")
    other_dir = save(tiny_bert(seed=3), other_tokenizer, tmp_path / "other")
    (tmp_path / "eval.csv").write_text("text,label\nGood movie,positive\n")
    with pytest.raises(ValueError, match="use different tokenizers; compare them in separate runs"):
        main(
            ["compare", "--teacher_model_name_or_path", model_dir, "--student_model_name_or_path", model_dir,
             other_dir, "--validation_file", str(tmp_path / "eval.csv"), "--output_dir", str(tmp_path / "cmp")]
        )  # fmt: skip
    assert not (tmp_path / "cmp").exists()
