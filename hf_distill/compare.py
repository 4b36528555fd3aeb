"""Teacher-vs-student comparison: quality, agreement, calibration, size and speed of distilled students."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedModel
from transformers.utils import logging

from .data_collator import DataCollatorForDistillation
from .labels import label_names, teacher_to_student_permutation
from .metrics import classification_metrics, expected_calibration_error, teacher_student_metrics
from .teacher import forward_input_names, load_teacher, teacher_inputs, unwrap

logger = logging.get_logger(__name__)

LABEL_COLUMNS = ("labels", "label")


@dataclass
class ModelResult:
    """One row of a :class:`ComparisonReport`. Ratios are the teacher's value over this model's (teacher = 1)."""

    name: str
    role: str
    num_parameters: int
    size_bytes: int
    latency_ms_median: float
    latency_ms_p95: float
    throughput: float
    speedup: float
    throughput_speedup: float
    compression: float
    size_compression: float
    accuracy: float | None = None
    macro_f1: float | None = None
    ece: float | None = None
    agreement: float | None = None
    mean_kl: float | None = None


@dataclass
class ComparisonReport:
    """What :func:`compare_models` measured: one :class:`ModelResult` per model (teacher first) and the settings."""

    results: list[ModelResult]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def teacher(self) -> ModelResult:
        return self.results[0]

    @property
    def students(self) -> list[ModelResult]:
        return self.results[1:]

    def to_dict(self) -> dict[str, Any]:
        return {"results": [dataclasses.asdict(r) for r in self.results], "settings": self.settings}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as JSON; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike) -> ComparisonReport:
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            text = Path(path_or_text).read_text(encoding="utf-8")
        data = json.loads(text)
        return cls([ModelResult(**row) for row in data["results"]], data.get("settings", {}))

    def to_markdown(self) -> str:
        """A markdown table (one row per model) and a line saying how speed was measured."""
        s = self.settings
        header = [
            "Model",
            "Params",
            "Size (MB)",
            "Accuracy",
            "Macro-F1",
            "Agreement",
            "KL to teacher",
            "ECE",
            "Latency b1 median (ms)",
            "Latency b1 p95 (ms)",
            f"Throughput b{s.get('throughput_batch_size', '?')} (ex/s)",
            "Speed-up",
            "Compression",
        ]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
        for r in self.results:
            cells = [
                r.name if r.role == "student" or r.name == "teacher" else f"{r.name} (teacher)",
                _count(r.num_parameters),
                f"{r.size_bytes / 1e6:.3g}",
                _fmt(r.accuracy),
                _fmt(r.macro_f1),
                _fmt(r.agreement),
                _fmt(r.mean_kl),
                _fmt(r.ece),
                f"{r.latency_ms_median:.2f}",
                f"{r.latency_ms_p95:.2f}",
                f"{r.throughput:.1f}",
                f"{r.speedup:.2f}x",
                f"{r.compression:.2f}x",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        note = (
            f"\n{s.get('num_examples', '?')} evaluation examples. Speed on {s.get('device', '?')} "
            f"({s.get('device_name', '')}) with torch.set_num_threads({s.get('num_threads', '?')}): "
            f"batch-1 latency over {s.get('latency_runs', '?')} runs and batch-{s.get('throughput_batch_size', '?')} "
            f"throughput over {s.get('throughput_runs', '?')} runs, after {s.get('warmup_runs', '?')} warm-up runs, "
            "models interleaved. Speed-up = teacher median latency / model median latency; compression = teacher "
            "parameters / model parameters. KL is KL(teacher || model) at T=1, ECE over "
            f"{s.get('ece_bins', '?')} bins."
        )
        return "\n".join(lines) + "\n" + note + "\n"

    def plot(self, path: str | os.PathLike, title: str | None = None) -> Path:
        """A PNG of accuracy (agreement when the set has no labels) against batch-1 median latency."""
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError("ComparisonReport.plot needs matplotlib: pip install matplotlib") from error
        metric = "accuracy" if self.teacher.accuracy is not None else "agreement"
        figure = Figure(figsize=(6, 4.2), dpi=120)
        axes = figure.subplots()
        middle = np.mean([r.latency_ms_median for r in self.results])
        for r in self.results:
            y = getattr(r, metric)
            marker, colour = ("*", "tab:red") if r.role == "teacher" else ("o", "tab:blue")
            axes.scatter(r.latency_ms_median, y, s=140 if r.role == "teacher" else 70, marker=marker, color=colour)
            right = r.latency_ms_median > middle  # label towards the middle so it stays inside the axes
            axes.annotate(
                f"{r.name}\n{_count(r.num_parameters)} params",
                (r.latency_ms_median, y),
                textcoords="offset points",
                xytext=(-6 if right else 6, 6),
                ha="right" if right else "left",
                fontsize=8,
            )
        axes.set_xlabel(
            f"batch-1 median latency (ms), {self.settings.get('device', '')}, "
            f"{self.settings.get('num_threads', '?')} threads"
        )
        axes.set_ylabel("accuracy" if metric == "accuracy" else "top-1 agreement with the teacher")
        axes.set_title(title or f"{metric.capitalize()} against latency")
        axes.grid(alpha=0.3)
        axes.margins(x=0.25, y=0.2)
        figure.tight_layout()
        figure.savefig(path, format="png")
        return Path(path)


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def compare_models(
    teacher: PreTrainedModel | torch.nn.Module | str,
    students: Mapping[str, PreTrainedModel | torch.nn.Module | str] | PreTrainedModel | torch.nn.Module | str,
    eval_dataset: Dataset,
    *,
    data_collator: Callable[[list[dict]], dict[str, torch.Tensor]] | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    num_threads: int | None = None,
    teacher_input_prefix: str = "teacher_",
    teacher_name: str = "teacher",
    latency_runs: int = 50,
    throughput_batch_size: int = 32,
    throughput_runs: int = 10,
    warmup_runs: int = 5,
    ece_bins: int = 15,
) -> ComparisonReport:
    """Compare a teacher with one or more students on ``eval_dataset``.

    ``eval_dataset`` is preprocessed for the students (``input_ids``, ``pixel_values``, ...) and may carry the
    teacher's own inputs under ``teacher_input_prefix`` (as for :class:`~hf_distill.DistillationTrainer`). Labels
    (``labels`` or ``label``) follow the first student's label order; every model's logits are reordered into it by
    label name. Without labels, accuracy, macro-F1 and ECE are left out.

    Reports, per model: accuracy, macro-F1, ECE, top-1 agreement with the teacher and mean KL(teacher || model),
    parameter count, size on disk (``save_pretrained`` to safetensors), batch-1 latency (median and p95 over
    ``latency_runs`` single examples) and throughput on one batch of ``throughput_batch_size`` examples, each after
    ``warmup_runs`` warm-up calls, models interleaved so that load drifts hit all alike. Speed is measured on
    ``device`` (default: CUDA when available), in each model's own dtype, with ``torch.set_num_threads(num_threads)``
    (default: the current setting), restored afterwards. Models are put in eval mode and moved to ``device``; PEFT
    models are measured merged (``merge_and_unload`` on a copy), as they would be deployed.
    """
    if not isinstance(eval_dataset, Dataset):
        raise TypeError(
            f"eval_dataset must be a datasets.Dataset, got {type(eval_dataset).__name__}; pick a split first."
        )
    if len(eval_dataset) == 0:
        raise ValueError("eval_dataset is empty.")
    for name, value in (
        ("batch_size", batch_size),
        ("latency_runs", latency_runs),
        ("throughput_batch_size", throughput_batch_size),
        ("throughput_runs", throughput_runs),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    if warmup_runs < 0:
        raise ValueError(f"warmup_runs must be >= 0, got {warmup_runs}.")
    if not isinstance(students, Mapping):
        students = {"student": students}
    if not students:
        raise ValueError("Pass at least one student, e.g. {'distilled': model}.")
    if teacher_name in students:
        raise ValueError(f"A student is named {teacher_name!r} like the teacher; rename it or set teacher_name.")

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    models = {teacher_name: _prepare(teacher, device)}
    models.update({name: _prepare(student, device) for name, student in students.items()})
    reference = label_names(unwrap(models[next(iter(students))]).config)
    permutations = {
        name: teacher_to_student_permutation(label_names(unwrap(m).config), reference) for name, m in models.items()
    }
    feeds = {
        name: _feed(model, teacher_input_prefix, is_teacher=name == teacher_name) for name, model in models.items()
    }
    collator = data_collator or DataCollatorForDistillation(teacher_input_prefix=teacher_input_prefix)
    dataset = _model_columns(eval_dataset, models.values(), teacher_input_prefix)

    previous_threads = torch.get_num_threads()
    threads = num_threads or previous_threads
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if device.type == "cpu" and load is not None and load + threads > (os.cpu_count() or 1) + 0.5:
        logger.warning(
            f"Load average {load:.1f} on {os.cpu_count()} CPUs: {threads} torch threads will contend with other "
            "processes and latency will be inflated and noisy. Use fewer threads (num_threads=1) or a quiet machine."
        )
    torch.set_num_threads(threads)
    try:
        logits, labels = _predict(models, feeds, permutations, dataset, collator, batch_size, device)
        latency = _time_calls(
            models, feeds, [collator([dataset[i % len(dataset)]]) for i in range(latency_runs)], device, warmup_runs
        )
        big_batch = collator([dataset[i % len(dataset)] for i in range(throughput_batch_size)])
        throughput_times = _time_calls(models, feeds, [big_batch] * throughput_runs, device, warmup_runs)
    finally:
        torch.set_num_threads(previous_threads)

    sizes = {name: (_num_parameters(model), _size_on_disk(model)) for name, model in models.items()}
    teacher_latency = float(np.median(latency[teacher_name]))
    teacher_throughput = throughput_batch_size / float(np.median(throughput_times[teacher_name]))
    results = []
    for name in models:
        median = float(np.median(latency[name]))
        throughput = throughput_batch_size / float(np.median(throughput_times[name]))
        quality: dict[str, float] = {}
        if labels is not None:
            quality = classification_metrics(logits[name], labels)
            quality["ece"] = expected_calibration_error(logits[name], labels, ece_bins)
        if name != teacher_name:
            quality.update(teacher_student_metrics(logits[name], logits[teacher_name]))
        results.append(
            ModelResult(
                name=name,
                role="teacher" if name == teacher_name else "student",
                num_parameters=sizes[name][0],
                size_bytes=sizes[name][1],
                latency_ms_median=1000 * median,
                latency_ms_p95=1000 * float(np.percentile(latency[name], 95)),
                throughput=throughput,
                speedup=teacher_latency / median,
                throughput_speedup=throughput / teacher_throughput,
                compression=sizes[teacher_name][0] / sizes[name][0],
                size_compression=sizes[teacher_name][1] / sizes[name][1],
                **quality,
            )
        )
    settings = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "num_threads": threads,
        "load_average_1min": load,
        "num_examples": len(dataset),
        "labelled": labels is not None,
        "latency_runs": latency_runs,
        "throughput_batch_size": throughput_batch_size,
        "throughput_runs": throughput_runs,
        "warmup_runs": warmup_runs,
        "ece_bins": ece_bins,
        "torch": torch.__version__,
    }
    return ComparisonReport(results, settings)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _prepare(model: PreTrainedModel | torch.nn.Module | str, device: torch.device) -> torch.nn.Module:
    """An eval-mode model on ``device``: loaded when a path, merged on a copy when a PEFT model."""
    if isinstance(model, str):
        model = load_teacher(model)
    elif hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"Models must be torch modules or paths / Hub ids, got {type(model).__name__}.")
    return model.to(device).eval()


def _feed(model: torch.nn.Module, prefix: str, is_teacher: bool) -> Callable[[dict], dict]:
    """Picks a model's inputs from a batch: the teacher reads the prefixed keys when present, students never."""
    accepted = forward_input_names(model)
    if is_teacher:
        return lambda batch: teacher_inputs(batch, prefix, accepted)
    return lambda batch: {name: batch[name] for name in accepted if name in batch}


