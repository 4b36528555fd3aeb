"""The ``hf-distill`` console command. ``hf-distill compare`` compares a teacher with its students."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import datasets
from transformers import AutoTokenizer, PreTrainedModel

from . import sweep
from .compare import compare_models
from .data_collator import DataCollatorForDistillation
from .teacher import auto_class_for, load_teacher, unwrap
from .text.data import FILE_BUILDERS, TWEET_SENTIMENT, load_text_dataset

PREFERRED_SPLITS = ("validation", "test")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-distill", description="Knowledge distillation tools for classifiers.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_compare_parser(commands)
    sweep.add_parser(commands)
    args = parser.parse_args(argv)
    return args.run(args)


def _add_compare_parser(commands) -> None:
    parser = commands.add_parser(
        "compare",
        help="Teacher vs. students: accuracy, macro-F1, agreement, KL, ECE, size, latency, throughput.",
        description="Compare a teacher with one or more students on an evaluation set and write JSON, markdown and "
        "a PNG plot of accuracy against latency. Text columns are tokenized with each side's tokenizer.",
    )
    parser.add_argument("--teacher", required=True, help="Teacher model: local path or Hub id.")
    parser.add_argument(
        "--student",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="A student (path, Hub id or PEFT adapter folder), optionally named; repeat for several.",
    )
    parser.add_argument(
        "--dataset",
        required=True,
        help=f"A folder written by save_to_disk, a .csv/.tsv/.json/.jsonl/.parquet file, a Hub dataset id, or "
        f"{TWEET_SENTIMENT!r} (the built-in offline tweets).",
    )
    parser.add_argument("--dataset_config", default=None, help="Hub dataset configuration name.")
    parser.add_argument("--split", default=None, help="Split to use (default: validation, else test).")
    parser.add_argument("--text_column", default="text", help="Text to tokenize when the set is not tokenized.")
    parser.add_argument("--text_pair_column", default=None, help="Second text of sentence-pair tasks.")
    parser.add_argument("--label_column", default="label", help="Labels: class ids or label names.")
    parser.add_argument("--max_length", type=int, default=128, help="Truncation length when tokenizing.")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Use only the first N examples.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available).")
    parser.add_argument("--num_threads", type=int, default=None, help="torch.set_num_threads for the comparison.")
    parser.add_argument("--batch_size", type=int, default=32, help="Batch size of the quality pass.")
    parser.add_argument("--latency_runs", type=int, default=50)
    parser.add_argument("--throughput_batch_size", type=int, default=32)
    parser.add_argument("--throughput_runs", type=int, default=10)
    parser.add_argument("--warmup_runs", type=int, default=5)
    parser.add_argument("--output_dir", default="comparison", help="Where comparison.{json,md,png} are written.")
    parser.add_argument("--no_plot", action="store_true", help="Skip the PNG (no matplotlib needed).")
    parser.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    teacher = load_teacher(args.teacher)
    students = dict(_load_student(spec, teacher) for spec in args.student)
    first = next(iter(students.values()))
    dataset = _load_eval_set(args)
    dataset = _encode_labels(dataset, args.label_column, unwrap(first).config.label2id)
    collator = DataCollatorForDistillation()
    if args.text_column in dataset.column_names and not {"input_ids", "pixel_values"} & set(dataset.column_names):
        dataset, collator = _tokenize(dataset, args, teacher_path=args.teacher, student_paths=_paths(args.student))
    report = compare_models(
        teacher,
        students,
        dataset,
        data_collator=collator,
        batch_size=args.batch_size,
        device=args.device,
        num_threads=args.num_threads,
        latency_runs=args.latency_runs,
        throughput_batch_size=args.throughput_batch_size,
        throughput_runs=args.throughput_runs,
        warmup_runs=args.warmup_runs,
    )
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    report.to_json(output / "comparison.json")
    markdown = report.to_markdown()
    (output / "comparison.md").write_text(markdown, encoding="utf-8")
    written = ["comparison.json", "comparison.md"]
    if not args.no_plot:
        report.plot(output / "comparison.png")
        written.append("comparison.png")
    print(markdown)
    print(f"Wrote {', '.join(str(output / name) for name in written)}")
    return 0


def _split_spec(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep:
        path = spec
        name = Path(spec.rstrip("/")).name or spec
    return name, path


def _paths(specs: list[str]) -> list[str]:
    return [_split_spec(spec)[1] for spec in specs]


def _load_student(spec: str, teacher: PreTrainedModel) -> tuple[str, PreTrainedModel]:
    """A student from a path or Hub id; a PEFT adapter folder is put on its base model, built with the teacher's
    labels (the base checkpoint may have no classification head yet)."""
    name, path = _split_spec(spec)
    if not os.path.isfile(os.path.join(path, "adapter_config.json")):
        return name, load_teacher(path)
    from peft import PeftConfig, PeftModel

    config = unwrap(teacher).config
    base = auto_class_for(teacher).from_pretrained(
        PeftConfig.from_pretrained(path).base_model_name_or_path,
        id2label=config.id2label,
        label2id=config.label2id,
        ignore_mismatched_sizes=True,  # the head comes from the adapter (modules_to_save)
    )
    return name, PeftModel.from_pretrained(base, path)


def _load_eval_set(args: argparse.Namespace) -> datasets.Dataset:
    path = Path(args.dataset)
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
    elif path.suffix in FILE_BUILDERS:
        loaded = load_text_dataset(train_file=str(path))["train"]
    else:
        loaded = load_text_dataset(args.dataset, args.dataset_config)
    if isinstance(loaded, datasets.DatasetDict):
        split = args.split or next((s for s in PREFERRED_SPLITS if s in loaded), None)
        if split not in loaded:
            raise ValueError(f"Choose a split with --split: {args.dataset} has {list(loaded)}.")
        loaded = loaded[split]
    if args.max_eval_samples is not None:
        loaded = loaded.select(range(min(args.max_eval_samples, len(loaded))))
    return loaded


def _encode_labels(dataset: datasets.Dataset, column: str, label2id: dict[str, int]) -> datasets.Dataset:
    """Labels named ``label``, as class ids of the first student (label names are looked up in its label2id)."""
    if column not in dataset.column_names:
        return dataset
    if column != "label":
        dataset = dataset.rename_column(column, "label")
    if dataset.features["label"].dtype in ("string", "large_string"):
        values = dataset["label"]
        if None in values:
            raise ValueError(f"{values.count(None)} rows have no {column!r}; drop them from the evaluation set.")
        unknown = sorted(set(values) - set(label2id))
        if unknown:
            raise ValueError(f"Labels {unknown} are not among the student's labels {list(label2id)}.")
        names = sorted(label2id, key=label2id.get)
        dataset = dataset.cast_column("label", datasets.ClassLabel(names=names))
    return dataset


def _tokenize(dataset: datasets.Dataset, args: argparse.Namespace, teacher_path: str, student_paths: list[str]):
    """Tokenize for the students (one tokenizer, checked) and, when its vocabulary differs, for the teacher."""
    tokenizers = [AutoTokenizer.from_pretrained(path) for path in student_paths]
    student_tokenizer = tokenizers[0]
    for path, tokenizer in zip(student_paths[1:], tokenizers[1:], strict=True):
        if tokenizer.get_vocab() != student_tokenizer.get_vocab():
            raise ValueError(
                f"Students {student_paths[0]} and {path} use different tokenizers; compare them in separate runs."
            )
    teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    separate = teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab()

    def encode(batch):
        pair = batch[args.text_pair_column] if args.text_pair_column else None
        encoded = dict(student_tokenizer(batch[args.text_column], pair, truncation=True, max_length=args.max_length))
        if separate:
            for key, value in teacher_tokenizer(
                batch[args.text_column], pair, truncation=True, max_length=args.max_length
            ).items():
                encoded["teacher_" + key] = value
        return encoded

    dataset = dataset.map(encode, batched=True, remove_columns=[c for c in dataset.column_names if c != "label"])
    collator = DataCollatorForDistillation(
        tokenizer=student_tokenizer, teacher_tokenizer=teacher_tokenizer if separate else None
    )
    return dataset, collator


if __name__ == "__main__":
    sys.exit(main())
