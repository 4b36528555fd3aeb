"""Training throughput and peak memory of distillation against plain fine-tuning, and of logit precomputation.

In one run, on the same student, data and batches, alternating the configurations over ``--rounds`` rounds and
reporting medians:

- ``ce``: the student fine-tuned on labels with a plain `transformers.Trainer`;
- ``kd_precomputed``: `DistillationTrainer` reading teacher logits from a dataset column;
- ``kd_python_lists``: the same, with the logits reaching the collator as Python lists of floats, one example at a
  time (the data path before `hf_distill.data.logit_columns.LogitColumns`), to show what the column read costs;
- ``kd_in_batch``: `DistillationTrainer` running the teacher in the loop (``--teacher_dtype``, ``--teacher_compile``);
- ``tutorial``: the common tutorial trainer (fp32 teacher moved with ``.to(device)``, ``no_grad``, no autocast,
  ``F.kl_div(log_softmax, softmax)``);
- ``ideal_in_batch``: ``1 / (1 / ce + teacher forward seconds per example)``, the teacher timed on the same batches;
- on text, ``precompute_teacher_logits`` against a plain DataLoader + DataCollatorWithPadding forward loop.

Throughput counts examples per second over the training steps after ``--warmup_steps``, per wall-clock second and per
CPU second of the benchmark process (``time.process_time``; with one torch thread it is the work done, which other
jobs on a shared machine do not inflate). Peak memory is CUDA's max
allocated bytes on GPU; on CPU it is the peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``)
above the resident size before the run, so it includes allocator caching and is coarser.

The many-class CPU shapes (1000 classes at batch 256: text, and images with 8 stored views per image) run ``ce``,
``kd_precomputed`` and ``kd_python_lists`` only. The image shape trains on a `datasets.Dataset` through
`hf_distill.vision.DistillationImageTransform` (random crops for ``ce``, stored views for the others) with an 8 x 1000
``teacher_logits`` column of random values, the layout `hf_distill.vision.precompute_teacher_views` writes.

    python benchmarks/distillation_throughput.py --output benchmarks/results/cpu.json
    python benchmarks/distillation_throughput.py --shapes gpu --device cuda --bf16 --teacher_dtype bfloat16 \\
        --teacher_compile --output benchmarks/results/gpu.json
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Array2D, Dataset, Features, List, Value
from torch.utils.data import DataLoader
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DataCollatorWithPadding,
    PretrainedConfig,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    default_data_collator,
)

from hf_distill import (
    DataCollatorForDistillation,
    DistillationTrainer,
    DistillationTrainingArguments,
    precompute_teacher_logits,
)
from hf_distill.vision import DistillationImageTransform, PixelFormat, RandomResizedCropFlip, default_image_processor
from hf_distill.vision.augment import VIEW_SIZE
from hf_distill.vision.transforms import VIEWS_COLUMN

MODES = ("ce", "kd_precomputed", "kd_in_batch", "tutorial")
PRECOMPUTED_MODES = ("ce", "kd_precomputed", "kd_python_lists")


@dataclass(frozen=True)
class Shape:
    """One benchmark task: teacher and student configs, data size and batch size."""

    name: str
    teacher: PretrainedConfig
    student: PretrainedConfig
    batch_size: int
    num_examples: int
    max_length: int = 0  # text: token counts drawn uniformly from [8, max_length]
    modes: tuple[str, ...] = MODES
    views: int = 0  # images: stored views per image, read through DistillationImageTransform

    @property
    def is_text(self) -> bool:
        return isinstance(self.teacher, BertConfig)


def bert(layers: int, hidden: int, num_labels: int, vocab_size: int, max_length: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(hidden // 64, 2),
        intermediate_size=4 * hidden,
        max_position_embeddings=max(max_length, 64),
        num_labels=num_labels,
    )


def vit(layers: int, hidden: int, heads: int, num_labels: int, size: int = 224, channels: int = 3) -> ViTConfig:
    return ViTConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        image_size=size,
        patch_size=16 if size >= 64 else 8,
        num_channels=channels,
        num_labels=num_labels,
    )


SHAPES: dict[str, list[Shape]] = {
    "cpu": [
        Shape("text-tiny", bert(4, 192, 3, 1000, 64), bert(2, 96, 3, 1000, 64), 16, 1024, max_length=64),
        Shape(
            "text-1000-classes",
            bert(1, 32, 1000, 1000, 32),
            bert(1, 32, 1000, 1000, 32),
            256,
            2048,
            max_length=32,
            modes=PRECOMPUTED_MODES,
        ),
        Shape(
            "image-8-views-1000-classes",
            vit(1, 32, 2, 1000, size=32, channels=1),
            vit(1, 32, 2, 1000, size=32, channels=1),
            256,
            2048,
            modes=PRECOMPUTED_MODES,
            views=8,
        ),
    ],
    "gpu": [
        Shape("text-bert-base", bert(12, 768, 3, 30522, 128), bert(6, 768, 3, 30522, 128), 32, 8192, 128),
        Shape("image-vit-b-to-ti", vit(12, 768, 12, 1000), vit(12, 192, 3, 1000), 64, 2048),
    ],
}


class TutorialDistillationTrainer(Trainer):
    """The distillation trainer of common tutorials: fp32 teacher, ``no_grad``, no autocast, softmax targets."""

    def __init__(self, *args: Any, teacher_model: torch.nn.Module, alpha: float, temperature: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.teacher = teacher_model.to(self.args.device).eval()
        self.alpha, self.temperature = alpha, temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        with torch.no_grad():
            teacher_outputs = self.teacher(**inputs)
        t = self.temperature
        loss_kd = F.kl_div(
            F.log_softmax(outputs.logits / t, dim=-1),
            F.softmax(teacher_outputs.logits / t, dim=-1),
            reduction="batchmean",
        ) * (t**2)
        loss = self.alpha * outputs.loss + (1.0 - self.alpha) * loss_kd
        return (loss, outputs) if return_outputs else loss


class PythonListsDistillationTrainer(DistillationTrainer):
    """`DistillationTrainer` with the logit columns read the `datasets` default way: Python lists, row by row."""

    def _remove_unused_columns(self, dataset: Dataset, description: str | None = None) -> Dataset:
        self.plan.add_dataset(dataset, training=dataset is self.train_dataset)
        return Trainer._remove_unused_columns(self, dataset, description)


class RunSpeed(NamedTuple):
    """One training run: examples per wall-clock and per CPU second of this process after warm-up, peak memory in
    MiB, CPU milliseconds per step spent in full garbage collections, examples per CPU second without them, and
    examples per CPU second of the median step (robust to bursts of work by other tenants of a shared host)."""

    examples_per_s: float
    examples_per_cpu_s: float
    peak_mib: float | None
    full_gc_ms_per_step: float
    examples_per_cpu_s_without_full_gc: float
    examples_per_cpu_s_median_step: float


class StepClock(TrainerCallback):
    """Wall-clock and process CPU time stamps at the end of every optimizer step (after a device sync), and the CPU
    seconds spent so far in Python's full (generation 2) garbage collections, which walk every live object."""

    def __init__(self, sync: Callable[[], None]):
        self.sync, self.stamps, self.cpu_stamps, self.gc_stamps = sync, [], [], []
        self.full_gc_seconds, self._gc_start = 0.0, 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2 and phase == "start":
            self._gc_start = time.process_time()
        elif info["generation"] == 2:
            self.full_gc_seconds += time.process_time() - self._gc_start

    def on_train_begin(self, args, state, control, **kwargs):
        gc.callbacks.append(self._on_gc)

    def on_train_end(self, args, state, control, **kwargs):
        gc.callbacks.remove(self._on_gc)

    def on_step_end(self, args, state, control, **kwargs):
        self.sync()
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())
        self.gc_stamps.append(self.full_gc_seconds)