def _model_columns(dataset: Dataset, models, prefix: str) -> Dataset:
    """The dataset reduced to the columns some model reads (plain or prefixed) and the labels."""
    names = {name for model in models for name in forward_input_names(model)}
    wanted = names | {prefix + name for name in names} | set(LABEL_COLUMNS)
    columns = [c for c in dataset.column_names if c in wanted]
    if not names & set(columns):
        raise ValueError(
            f"eval_dataset has none of the models' inputs ({', '.join(sorted(names))}); its columns are "
            f"{dataset.column_names}. Tokenize / preprocess it first."
        )
    return dataset.select_columns(columns)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def _predict(models, feeds, permutations, dataset, collator, batch_size, device):
    """Logits of every model (in the reference label order) and the labels, or ``None`` without labels."""
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in models}
    labels: list[np.ndarray] = []
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        label = batch.get("labels", batch.get("label"))
        if label is not None:
            labels.append(np.asarray(label))
        batch = _to_device(batch, device)
        for name, model in models.items():
            logits = model(**feeds[name](batch)).logits.float()
            if permutations[name] is not None:
                logits = logits[:, permutations[name]]
            outputs[name].append(logits.cpu().numpy())
    logits = {name: np.concatenate(chunks) for name, chunks in outputs.items()}
    return logits, (np.concatenate(labels) if labels else None)


@torch.no_grad()
def _time_calls(models, feeds, batches, device, warmup_runs) -> dict[str, list[float]]:
    """Seconds per forward pass for each model and batch, after ``warmup_runs`` untimed calls; interleaved."""
    batches = [_to_device(b, device) for b in batches]
    inputs = {name: [feeds[name](b) for b in batches] for name in models}
    for name, model in models.items():
        for i in range(warmup_runs):
            model(**inputs[name][i % len(batches)])
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(len(batches)):
        for name, model in models.items():
            _synchronize(device)
            start = time.perf_counter()
            model(**inputs[name][i])
            _synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _size_on_disk(model: torch.nn.Module) -> int:
    """Bytes of the weight files ``save_pretrained`` writes (safetensors), or of a saved state dict."""
    with tempfile.TemporaryDirectory() as directory:
        if isinstance(model, PreTrainedModel):
            model.save_pretrained(directory)
        else:
            from safetensors.torch import save_model

            save_model(model, os.path.join(directory, "model.safetensors"))
        return sum(p.stat().st_size for p in Path(directory).iterdir() if p.suffix in (".safetensors", ".bin"))
