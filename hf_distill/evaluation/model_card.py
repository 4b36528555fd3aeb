"""Model cards for distilled students, rendered from the template in the top-level ``model_cards/`` folder.

The card is made from data (:class:`StudentRun`), which `DistillationTrainer.create_model_card` gathers: this module
does not know the trainer.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import shlex
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import (
    AutoModelForAudioClassification,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
)
from transformers.modelcard import TrainingSummary, make_markdown_table

from ..data.labels import label_names
from ..losses import get_loss
from ..teachers.loading import auto_class_for, unwrap
from ..training_args import DistillationTrainingArguments
from .compare import ComparisonReport

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).parents[1] / "model_cards" / "distilled_model_card.md"
TAGS = ["knowledge-distillation", "hf_distill"]
TASKS = {
    AutoModelForSequenceClassification: "text-classification",
    AutoModelForImageClassification: "image-classification",
    AutoModelForAudioClassification: "audio-classification",
}
# Student metrics published in `model-index`: (key in the evaluation logs, metric type, display name).
MODEL_INDEX_METRICS = [
    ("accuracy", "accuracy", "Accuracy"),
    ("macro_f1", "f1", "Macro F1"),
    ("agreement", "agreement", "Top-1 agreement with the teacher"),
]
# Metric prefixes in the logs, most telling first, and the dataset split each one names.
EVAL_SPLITS = {"test": "test", "eval": "validation"}
_SKIPPED_EVAL_KEYS = ("runtime", "samples_per_second", "steps_per_second", "model_preparation_time")
_SECRET_ARG = re.compile(r"^--?[\w-]*token(=.*)?$")
# The card's section that `hf-distill compare` rewrites with its measurement of the student.
COMPARISON_START, COMPARISON_END = "<!-- teacher-vs-student -->", "<!-- /teacher-vs-student -->"


@dataclass
class StudentRun:
    """What a distillation model card says, as data.

    ``summary`` is transformers' `TrainingSummary` of the run (names, datasets, hyperparameters, results table);
    ``repo`` is where users load the student from (the Hub id when pushed, else the output folder); ``method`` holds
    settings of the method beyond `DistillationTrainingArguments` (cached views, augmentation, schedules, ...), each
    shown in the card and its ``distillation`` metadata (a ``teacher_layers`` entry, the teacher layers copied into
    the student, is also named in the card's first paragraph); ``method_description`` is a paragraph on the method.
    """

    summary: TrainingSummary
    student: torch.nn.Module
    args: DistillationTrainingArguments
    teacher: str
    teacher_parameters: int | None
    teacher_logits_source: str
    log_history: list[dict[str, Any]]
    repo: str
    method: dict[str, Any] = field(default_factory=dict)
    method_description: str | None = None


def distillation_model_card(
    run: StudentRun, *, comparison: ComparisonReport | str | None = None, reproduce_command: str | None = None
) -> ModelCard:
    """The model card of a distilled student.

    YAML metadata: ``base_model`` (the student's starting point, when it is a Hub id), ``teacher_model`` (when a Hub
    id), a ``distillation`` mapping (loss, alpha, temperature, the other distillation arguments and ``run.method``),
    ``datasets`` (Hub ids), tags with ``knowledge-distillation``, and ``model-index`` results (accuracy, macro-F1,
    agreement) of the test split when it was scored, else of the validation split, naming the split. Body: a
    teacher-vs-student table (from ``comparison``, a :class:`~hf_distill.evaluation.compare.ComparisonReport` or its JSON, else
    from the logged metrics), the method, hyperparameters, usage that runs as printed, the command to reproduce
    (default: this process's command line with ``*token`` arguments removed), limitations and citations. PEFT
    students get ``library_name: peft`` and adapter usage.
    """
    summary, args, student = run.summary, run.args, run.student
    peft_type = _peft_type(student)
    task = _first(summary.tasks) or TASKS[auto_class_for(student)]
    split, metrics = _latest_metrics(run.log_history)
    if isinstance(comparison, str):
        comparison = ComparisonReport.from_json(comparison)

    ce_only = trained_with_ce_alone(args)
    method = {"alpha": args.alpha} if ce_only else distillation_settings(args)  # CE alone: no loss settings apply
    settings = {**method, **{k: v for k, v in run.method.items() if v is not None}}
    teacher_id = _hub_id(run.teacher)
    tag_list = _unique([*(_as_list(summary.tags)), *TAGS, *(["peft", peft_type.lower()] if peft_type else [])])
    card_data = ModelCardData(
        model_name=summary.model_name,
        language=summary.language,
        license=summary.license,
        library_name="peft" if peft_type else "transformers",
        base_model=_hub_id(summary.finetuned_from),
        datasets=[d for d in _as_list(summary.dataset_tags) if _hub_id(d)] or None,
        tags=tag_list,
        pipeline_tag=task,
        eval_results=_eval_results(metrics, split, task, summary) or None,
        teacher_model=teacher_id,
        distillation={**({"teacher_model": teacher_id} if teacher_id else {}), **settings},
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=summary.model_name,
        is_peft=bool(peft_type),
        peft_type=peft_type,
        base_model=_hub_link(summary.finetuned_from) if summary.finetuned_from else None,
        teacher_link=_hub_link(run.teacher),
        dataset_names=", ".join(str(d) for d in _as_list(summary.dataset)),
        metrics_split=split,
        teacher_student_table=_teacher_student_table(run, metrics, comparison),
        loss_name=args.distillation_loss,
        loss_description=(get_loss(args.distillation_loss).__doc__ or "").strip().splitlines()[0],
        method_description=run.method_description,
        distillation_settings={"teacher": run.teacher, **settings},
        ce_only=ce_only,
        copied_layers=_as_text(run.method.get("teacher_layers")),
        teacher_logits_source=run.teacher_logits_source,
        hyperparameters=summary.hyperparameters,
        training_results=make_markdown_table(summary.eval_lines) if summary.eval_lines else "",
        usage=_usage(run.repo, student, task, summary.finetuned_from),
        reproduce_command=reproduce_command or command_line(),
        framework_versions=_framework_versions(peft_type),
    )


def distillation_settings(args: DistillationTrainingArguments) -> dict[str, Any]:
    """The settings that shape the student: the method
    (:meth:`~hf_distill.DistillationTrainingArguments.method_summary`: loss, hyperparameters, corrections,
    schedules, teachers, intermediate layers), without unset ones. Housekeeping (output folders, column names,
    compilation, ...) stays out; the training hyperparameters have their own list in the card."""
    return {name: value for name, value in args.method_summary().items() if value is not None}


def trained_with_ce_alone(args: DistillationTrainingArguments) -> bool:
    """Whether the teacher took no part in the loss: ``alpha`` 1 throughout and no intermediate-layer loss (the
    CE-only baseline of a distillation study)."""
    return (
        args.alpha == 1.0
        and args.alpha_schedule == "constant"
        and args.hidden_state_loss is None
        and args.attention_loss is None
    )


def record_comparison(card_path: str | os.PathLike, report: ComparisonReport, student: str) -> bool:
    """Put ``report``'s teacher row and ``student``'s rows (every backend) into the card at ``card_path``, in place
    of its teacher-vs-student section; ``False`` (card untouched) when the file has no such section."""
    path = Path(card_path)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if COMPARISON_START not in text or COMPARISON_END not in text:
        return False
    rows = [r for r in report.students if r.name == student or r.name.startswith(f"{student} (")]
    if not rows:
        raise ValueError(f"The comparison has no row named {student!r}: {[r.name for r in report.students]}.")
    table = ComparisonReport([report.teacher, *rows], report.settings).to_markdown()
    section = f"Measured with `hf-distill compare` (the student is the `{student}` row).\n\n{table}"
    head, rest = text.split(COMPARISON_START, 1)
    tail = rest.split(COMPARISON_END, 1)[1]
    path.write_text(f"{head}{COMPARISON_START}\n{section}\n{COMPARISON_END}{tail}", encoding="utf-8")
    return True


def _latest_metrics(log_history: list[dict[str, Any]]) -> tuple[str | None, dict[str, float]]:
    """The split and metrics (prefix removed) of the most telling evaluation: the test split's if it was scored,
    else the latest validation."""
    for prefix, split in EVAL_SPLITS.items():
        for log in reversed(log_history):
            if f"{prefix}_loss" in log or f"{prefix}_accuracy" in log:
                return split, {
                    k[len(prefix) + 1 :]: v
                    for k, v in log.items()
                    if k.startswith(prefix + "_")
                    and not k.endswith(_SKIPPED_EVAL_KEYS)
                    and isinstance(v, (int, float))
                }
    return None, {}


def _eval_results(
    metrics: dict[str, float], split: str | None, task: str | None, summary: TrainingSummary
) -> list[EvalResult]:
    dataset_type = next((d for d in _as_list(summary.dataset_tags) if _hub_id(d)), None)
    if task is None or dataset_type is None:
        return []
    return [
        EvalResult(
            task_type=task,
            dataset_type=dataset_type,
            dataset_name=_first(summary.dataset) or dataset_type,
            dataset_config=_first(summary.dataset_args),
            dataset_split=split,
            metric_type=metric_type,
            metric_name=display_name,
            metric_value=float(metrics[key]),
        )
        for key, metric_type, display_name in MODEL_INDEX_METRICS
        if key in metrics
    ]


def _teacher_student_table(run: StudentRun, metrics: dict[str, float], comparison: ComparisonReport | None) -> str:
    if comparison is not None:
        return comparison.to_markdown()
    rows = [
        (name.replace("_", " "), f"{metrics['teacher_' + name]:.4f}", f"{value:.4f}")
        for name, value in metrics.items()
        if "teacher_" + name in metrics
    ]
    if "agreement" in metrics:
        rows.append(("top-1 agreement with the teacher", "1", f"{metrics['agreement']:.4f}"))
    student_params = sum(p.numel() for p in unwrap(run.student).parameters())
    teacher_params = run.teacher_parameters
    rows.append(("parameters", f"{teacher_params:,}" if teacher_params else "—", f"{student_params:,}"))
    if teacher_params:
        rows.append(("compression (teacher / student parameters)", "1", f"{teacher_params / student_params:.2f}x"))
    lines = ["| | Teacher | Student |", "|:---|---:|---:|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    note = (
        "\nQuality from the last evaluation. For latency, throughput, speed-up, size on disk, KL and calibration, run "
        "`hf-distill compare` on this folder (it writes its measurement here), or pass its report as `comparison=` to "
        "`create_model_card` / `push_to_hub`."
    )
    return "\n".join(lines) + "\n" + note


def _usage(repo: str, student: Any, task: str, base_model: str | None) -> str:
    if _peft_type(student) is None:
        return (
            f'from transformers import pipeline\n\nclassifier = pipeline("{task}", model="{repo}")\nclassifier("...")'
        )
    auto_class = auto_class_for(student).__name__
    id2label = dict(enumerate(label_names(unwrap(student).config)))
    return (
        f"from peft import PeftModel\nfrom transformers import {auto_class}\n\n"
        f'base = {auto_class}.from_pretrained("{base_model or "BASE_MODEL"}", id2label={id2label})\n'
        f'model = PeftModel.from_pretrained(base, "{repo}")\n'
        "model = model.merge_and_unload()  # optional: fold the adapter into the weights for speed"
    )


def command_line(argv: list[str] | None = None, ignored: tuple[str, ...] = ()) -> str:
    """``argv`` (default: this process's command line) as a command to reproduce the run elsewhere: ``--*token``
    arguments and the ``ignored`` flags (names without dashes, flags the run did not use) are removed with their
    values, and paths are made portable (:func:`portable_path`)."""
    kept, dropping = [], False
    for arg in sys.argv if argv is None else argv:
        if arg.startswith("-"):
            name = arg.lstrip("-").split("=", 1)[0].replace("-", "_")
            if name in ignored or _SECRET_ARG.match(arg):
                dropping = "=" not in arg  # its values follow it
                continue
            dropping = False
        elif dropping:
            continue
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            kept.append(f"{flag}={portable_path(value)}")
        else:
            kept.append(portable_path(arg))
    return shlex.join(["python", *kept])


def portable_path(value: str) -> str:
    """An absolute path as it reads on another machine: an installed script by its name, a path inside the working
    directory relative to it, ``<site-packages>/...`` inside an installed package, a path inside the hf_distill
    checkout relative to its root (``recipes/...``), ``~/...`` inside the home folder; anything else unchanged."""
    if not os.path.isabs(value):
        return value
    path = os.path.normpath(value)
    site_packages = {os.path.normpath(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    anchors = [(sysconfig.get_paths()["scripts"], ""), (os.getcwd(), "")]  # an installed script: its name
    anchors += [(root, "<site-packages>") for root in site_packages]
    anchors.append((str(Path(__file__).resolve().parents[2]), ""))  # a source checkout: its recipes/, outputs/, ...
    anchors.append((os.path.expanduser("~"), "~"))
    for root, prefix in anchors:
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            relative = os.path.relpath(path, root)
            return relative if not prefix else f"{prefix}/{relative}" if relative != "." else prefix
    return value


def _framework_versions(peft_type: str | None) -> dict[str, str]:
    from .. import __version__

    versions = {"hf_distill": __version__}
    packages = ["transformers", "torch", "datasets", "tokenizers", *(["peft"] if peft_type else [])]
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _peft_type(model: Any) -> str | None:
    config = getattr(model, "peft_config", None)
    if not config:
        return None
    return str(getattr(next(iter(config.values())).peft_type, "value", "PEFT"))


def _hub_id(name: str | None) -> str | None:
    """``name`` when it can be a Hub model id (not a local folder), else ``None``: the Hub rejects paths."""
    if not name or Path(name).exists() or re.fullmatch(r"([\w.-]+/)?[\w.-]+", name) is None:
        return None
    return name


def _hub_link(name: str) -> str:
    return f"[{name}](https://huggingface.co/{name})" if _hub_id(name) and "/" in name else f"`{name}`"


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [v for v in value if v is not None]


def _as_text(value: Any) -> str | None:
    """A list as ``0, 3, 5``; other values as they are."""
    if value is None:
        return None
    return ", ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _first(value: str | list[str] | None) -> str | None:
    values = _as_list(value)
    return values[0] if values else None


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))