class PeakMemory:
    """Peak memory above the starting point, in MiB: CUDA max allocated, or CPU peak RSS (``VmHWM``) on Linux."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> PeakMemory:
        self.peak_mib: float | None = None
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        elif os.path.exists("/proc/self/clear_refs"):
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.start = _proc_status_bytes("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20
        elif os.path.exists("/proc/self/clear_refs"):
            self.peak_mib = (_proc_status_bytes("VmHWM") - self.start) / 2**20


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def make_data(shape: Shape, seed: int) -> Dataset | list[dict[str, torch.Tensor]]:
    """Random token ids of uniformly drawn lengths (text) or random images, with random labels."""
    g = np.random.default_rng(seed)
    labels = g.integers(0, shape.student.num_labels, shape.num_examples)
    if shape.views:
        side = shape.student.image_size + 8
        images = g.integers(0, 256, (shape.num_examples, side, side), dtype=np.uint8)
        features = Features({"image": Array2D((side, side), "uint8"), "label": Value("int64")})
        return Dataset.from_dict({"image": images, "label": labels}, features=features)
    if shape.is_text:
        lengths = g.integers(8, shape.max_length + 1, shape.num_examples)
        ids = [[2, *g.integers(5, shape.teacher.vocab_size, n - 2).tolist(), 3] for n in lengths]
        return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * n for n in lengths], "labels": labels})
    pixels = torch.from_numpy(g.standard_normal((shape.num_examples, 3, 224, 224), dtype=np.float32))
    return [{"pixel_values": p, "labels": torch.tensor(y)} for p, y in zip(pixels, labels, strict=True)]


def word_tokenizer(vocab_size: int, directory: str) -> BertTokenizerFast:
    """A WordPiece tokenizer over ``vocab_size`` made-up tokens (no Hub access needed); only its padding is used."""
    vocab = Path(directory) / "vocab.txt"
    vocab.write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(5, vocab_size)])
    )
    return BertTokenizerFast(vocab=str(vocab))


def build_model(config: PretrainedConfig, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model_class = BertForSequenceClassification if isinstance(config, BertConfig) else ViTForImageClassification
    return model_class(config)


class Benchmark:
    """Runs the four training configurations and the teacher forward pass of one task on identical batches."""

    def __init__(self, shape: Shape, cli: argparse.Namespace, workdir: str):
        self.shape, self.cli, self.workdir = shape, cli, workdir
        self.device = torch.device(cli.device)
        self.student = build_model(shape.student, seed=1)
        self.teacher_fp32 = build_model(shape.teacher, seed=0).eval().to(self.device)
        self.teacher_fp32.requires_grad_(False)
        self.teacher = copy.deepcopy(self.teacher_fp32)  # placed and cast by DistillationTrainer on first use
        self.data = make_data(shape, seed=0)
        self.collator = (
            DataCollatorWithPadding(word_tokenizer(shape.teacher.vocab_size, workdir))
            if shape.is_text
            else DataCollatorForDistillation()
            if shape.views
            else default_data_collator
        )
        self.data_with_logits = self._with_logits()
        if shape.views:
            transform = DistillationImageTransform(
                student=PixelFormat(default_image_processor((shape.student.image_size,) * 2, 1), num_channels=1),
                augment=RandomResizedCropFlip(),
            )
            self.data = self.data.with_transform(transform)
            self.data_with_logits = self.data_with_logits.with_transform(transform)

    def _with_logits(self) -> Dataset | list[dict[str, torch.Tensor]]:
        if self.shape.views:  # random stored views and logits, in the layout of precompute_teacher_views
            g, side = np.random.default_rng(1), self.shape.student.image_size + 8
            crop = RandomResizedCropFlip()
            generator = torch.Generator().manual_seed(1)
            views = [[crop.sample(side, side, generator) for _ in range(self.shape.views)] for _ in self.data]
            logits = g.standard_normal((len(self.data), self.shape.views, self.shape.student.num_labels), np.float32)
            width = self.shape.student.num_labels
            features = Features(
                {
                    **self.data.features,
                    VIEWS_COLUMN: List(List(Value("int32"), length=VIEW_SIZE), length=self.shape.views),
                    "teacher_logits": List(List(Value("float32"), length=width), length=self.shape.views),
                }
            )
            columns = {**self.data.to_dict(), VIEWS_COLUMN: views, "teacher_logits": logits}
            return Dataset.from_dict(columns, features=features)
        if self.shape.is_text:
            return precompute_teacher_logits(self.teacher_fp32, self.data, batch_size=64, device=self.device)
        logits = self.plain_forward_loop(self.teacher_fp32, self.data)
        return [{**row, "teacher_logits": t} for row, t in zip(self.data, torch.from_numpy(logits), strict=True)]

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def training_args(self, cls: type[TrainingArguments], **extra: Any) -> TrainingArguments:
        cli = self.cli
        return cls(
            output_dir=os.path.join(self.workdir, "out"),
            report_to=[],
            use_cpu=self.device.type == "cpu",
            per_device_train_batch_size=self.shape.batch_size,
            max_steps=cli.warmup_steps + cli.steps,
            learning_rate=1e-4,
            logging_strategy="no",
            save_strategy="no",
            disable_tqdm=True,
            bf16=cli.bf16,
            seed=0,
            remove_unused_columns=not self.shape.views,
            **extra,
        )

    def trainer(self, mode: str) -> Trainer:
        student = copy.deepcopy(self.student)
        common = dict(model=student, data_collator=self.collator)
        kd_args = dict(
            alpha=0.5,
            temperature=2.0,
            teacher_dtype=self.cli.teacher_dtype,
            teacher_torch_compile=self.cli.teacher_compile,
        )
        if mode == "ce":
            return Trainer(args=self.training_args(TrainingArguments), train_dataset=self.data, **common)
        if mode in ("kd_precomputed", "kd_python_lists"):
            args = self.training_args(DistillationTrainingArguments, **kd_args)
            trainer_cls = DistillationTrainer if mode == "kd_precomputed" else PythonListsDistillationTrainer
            return trainer_cls(args=args, train_dataset=self.data_with_logits, **common)
        if mode == "kd_in_batch":
            args = self.training_args(DistillationTrainingArguments, **kd_args)
            return DistillationTrainer(args=args, teacher_model=self.teacher, train_dataset=self.data, **common)
        args = self.training_args(TrainingArguments)
        return TutorialDistillationTrainer(
            args=args, teacher_model=self.teacher_fp32, alpha=0.5, temperature=2.0, train_dataset=self.data, **common
        )

    def train(self, mode: str) -> RunSpeed:
        """One training run of ``mode``, measured over the steps after warm-up."""
        trainer = self.trainer(mode)
        clock = StepClock(self.sync)
        trainer.add_callback(clock)
        with PeakMemory(self.device) as memory:
            trainer.train()
        steps = len(clock.stamps) - self.cli.warmup_steps
        examples, start = steps * self.shape.batch_size, self.cli.warmup_steps - 1
        wall, cpu = clock.stamps[-1] - clock.stamps[start], clock.cpu_stamps[-1] - clock.cpu_stamps[start]
        full_gc = clock.gc_stamps[-1] - clock.gc_stamps[start]
        step_cpu = statistics.median(np.diff(clock.cpu_stamps[start:]))
        return RunSpeed(
            examples / wall,
            examples / cpu,
            memory.peak_mib,
            1e3 * full_gc / steps,
            examples / (cpu - full_gc),
            self.shape.batch_size / step_cpu,
        )

    def teacher_seconds_per_example(self) -> float:
        """The in-batch teacher's forward time per example, on the batches the trainers train on."""
        trainer = self.trainer("kd_in_batch")
        batches = iter(trainer.get_train_dataloader())
        elapsed, examples = 0.0, 0
        for step in range(self.cli.warmup_steps + self.cli.steps):
            batch = trainer._prepare_inputs(next(batches))
            start = time.perf_counter()
            trainer.source.teacher(batch, trainer.args.temperature, training=False)
            self.sync()
            if step >= self.cli.warmup_steps:
                elapsed, examples = elapsed + time.perf_counter() - start, examples + len(batch["labels"])
        return elapsed / examples

    def plain_forward_loop(self, teacher: torch.nn.Module, data: Any) -> np.ndarray:
        """Teacher logits the usual way: DataLoader + collator, no length grouping, in dataset order."""
        if self.shape.is_text:
            data = data.select_columns(["input_ids", "attention_mask"])
        collate = self.collator if self.shape.is_text else default_data_collator
        loader = DataLoader(data, batch_size=self.cli.precompute_batch_size, collate_fn=collate)
        amp_dtype = torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else None
        outputs = []
        with torch.no_grad(), torch.autocast(self.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            for batch in loader:
                batch = {k: v.to(self.device) for k, v in batch.items() if k != "labels"}
                outputs.append(teacher(**batch).logits.float().cpu().numpy())
        return np.concatenate(outputs)

    def precompute_seconds(self) -> tuple[float, float]:
        """Wall time of ``precompute_teacher_logits`` and of the plain forward loop over the same data."""
        start = time.perf_counter()
        precompute_teacher_logits(
            self.teacher_fp32,
            self.data,
            batch_size=self.cli.precompute_batch_size,
            device=self.device,
            load_from_cache_file=False,
        )
        self.sync()
        middle = time.perf_counter()
        self.plain_forward_loop(self.teacher_fp32, self.data)
        self.sync()
        return middle - start, time.perf_counter() - middle


def run_task(shape: Shape, cli: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        bench = Benchmark(shape, cli, workdir)
        rounds = []
        in_batch = "kd_in_batch" in shape.modes
        for r in range(cli.rounds):
            order = shape.modes if r % 2 == 0 else shape.modes[::-1]  # alternate the order against drift
            result = {mode: bench.train(mode) for mode in order}
            row = {f"{mode}_{key}": value for mode in shape.modes for key, value in result[mode]._asdict().items()}
            if in_batch:
                row["teacher_s_per_example"] = bench.teacher_seconds_per_example()
                row["ideal_in_batch_examples_per_s"] = 1 / (
                    1 / row["ce_examples_per_s"] + row["teacher_s_per_example"]
                )
            if shape.is_text and in_batch:
                row["precompute_s"], row["plain_forward_loop_s"] = bench.precompute_seconds()
            rounds.append(row)
            print(
                f"[{shape.name}] round {r + 1}/{cli.rounds}: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items() if v)
            )
    ratios = {"kd_precomputed / ce": ("kd_precomputed_examples_per_s", "ce_examples_per_s")}
    ratios["kd_precomputed / ce, CPU time"] = ("kd_precomputed_examples_per_cpu_s", "ce_examples_per_cpu_s")
    ratios["kd_precomputed / ce, CPU time without full GC"] = (
        "kd_precomputed_examples_per_cpu_s_without_full_gc",
        "ce_examples_per_cpu_s_without_full_gc",
    )
    ratios["kd_precomputed / ce, median step CPU time"] = (
        "kd_precomputed_examples_per_cpu_s_median_step",
        "ce_examples_per_cpu_s_median_step",
    )
    if "kd_python_lists" in shape.modes:
        ratios["kd_python_lists / ce"] = ("kd_python_lists_examples_per_s", "ce_examples_per_s")
        ratios["kd_python_lists / ce, CPU time"] = ("kd_python_lists_examples_per_cpu_s", "ce_examples_per_cpu_s")
    if in_batch:
        ratios["kd_in_batch / ideal"] = ("kd_in_batch_examples_per_s", "ideal_in_batch_examples_per_s")
        ratios["kd_in_batch / tutorial"] = ("kd_in_batch_examples_per_s", "tutorial_examples_per_s")
    if shape.is_text and in_batch:
        ratios["precompute speed / plain loop"] = ("plain_forward_loop_s", "precompute_s")
    median = {key: _median([row[key] for row in rounds]) for key in rounds[0]}
    return {
        "modes": list(shape.modes),
        "shape": {
            "batch_size": shape.batch_size,
            "views": shape.views,
            "num_examples": shape.num_examples,
            "max_length": shape.max_length,
            "teacher": config_summary(shape.teacher),
            "student": config_summary(shape.student),
        },
        "median": median,
        "ratios": {name: _median([row[a] / row[b] for row in rounds]) for name, (a, b) in ratios.items()},
        "ratio_ranges": {name: _range([row[a] / row[b] for row in rounds]) for name, (a, b) in ratios.items()},
        "rounds": rounds,
    }


def config_summary(config: PretrainedConfig) -> dict[str, Any]:
    """The config's non-default entries, with ``num_labels`` in place of the label maps."""
    summary = {k: v for k, v in config.to_diff_dict().items() if k not in ("id2label", "label2id")}
    return {**summary, "num_labels": config.num_labels}


def _median(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else statistics.median(values)


def _range(values: list[float | None]) -> list[float] | None:
    return None if any(v is None for v in values) else [min(values), max(values)]


def markdown_table(results: dict[str, Any]) -> str:
    """The ratios of every task (median and per-round range) and its median throughputs, as markdown."""
    lines = ["| task | ratio | median | per-round range |", "|---|---|---|---|"]
    for name, task in results["tasks"].items():
        for ratio, value in task["ratios"].items():
            bounds = task.get("ratio_ranges", {}).get(ratio)
            spread = "–" if bounds is None else f"{bounds[0]:.3f} – {bounds[1]:.3f}"
            lines.append(f"| {name} | `{ratio}` | {value:.3f} | {spread} |")
    lines += ["", "| task | mode | examples / s (wall) | examples / CPU s | full GC, CPU ms / step |"]
    lines.append("|---|---|---|---|---|")
    for name, task in results["tasks"].items():
        for mode in task.get("modes", MODES):
            median = task["median"]
            cpu, full_gc = (median.get(f"{mode}_{key}") for key in ("examples_per_cpu_s", "full_gc_ms_per_step"))
            cells = ["–" if value is None else f"{value:.1f}" for value in (cpu, full_gc)]
            lines.append(f"| {name} | `{mode}` | {median[f'{mode}_examples_per_s']:.1f} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="cpu")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--teacher_dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision for all trainers")
    parser.add_argument("--teacher_compile", action="store_true", help="torch.compile the in-batch teacher")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup_steps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--precompute_batch_size", type=int, default=64)
    parser.add_argument("--tasks", nargs="+", help="run only these tasks of --shapes (default: all)")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument("--table", type=Path, help="only print the markdown table of this results JSON")
    cli = parser.parse_args()
    if cli.table:
        print(markdown_table(json.loads(cli.table.read_text())))
        return
    if cli.warmup_steps < 1:
        parser.error("--warmup_steps must be >= 1 (the first timed step needs a start stamp).")
    if cli.steps < 1:
        parser.error("--steps must be >= 1: the timed steps after the warm-up.")

    results = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cli).items()},
        "environment": {
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if cli.device.startswith("cuda") else platform.processor(),
            "torch_threads": torch.get_num_threads(),
        },
        "tasks": {
            shape.name: run_task(shape, cli)
            for shape in SHAPES[cli.shapes]
            if cli.tasks is None or shape.name in cli.tasks
        },
    }
    print(markdown_table(results))
    if cli.output:
        cli.output.parent.mkdir(parents=True, exist_ok=True)
        cli.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
