"""Bytes per example and student quality of top-k teacher logits against full ones, on a learnable 100-class task.

Each sequence holds one "tens" keyword (10 tokens) and one "units" keyword (10 tokens) among noise tokens; its class
is ``10 * tens + units``. Training labels keep the units digit with probability ``1 - --label_noise`` and redraw it
uniformly otherwise, so a well-trained teacher spreads some mass over the 9 classes sharing the tens digit. A small
BERT teacher is trained with plain cross-entropy on the noisy labels; then, for each ``--seeds`` seed (the student's
initial weights and batch order), one student per storage and temperature (full float16 and top-k float16 for each
``--top_k``, at each ``--temperatures`` T) is distilled from the same initial weights on the same batches (``--alpha``
weights the hard-label term), plus one student on the ``hard`` loss (the teacher's top-1 class only, which any storage
gives) and a cross-entropy-only student (no teacher) as reference. All are scored on held-out sequences: accuracy on
the clean labels, top-1 agreement with the teacher, and KL(teacher || student) on the full distributions at T = 1.
``summary`` holds the mean, sample standard deviation, min and max over seeds; ``--merge`` combines runs made for
different seeds in parallel. The teacher (seed 0) is the same in every run.

    python benchmarks/top_k_accuracy.py --seeds 0 1 2 --temperatures 1 2 --top_k 10 \\
        --output benchmarks/results/top_k_cpu.json
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from hf_distill import (
    DataCollatorForDistillation,
    DistillationTrainer,
    DistillationTrainingArguments,
    precompute_teacher_logits,
)
from hf_distill.data.data_collator import pad_features
from hf_distill.data.top_k import indices_column
from hf_distill.evaluation.metrics import accuracy, agreement, mean_kl

NOISE_START = 25  # token ids 5..14 are the tens keywords, 15..24 the units keywords, the rest noise


def bert(seed: int, layers: int, hidden: int, vocab_size: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        max_position_embeddings=32,
        num_labels=100,
    )
    return BertForSequenceClassification(config)


def keyword_task(n: int, seed: int, vocab_size: int, label_noise: float) -> tuple[Dataset, np.ndarray]:
    """``n`` sequences with their (noisy) ``labels`` column, and the clean labels."""
    g = np.random.default_rng(seed)
    tens, units = g.integers(0, 10, n), g.integers(0, 10, n)
    rows = []
    for t, u in zip(tens, units, strict=True):
        tokens = g.integers(NOISE_START, vocab_size, g.integers(8, 17))
        i, j = g.choice(len(tokens), 2, replace=False)
        tokens[i], tokens[j] = 5 + t, 15 + u
        rows.append(tokens.tolist())
    noisy_units = np.where(g.random(n) < label_noise, g.integers(0, 10, n), units)
    return Dataset.from_dict({"input_ids": rows, "labels": (10 * tens + noisy_units).tolist()}), 10 * tens + units


def predict(model: torch.nn.Module, dataset: Dataset) -> np.ndarray:
    with torch.no_grad():
        return model.cpu().eval()(**pad_features({"input_ids": dataset["input_ids"]})).logits.numpy()


def bytes_per_example(dataset: Dataset, columns: list[str]) -> float:
    return sum(dataset.data.column(c).nbytes for c in columns) / len(dataset)


def train(
    model: torch.nn.Module, data: Dataset, epochs: float, workdir: str, seed: int = 0, **distill: float | str
) -> torch.nn.Module:
    """Train a copy of ``model``: plain cross-entropy without ``distill`` options, else `DistillationTrainer`."""
    common = dict(output_dir=workdir, report_to=[], use_cpu=True, per_device_train_batch_size=64, seed=seed)
    common.update(num_train_epochs=epochs, learning_rate=1e-3, logging_strategy="no", save_strategy="no")
    trainer_cls, args = Trainer, TrainingArguments(disable_tqdm=True, **common)
    if distill:
        trainer_cls, args = DistillationTrainer, DistillationTrainingArguments(disable_tqdm=True, **common, **distill)
    trainer = trainer_cls(
        model=copy.deepcopy(model), args=args, train_dataset=data, data_collator=DataCollatorForDistillation()
    )
    trainer.train()
    return trainer.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top_k", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[2.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="student initialisation and batch order")
    parser.add_argument("--alpha", type=float, default=0.0, help="weight of the hard-label term for the students")
    parser.add_argument("--label_noise", type=float, default=0.3)
    parser.add_argument("--vocab_size", type=int, default=200)
    parser.add_argument("--train_examples", type=int, default=8192)
    parser.add_argument("--eval_examples", type=int, default=2048)
    parser.add_argument("--teacher_epochs", type=float, default=8.0)
    parser.add_argument("--student_epochs", type=float, default=6.0)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--merge", type=Path, nargs="+", help="merge these result files into --output instead")
    cli = parser.parse_args()
    if cli.merge:
        merge(cli.merge, cli.output)
        return

    train_set, _ = keyword_task(cli.train_examples, 0, cli.vocab_size, cli.label_noise)
    held_out, held_out_labels = keyword_task(cli.eval_examples, 1, cli.vocab_size, 0.0)
    results: dict[str, dict[str, dict[str, float]]] = {}

    def score(seed: int, name: str, logits: np.ndarray, **extra: float) -> None:
        row = {**extra, "accuracy": accuracy(logits.argmax(-1), held_out_labels)}
        if name != "teacher":
            row["agreement"] = agreement(logits, teacher_logits)
            row["kl_teacher_student_t1"] = mean_kl(logits, teacher_logits)
        results.setdefault(name, {})[str(seed)] = row
        print(f"seed {seed} {name:<20} " + "  ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)

    with tempfile.TemporaryDirectory() as workdir:
        teacher = train(
            bert(0, layers=2, hidden=128, vocab_size=cli.vocab_size), train_set, cli.teacher_epochs, workdir
        )
        teacher_logits = predict(teacher, held_out)
        score(0, "teacher", teacher_logits)
        storages = {}
        for t in cli.temperatures:
            storages[f"full float16, T={t:g}"] = ({"dtype": "float16"}, t)
            storages.update({f"top-{k} float16, T={t:g}": ({"top_k": k, "temperature": t}, t) for k in cli.top_k})
        columns = {
            name: precompute_teacher_logits(teacher, train_set, **options) for name, (options, _) in storages.items()
        }
        for seed in cli.seeds:
            student = bert(1 + seed, layers=2, hidden=64, vocab_size=cli.vocab_size)
            score(seed, "untrained student", predict(student, held_out))
            ce_student = train(student, train_set, cli.student_epochs, workdir, seed=seed)
            score(seed, "CE only (no teacher)", predict(ce_student, held_out))
            hard = train(
                student,
                columns[f"full float16, T={cli.temperatures[0]:g}"],
                cli.student_epochs,
                workdir,
                seed=seed,
                alpha=cli.alpha,
                distillation_loss="hard",
            )
            score(seed, "hard (teacher top-1)", predict(hard, held_out))
            for name, (_, t) in storages.items():
                data = columns[name]
                stored = [c for c in ("teacher_logits", indices_column("teacher_logits")) if c in data.column_names]
                model = train(student, data, cli.student_epochs, workdir, seed=seed, alpha=cli.alpha, temperature=t)
                score(seed, name, predict(model, held_out), bytes_per_example=bytes_per_example(data, stored))
    write_report(results, {**vars(cli), "output": str(cli.output)}, cli.output)


def write_report(results: dict[str, dict[str, dict[str, float]]], args: dict, output: Path | None) -> None:
    """Mean, sample std, min and max over seeds of every metric; printed as a markdown table and saved as JSON."""
    summary = {
        name: {
            metric: {
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "min": float(np.min(values)),
                "max": float(np.max(values)),
                "seeds": len(values),
            }
            for metric in next(iter(rows.values()))
            for values in [[row[metric] for row in rows.values()]]
        }
        for name, rows in results.items()
    }
    print("| student | bytes / example | held-out accuracy | top-1 agreement | KL(teacher ‖ student), T=1 |")
    print("|---|---|---|---|---|")
    for name, metrics in summary.items():
        cells = [f"{metrics['bytes_per_example']['mean']:.0f}" if "bytes_per_example" in metrics else "–"]
        for metric in ("accuracy", "agreement", "kl_teacher_student_t1"):
            m = metrics.get(metric)
            cells.append("–" if m is None else f"{m['mean']:.3f} ± {m['std']:.3f} ({m['min']:.3f}–{m['max']:.3f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"args": args, "summary": summary, "results": results}, indent=2) + "\n")


def merge(files: list[Path], output: Path | None) -> None:
    """One report from runs over different seeds (same other arguments), e.g. run in parallel."""
    runs = [json.loads(f.read_text()) for f in files]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        for name, rows in run["results"].items():
            results.setdefault(name, {}).update(rows)
    args = {**runs[0]["args"], "seeds": sorted({s for run in runs for s in run["args"]["seeds"]})}
    write_report(results, {**args, "output": str(output)}, output)


if __name__ == "__main__":
    main()
