"""`hf-distill compare` on tiny models and tokenizers saved to disk, and a CSV of raw text."""

import csv
import importlib.util
import json

import pytest
import torch
from transformers import BertTokenizerFast

from hf_distill.cli import main
from hf_distill.metrics import accuracy
from tests.conftest import LABELS, WORDS, tiny_bert, varied_bert


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
        ["compare", "--teacher", teacher_dir, "--student", f"distilled={student_dir}", "--student", other_dir,
         "--dataset", str(tmp_path / "eval.csv"), "--text_column", "sentence", "--label_column", "sentiment",
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
        main(["compare", "--teacher", model_dir, "--student", model_dir, "--dataset", str(tmp_path / "eval.csv")])
