"""One rule for "the same tokenizer": a copy in another folder is the same, a different encoding is not."""

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer, BertTokenizerFast

from hf_distill.text.data import same_tokenizer, tokenize_for_distillation
from tests.conftest import LABELS

PAIRS = DatasetDict(
    validation=Dataset.from_dict(
        {"a": ["Good movie", "bad food"], "b": ["fine", "Awful"], "label": ["positive", "negative"]}
    )
)


def tokenize(tokenizer, teacher_tokenizer, columns=("a", "b")):
    return tokenize_for_distillation(
        PAIRS, tokenizer, text_columns=list(columns), labels=LABELS, teacher_tokenizer=teacher_tokenizer
    )["validation"]


def test_a_copy_of_the_tokenizer_in_another_folder_is_the_same(tmp_path, word_tokenizer):
    word_tokenizer.save_pretrained(tmp_path / "teacher")
    word_tokenizer.save_pretrained(tmp_path / "student")
    teacher = AutoTokenizer.from_pretrained(tmp_path / "teacher")
    student = AutoTokenizer.from_pretrained(tmp_path / "student")
    teacher("good movie", truncation=True, max_length=2)  # a call's truncation setting is not the tokenizer's
    assert teacher.name_or_path != student.name_or_path and same_tokenizer(teacher, student)
    tokenized = tokenize(student, teacher)
    assert not any(name.startswith("teacher_") for name in tokenized.column_names)
    assert tokenized["input_ids"][0] == word_tokenizer("Good movie", "fine")["input_ids"]


def test_a_tokenizer_that_encodes_differently_gets_its_own_columns(tmp_path, word_tokenizer):
    cased = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"), do_lower_case=False)  # the same vocabulary
    no_segments = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"), do_lower_case=True)
    no_segments.model_input_names = ["input_ids", "attention_mask"]  # as DistilBERT's, over BERT's vocabulary
    for other in (cased, no_segments):
        assert other.get_vocab() == word_tokenizer.get_vocab() and not same_tokenizer(word_tokenizer, other)
    tokenized = tokenize(word_tokenizer, cased)
    assert tokenized["teacher_input_ids"][0] == cased("Good movie", "fine")["input_ids"] != tokenized["input_ids"][0]
    tokenized = tokenize(word_tokenizer, no_segments)
    assert "teacher_input_ids" in tokenized.column_names and "teacher_token_type_ids" not in tokenized.column_names


def test_more_than_two_text_columns_are_refused(word_tokenizer):
    with pytest.raises(ValueError, match="one text column or a pair"):
        tokenize(word_tokenizer, None, columns=("a", "b", "label"))
