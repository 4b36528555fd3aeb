"""Teacher-vs-student comparison: quality, agreement, calibration, size and speed of distilled students."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.utils import logging

from ..data.data_collator import DataCollatorForDistillation
from ..data.labels import label_names, teacher_to_student_permutation, to_student_order
from ..teachers.loading import forward_input_names, load_teacher, teacher_inputs, unwrap
from .metrics import classification_metrics, expected_calibration_error, teacher_student_metrics
from .model_result import ModelResult
from .onnx_export import QUANTIZATION_MODES, OnnxRunner, export_onnx, quantize_dynamic_int8
from .plots import bootstrap_interval, format_count, plot_comparison
from .timing import time_calls

logger = logging.get_logger(__name__)

LABEL_COLUMNS = ("labels", "label")
BACKENDS = ("pytorch", "onnxruntime")


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
            f"{s.get('confidence_level', 0.95):.0%} CI",
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
                format_count(r.num_parameters),
                f"{r.size_bytes / 1e6:.3g}",
                _fmt(r.accuracy),
                "—" if r.accuracy_low is None else f"{r.accuracy_low:.3f}-{r.accuracy_high:.3f}",
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
            "models interleaved, timed with torch.utils.benchmark under torch.inference_mode. Speed-up = teacher "
            "median latency / model median latency; compression = teacher parameters / model parameters. KL is KL(teacher || model) at T=1, ECE over "
            f"{s.get('ece_bins', '?')} bins; CI: percentile bootstrap over the evaluation examples "
            f"({s.get('bootstrap_resamples', '?')} resamples)."
        )
        if any(r.backend != "pytorch" for r in self.results):
            note += (
                f" ONNX rows: torch.onnx (dynamo) export run by ONNX Runtime {s.get('onnxruntime', '?')} on the CPU; "
                "int8 = onnxruntime.quantization.quantize_dynamic (int8 weights)."
            )
        return "\n".join(lines) + "\n" + note + "\n"

    def plot(self, path: str | os.PathLike, title: str | None = None) -> Path:
        """A PNG with accuracy (bootstrap intervals) against latency, and agreement against speed-up
        (:func:`~hf_distill.evaluation.plots.plot_comparison`)."""
        return plot_comparison(self.results, self.settings, path, title)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def busy_cpus(window_s: float = 0.25) -> float:
    """How many CPUs other work keeps busy now: the machine's CPU use over ``window_s`` seconds (not the load average,
    which still counts jobs that ended in the last minute)."""
    return psutil.cpu_percent(interval=window_s) / 100 * (os.cpu_count() or 1)


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
    backends: Sequence[str] = ("pytorch",),
    quantize: str | None = None,
    onnx_dir: str | os.PathLike | None = None,
    bootstrap_resamples: int = 1000,
    confidence_level: float = 0.95,
) -> ComparisonReport:
    """Compare a teacher with one or more students on ``eval_dataset``.

    ``eval_dataset`` is preprocessed for the students (``input_ids``, ``pixel_values``, ...) and may carry the
    teacher's own inputs under ``teacher_input_prefix`` (as for :class:`~hf_distill.DistillationTrainer`). Labels
    (``labels`` or ``label``) follow the first student's label order; every model's logits are reordered into it by
    label name. Without labels, accuracy, macro-F1 and ECE are left out.

    Reports, per model: accuracy with a percentile-bootstrap interval over the examples, macro-F1, ECE, top-1
    agreement with the teacher (with its interval) and mean KL(teacher || model), parameter count, size on disk
    (``save_pretrained`` to safetensors, or the ONNX file), batch-1 latency (median and p95 over ``latency_runs``
    single examples) and throughput on one batch of ``throughput_batch_size`` examples, each after ``warmup_runs``
    warm-up calls, timed with ``torch.utils.benchmark`` under ``torch.inference_mode`` with models interleaved so that load
    drifts hit all alike.

    ``backends`` picks how students run: ``"pytorch"`` and/or ``"onnxruntime"`` (exported with
    :func:`~hf_distill.evaluation.onnx_export.export_onnx` into ``onnx_dir``, default a temporary folder, and run on the CPU);
    ``quantize="dynamic"`` adds an int8 ONNX Runtime row per student. The teacher runs in PyTorch. PyTorch speed is
    measured on ``device`` (default: CUDA when available), in each model's own dtype, with
    ``torch.set_num_threads(num_threads)`` (default: the current setting), restored afterwards. Models are put in
    eval mode and moved to ``device``; PEFT models are measured merged (``merge_and_unload`` on a copy), as they
    would be deployed.
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
        ("bootstrap_resamples", bootstrap_resamples),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    if warmup_runs < 0:
        raise ValueError(f"warmup_runs must be >= 0, got {warmup_runs}.")
    backends = list(backends)
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or not backends:
        raise ValueError(f"backends must be a non-empty subset of {list(BACKENDS)}, got {backends}.")
    if quantize is not None and quantize not in QUANTIZATION_MODES:
        raise ValueError(f"quantize must be one of {list(QUANTIZATION_MODES)} or None, got {quantize!r}.")
    if quantize is not None and "onnxruntime" not in backends:
        raise ValueError("quantize='dynamic' quantises the ONNX export: add 'onnxruntime' to backends.")
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
    busy = busy_cpus() if device.type == "cpu" else 0.0
    if busy + threads > (os.cpu_count() or 1) + 0.5:
        advice = (
            "Run on a quiet machine." if threads == 1 else "Use fewer threads (--num_threads 1) or a quiet machine."
        )
        logger.warning(
            f"{busy:.1f} of {os.cpu_count()} CPUs are busy: {threads} torch thread(s) will contend with other "
            f"processes and latency will be inflated and noisy. {advice}"
        )
    with tempfile.TemporaryDirectory() as scratch:
        rows = _rows(
            models, feeds, teacher_name, backends, quantize, Path(onnx_dir or scratch), dataset, collator, threads
        )
        torch.set_num_threads(threads)
        try:
            logits, labels = _predict(rows, permutations, dataset, collator, batch_size, device)
            runs = {name: row.run for name, row in rows.items()}
            singles = [_to_device(collator([dataset[i % len(dataset)]]), device) for i in range(latency_runs)]
            latency = time_calls(runs, singles, warmup_runs, threads)
            big_batch = _to_device(collator([dataset[i % len(dataset)] for i in range(throughput_batch_size)]), device)
            throughput_times = time_calls(runs, [big_batch] * throughput_runs, warmup_runs, threads)
        finally:
            torch.set_num_threads(previous_threads)
        sizes = {name: row.size_bytes() for name, row in rows.items()}

    teacher_logits = logits[teacher_name]
    teacher_latency = float(np.median(latency[teacher_name]))
    teacher_throughput = throughput_batch_size / float(np.median(throughput_times[teacher_name]))
    teacher_parameters, teacher_size = rows[teacher_name].num_parameters, sizes[teacher_name]
    interval = dict(n_resamples=bootstrap_resamples, confidence_level=confidence_level)
    results = []
    for name, row in rows.items():
        median = float(np.median(latency[name]))
        throughput = throughput_batch_size / float(np.median(throughput_times[name]))
        quality: dict[str, float] = {}
        if labels is not None:
            quality = classification_metrics(logits[name], labels)
            quality["ece"] = expected_calibration_error(logits[name], labels, ece_bins)
            keep = labels != -100
            hits = logits[name][keep].argmax(-1) == labels[keep]
            quality["accuracy_low"], quality["accuracy_high"] = bootstrap_interval(hits, **interval)
        if name != teacher_name:
            quality.update(teacher_student_metrics(logits[name], teacher_logits))
            same = logits[name].argmax(-1) == teacher_logits.argmax(-1)
            quality["agreement_low"], quality["agreement_high"] = bootstrap_interval(same, **interval)
        results.append(
            ModelResult(
                name=name,
                role="teacher" if name == teacher_name else "student",
                num_parameters=row.num_parameters,
                size_bytes=sizes[name],
                latency_ms_median=1000 * median,
                latency_ms_p95=1000 * float(np.percentile(latency[name], 95)),
                throughput=throughput,
                speedup=teacher_latency / median,
                throughput_speedup=throughput / teacher_throughput,
                compression=teacher_parameters / row.num_parameters,
                size_compression=teacher_size / sizes[name],
                backend=row.backend,
                **quality,
            )
        )
    settings = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "num_threads": threads,
        "busy_cpus": round(busy, 2),
        "num_examples": len(dataset),
        "labelled": labels is not None,
        "latency_runs": latency_runs,
        "throughput_batch_size": throughput_batch_size,
        "throughput_runs": throughput_runs,
        "warmup_runs": warmup_runs,
        "ece_bins": ece_bins,
        "bootstrap_resamples": bootstrap_resamples,
        "confidence_level": confidence_level,
        "backends": backends,
        "quantize": quantize,
        "torch": torch.__version__,
    }
    if "onnxruntime" in backends:
        import onnxruntime

        settings["onnxruntime"] = onnxruntime.__version__
    return ComparisonReport(results, settings)


