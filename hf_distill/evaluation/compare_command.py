"""``hf-distill compare``: a teacher against its students (see :func:`hf_distill.evaluation.compare.compare_models`).

Its arguments are `HfArgumentParser` dataclasses with the recipes' names (``--teacher_model_name_or_path``,
``--dataset_name``, ``--max_eval_samples``, ``--max_seq_length``, ``--output_dir``, ...); like the recipes it also
reads one JSON or YAML file of them.
"""

from __future__ import annotations

import os
from dataclasses import Field, dataclass, field
from pathlib import Path

import datasets
import transformers
from transformers import AutoTokenizer, HfArgumentParser, PreTrainedModel, PreTrainedTokenizerBase

from ..data.data_collator import DataCollatorForDistillation
from ..data.labels import count_labeled, encode_label_column, label_names
from ..teachers.loading import auto_class_for, load_teacher, unwrap
from ..text.data import FILE_BUILDERS, TWEET_SENTIMENT, TextDataArguments, same_tokenizer, tokenize_for_distillation
from ..workflow.arguments import RUN_CLASSIFICATION_ALIASES, RecipeArgumentParser, parse_arguments
from .compare import BACKENDS, compare_models
from .model_card import record_comparison
from .onnx_export import QUANTIZATION_MODES

PREFERRED_SPLITS = ("validation", "test")
IMAGE_DATASETS = ("fashion_mnist", "sklearn_digits", "imagefolder")


@dataclass
class CompareModelArguments:
    """The models to compare."""

    teacher_model_name_or_path: str = field(metadata={"help": "The teacher: a local path or Hub id."})
    student_model_name_or_path: list[str] = field(
        metadata={
            "help": "One or more students, each PATH or NAME=PATH (a path, Hub id or PEFT adapter folder).",
            "nargs": "+",
        }
    )


def _text_recipe_field(name: str) -> Field:
    """The text recipes' field ``name`` (:class:`~hf_distill.text.data.TextDataArguments`): same default and help."""
    recipe = TextDataArguments.__dataclass_fields__[name]
    return field(default=recipe.default, metadata=recipe.metadata)


@dataclass
class CompareDataArguments:
    """The evaluation set, loaded as the recipes load it; the text fields are the text recipes' own."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": f"A Hub dataset, a folder written by save_to_disk, 'imagefolder' (with --data_dir), or offline: "
            f"{TWEET_SENTIMENT!r} (text), 'fashion_mnist', 'sklearn_digits' (images)."
        },
    )
    dataset_config_name: str | None = _text_recipe_field("dataset_config_name")
    data_dir: str | None = field(default=None, metadata={"help": "data_dir passed to datasets.load_dataset."})
    validation_file: str | None = field(
        default=None, metadata={"help": f"A text file to evaluate on ({', '.join(sorted(FILE_BUILDERS))})."}
    )
    validation_dir: str | None = field(default=None, metadata={"help": "A folder of images, one folder a class."})
    eval_split: str | None = field(default=None, metadata={"help": "Split to use (default: validation, else test)."})
    text_columns: str | None = _text_recipe_field("text_columns")
    label_column: str = field(default="label", metadata={"help": "Labels: class ids or label names."})
    image_column_name: str = field(default="image", metadata={"help": "The column holding the images."})
    max_seq_length: int = _text_recipe_field("max_seq_length")
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on N examples (text: the first N; images: a seeded random N)."}
    )
    train_val_split: float = field(
        default=0.15, metadata={"help": "Images: share of train held out when there is no validation split."}
    )
    seed: int = field(default=42, metadata={"help": "The recipes' --seed: it fixes the built-in splits."})
    split_seed: int | None = _text_recipe_field("split_seed")

    def text_arguments(self) -> TextDataArguments:
        """The text recipes' data arguments for this evaluation set (it loads and names the text columns)."""
        if self.dataset_name and self.validation_file:
            raise ValueError("Give --dataset_name or --validation_file, not both.")
        if not (self.dataset_name or self.validation_file):
            raise ValueError(
                f"Give the evaluation set: --dataset_name (a Hub id, a save_to_disk folder or {TWEET_SENTIMENT!r}) "
                "or --validation_file."
            )
        return TextDataArguments(
            dataset_name=self.dataset_name,
            dataset_config_name=self.dataset_config_name,
            validation_file=self.validation_file,
            text_columns=self.text_columns,
            label_column=self.label_column,
            max_seq_length=self.max_seq_length,
            split_seed=self.split_seed,
        )