@dataclass
class _Row:
    """One row to measure: a function from a batch (on the device) to logits, and what it runs."""

    model_name: str
    backend: str
    run: Callable[[dict[str, torch.Tensor]], torch.Tensor | np.ndarray]
    num_parameters: int
    size_bytes: Callable[[], int]


def _rows(models, feeds, teacher_name, backends, quantize, onnx_dir: Path, dataset, collator, threads):
    """The teacher in PyTorch, then each student in each backend (and int8 when ``quantize``)."""
    rows = {}
    for name, model in models.items():
        parameters = _num_parameters(model)
        if name == teacher_name or "pytorch" in backends:
            rows[name] = _Row(
                name, "pytorch", _torch_runner(model, feeds[name]), parameters, lambda m=model: _size_on_disk(m)
            )
        if name == teacher_name or "onnxruntime" not in backends:
            continue
        example = {k: v.cpu() for k, v in feeds[name](collator([dataset[i % len(dataset)] for i in range(2)])).items()}
        cpu_model = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
        try:
            path = export_onnx(cpu_model, example, onnx_dir / f"{_file_name(name)}.onnx")
        except ImportError:
            raise
        except Exception as error:
            raise RuntimeError(
                f"torch.onnx could not export student {name!r} ({type(error).__name__}: {error}). "
                "Compare it with backends=('pytorch',) (--backend pytorch)."
            ) from error
        variants = [("onnxruntime", path)]
        if quantize == "dynamic":
            variants.append(
                ("onnxruntime-int8", quantize_dynamic_int8(path, onnx_dir / f"{_file_name(name)}.int8.onnx"))
            )
        for backend, file in variants:
            runner = OnnxRunner(file, threads)
            label = f"{name} (onnxruntime{' int8' if backend.endswith('int8') else ''})"
            rows[label] = _Row(
                name, backend, _onnx_runner(runner, feeds[name]), parameters, lambda r=runner: r.size_bytes
            )
    return rows


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _torch_runner(model: torch.nn.Module, feed: Callable[[dict], dict]) -> Callable[[dict], torch.Tensor]:
    def run(batch: dict) -> torch.Tensor:
        with torch.inference_mode():
            return model(**feed(batch)).logits

    return run


def _onnx_runner(runner: OnnxRunner, feed: Callable[[dict], dict]) -> Callable[[dict], np.ndarray]:
    return lambda batch: runner(feed(batch))


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


def _predict(rows: dict[str, _Row], permutations, dataset, collator, batch_size, device):
    """Logits of every row (in the reference label order) and the labels, or ``None`` without labels."""
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in rows}
    labels: list[np.ndarray] = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="Predicting", unit="batch", leave=False, disable=None):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        label = batch.get("labels", batch.get("label"))
        if label is not None:
            labels.append(np.asarray(label))
        batch = _to_device(batch, device)
        for name, row in rows.items():
            logits = to_student_order(torch.as_tensor(row.run(batch)).float(), permutations[row.model_name])
            outputs[name].append(logits.cpu().numpy())
    logits = {name: np.concatenate(chunks) for name, chunks in outputs.items()}
    return logits, (np.concatenate(labels) if labels else None)


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