@dataclass
class CompareArguments:
    """How to measure, and where to write."""

    output_dir: str = field(default="comparison", metadata={"help": "Where comparison.{json,md,png} are written."})
    backend: str = field(
        default="pytorch",
        metadata={"help": f"Comma-separated backends for the students: {', '.join(BACKENDS)}."},
    )
    quantize: str | None = field(
        default=None,
        metadata={"help": f"With onnxruntime: {', '.join(QUANTIZATION_MODES)} adds an int8 row per student."},
    )
    onnx_dir: str | None = field(default=None, metadata={"help": "Where ONNX exports go (default: output_dir/onnx)."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 (default: cuda when available)."})
    num_threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads for the comparison."})
    batch_size: int = field(default=32, metadata={"help": "Batch size of the quality pass."})
    latency_runs: int = field(default=50, metadata={"help": "Single-example calls timed per model."})
    throughput_batch_size: int = field(default=32, metadata={"help": "Batch size of the throughput runs."})
    throughput_runs: int = field(default=10, metadata={"help": "Throughput calls timed per model."})
    warmup_runs: int = field(default=5, metadata={"help": "Untimed calls before timing."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Resamples of the accuracy intervals."})
    no_plot: bool = field(default=False, metadata={"help": "Skip the PNG (no matplotlib needed)."})


COMPARE_DESCRIPTION = """Teacher vs. students: accuracy (with bootstrap intervals), macro-F1, agreement, KL, ECE, size,
latency and throughput, in PyTorch and ONNX Runtime; writes JSON, markdown and a PNG plot, and adds each local
student's rows to its model card (README.md).

    hf-distill compare --teacher_model_name_or_path outputs/demo/teacher \\
        --student_model_name_or_path distilled=outputs/demo/seed1/student ce_only=outputs/demo/seed1/student_ce \\
        --dataset_name tweet_sentiment --eval_split test --output_dir outputs/demo/comparison
"""


def compare_parser() -> HfArgumentParser:
    return RecipeArgumentParser(
        (CompareModelArguments, CompareDataArguments, CompareArguments),
        prog="hf-distill compare",
        usage="%(prog)s --teacher_model_name_or_path T --student_model_name_or_path S [NAME=S ...] [--flag value ...]",
        description=COMPARE_DESCRIPTION,
        groups={CompareModelArguments: "models", CompareDataArguments: "data", CompareArguments: "measurement"},
        aliases={k: v for k, v in RUN_CLASSIFICATION_ALIASES.items() if k != "student_model_name_or_path"},
    )


def compare_command(argv: list[str]) -> int:
    models, data, run = parse_arguments(compare_parser(), argv)
    transformers.utils.logging.disable_progress_bar()  # weight loading / saving bars; compare shows its own
    datasets.disable_progress_bars()
    backends = [name.strip() for name in run.backend.split(",") if name.strip()]
    teacher = load_teacher(models.teacher_model_name_or_path)
    students = dict(_load_student(spec, teacher) for spec in models.student_model_name_or_path)
    student_paths = [_split_spec(spec)[1] for spec in models.student_model_name_or_path]
    labels = label_names(unwrap(next(iter(students.values()))).config)
    if unwrap(teacher).main_input_name == "pixel_values":
        dataset = _image_eval_set(data, labels, teacher, students, models.teacher_model_name_or_path, student_paths)
        collator = DataCollatorForDistillation()
    else:
        dataset, collator = _text_eval_set(data, labels, models.teacher_model_name_or_path, student_paths)
    output = Path(run.output_dir)
    report = compare_models(
        teacher,
        students,
        dataset,
        data_collator=collator,
        batch_size=run.batch_size,
        device=run.device,
        num_threads=run.num_threads,
        latency_runs=run.latency_runs,
        throughput_batch_size=run.throughput_batch_size,
        throughput_runs=run.throughput_runs,
        warmup_runs=run.warmup_runs,
        backends=backends,
        quantize=run.quantize,
        onnx_dir=run.onnx_dir or output / "onnx",
        bootstrap_resamples=run.bootstrap_resamples,
    )
    report.settings["dataset"] = _dataset_label(data)  # named in the plot's title
    output.mkdir(parents=True, exist_ok=True)
    report.to_json(output / "comparison.json")
    markdown = report.to_markdown()
    (output / "comparison.md").write_text(markdown, encoding="utf-8")
    written = [output / "comparison.json", output / "comparison.md"]
    if not run.no_plot:
        written.append(report.plot(output / "comparison.png"))
    for spec in models.student_model_name_or_path:  # a local student's model card gets its own rows
        name, path = _split_spec(spec)
        if record_comparison(Path(path) / "README.md", report, name):
            written.append(Path(path) / "README.md")
    print(markdown)
    print(f"Wrote {', '.join(str(path) for path in written)}")
    return 0


def _dataset_label(data: CompareDataArguments) -> str | None:
    """``tweet_sentiment, test split``: the evaluation set as the plot names it (a local path by its last part)."""
    source = data.dataset_name or data.validation_file or data.validation_dir
    if source is None:
        return None
    name = Path(source.rstrip("/")).name if Path(source).exists() else source
    return f"{name}, {data.eval_split} split" if data.eval_split else name


def _split_spec(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep:
        path = spec
        name = Path(spec.rstrip("/")).name or spec
    return name, path


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


def _pick_split(loaded: datasets.Dataset | datasets.DatasetDict, data: CompareDataArguments, what: str):
    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    split = data.eval_split or next((s for s in PREFERRED_SPLITS if s in loaded), None)
    if split not in loaded:
        raise ValueError(f"Choose a split with --eval_split: {what} has {list(loaded)}.")
    return loaded[split]


def _text_eval_set(
    data: CompareDataArguments, labels: list[str], teacher_path: str, student_paths: list[str]
) -> tuple[datasets.Dataset, DataCollatorForDistillation]:
    """The evaluation texts as the text recipes load and tokenize them (:class:`~hf_distill.text.data.TextDataArguments`,
    :func:`~hf_distill.text.data.tokenize_for_distillation`): for the students' shared tokenizer and, when the
    teacher's differs, into ``teacher_`` columns. A ``save_to_disk`` folder may hold the set already tokenized."""
    text_args = data.text_arguments()
    if data.dataset_name and Path(data.dataset_name).is_dir():
        loaded = datasets.load_from_disk(data.dataset_name)
    else:
        loaded = text_args.load(seed=data.seed)
    dataset = _pick_split(loaded, data, data.dataset_name or data.validation_file)
    if data.max_eval_samples is not None:
        dataset = dataset.select(range(min(data.max_eval_samples, len(dataset))))
    if {"input_ids", "pixel_values"} & set(dataset.column_names):  # tokenized already
        return _encode_labels(dataset, data.label_column, labels), DataCollatorForDistillation()
    _refuse_unlabeled(dataset, data.label_column)
    tokenizer = _students_tokenizer(student_paths)
    teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    evaluation = datasets.DatasetDict(evaluation=dataset)
    tokenized = tokenize_for_distillation(
        evaluation,
        tokenizer,
        text_columns=text_args.columns(evaluation),
        labels=_label_order(dataset, data.label_column, labels),
        label_column=data.label_column,
        teacher_tokenizer=teacher_tokenizer,
        max_length=data.max_seq_length,
    )["evaluation"]
    return tokenized, DataCollatorForDistillation(tokenizer=tokenizer, teacher_tokenizer=teacher_tokenizer)


def _students_tokenizer(student_paths: list[str]) -> PreTrainedTokenizerBase:
    """The students' tokenizer: one tokenized set feeds them all, so they must share it
    (:func:`~hf_distill.text.data.same_tokenizer`)."""
    tokenizers = [AutoTokenizer.from_pretrained(path) for path in student_paths]
    for path, tokenizer in zip(student_paths[1:], tokenizers[1:], strict=True):
        if not same_tokenizer(tokenizers[0], tokenizer):
            raise ValueError(
                f"Students {student_paths[0]} and {path} use different tokenizers; compare them in separate runs."
            )
    return tokenizers[0]


def _image_eval_set(data: CompareDataArguments, labels: list[str], teacher, students, teacher_path, student_paths):
    """The evaluation images as the image recipe splits and subsamples them, turned into ``pixel_values`` by the
    students' image processor and, when the teacher's differs, ``teacher_pixel_values`` by the teacher's."""
    from ..vision import DistillationImageTransform, ImageDataArguments, load_image_processor, pixel_format_for
    from ..vision.recipe import image_shape, prepare_image_splits

    if data.dataset_name and Path(data.dataset_name).is_dir():
        dataset = _pick_split(datasets.load_from_disk(data.dataset_name), data, data.dataset_name)
        if data.image_column_name != "image":
            dataset = dataset.rename_column(data.image_column_name, "image")
        if data.max_eval_samples is not None and data.max_eval_samples < len(dataset):
            seed = data.seed if data.split_seed is None else data.split_seed  # as prepare_image_splits
            dataset = dataset.shuffle(seed=seed).select(range(data.max_eval_samples))
    else:
        image_args = ImageDataArguments(
            dataset_name=data.dataset_name,
            dataset_config_name=data.dataset_config_name,
            data_dir=data.data_dir,
            validation_dir=data.validation_dir,
            image_column_name=data.image_column_name,
            label_column_name=data.label_column,
            train_val_split=data.train_val_split,
            max_eval_samples=data.max_eval_samples,
            split_seed=data.split_seed,
        )
        splits, _ = prepare_image_splits(image_args, data.seed)
        dataset = _pick_split(splits, data, data.dataset_name or data.validation_dir)
    dataset = _encode_labels(dataset, "label", labels)
    height = image_shape(dataset)[0]
    formats = [
        pixel_format_for(unwrap(model).config, load_image_processor(path), default_size=height)
        for model, path in zip(students.values(), student_paths, strict=True)
    ]
    if any(f != formats[0] for f in formats[1:]):
        raise ValueError("The students' image processors differ; compare them in separate runs.")
    teacher_format = pixel_format_for(unwrap(teacher).config, load_image_processor(teacher_path), default_size=height)
    transform = DistillationImageTransform(
        student=formats[0], teacher=None if teacher_format == formats[0] else teacher_format, label_column="label"
    )
    return dataset.map(transform, batched=True, remove_columns=dataset.column_names, desc="Preparing images")


def _encode_labels(dataset: datasets.Dataset, column: str, labels: list[str]) -> datasets.Dataset:
    """``column`` as class ids named ``label`` (:func:`~hf_distill.data.labels.encode_label_column`); an evaluation
    set must be labelled throughout."""
    if column not in dataset.column_names:
        return dataset
    _refuse_unlabeled(dataset, column)
    return encode_label_column(dataset, column, _label_order(dataset, column, labels))


def _refuse_unlabeled(dataset: datasets.Dataset, column: str) -> None:
    missing = count_labeled(dataset, column)[1] if column in dataset.column_names else 0
    if missing:
        raise ValueError(f"{missing} rows have no {column!r}; drop them from the evaluation set.")


def _label_order(dataset: datasets.Dataset, column: str, labels: list[str]) -> list[str]:
    """The label names that encode ``column`` (:func:`~hf_distill.data.labels.label_ids`): the first student's
    ``labels``, except that plain integer labels are the student's class ids themselves."""
    feature = dataset.features[column] if column in dataset.column_names else None
    if isinstance(feature, datasets.Value) and feature.dtype.startswith("int"):
        return [str(i) for i in range(len(labels))]
    return labels
