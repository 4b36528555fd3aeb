"""Bytes per example and student quality of top-k teacher logits against full ones, on a many-class toy problem.

A random-weight BERT teacher with ``--num_labels`` classes labels random token sequences; one student per storage
(full float32, full float16, top-k float16 for each ``--top_k``) is distilled from the same initial weights on the same
batches (``alpha=0``), then scored on held-out data by top-1 agreement with the teacher and by KL(teacher || student)
on the full distributions at T = 1.

    python benchmarks/top_k_accuracy.py --output benchmarks/results/top_k_cpu.json
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
from transformers import BertConfig, BertForSequenceClassification

from hf_distill import (
    DataCollatorForDistillation,
    DistillationTrainer,
    DistillationTrainingArguments,
    precompute_teacher_logits,
)
from hf_distill.data_collator import pad_features
from hf_distill.metrics import agreement, mean_kl
from hf_distill.top_k import indices_column


def random_bert(seed: int, layers: int, hidden: int, num_labels: int, vocab_size: int, init_std: float):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        max_position_embeddings=64,
        num_labels=num_labels,
        initializer_range=init_std,
    )
    return BertForSequenceClassification(config).eval()


def random_text(n: int, seed: int, vocab_size: int) -> Dataset:
    g = np.random.default_rng(seed)
    lengths = g.integers(8, 17, n)
    return Dataset.from_dict({"input_ids": [g.integers(5, vocab_size, m).tolist() for m in lengths]})


def predict(model: torch.nn.Module, dataset: Dataset) -> np.ndarray:
    with torch.no_grad():
        return model.cpu().eval()(**pad_features({"input_ids": dataset["input_ids"]})).logits.numpy()


def bytes_per_example(dataset: Dataset, columns: list[str]) -> float:
    return sum(dataset.data.column(c).nbytes for c in columns) / len(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_labels", type=int, default=100)
    parser.add_argument("--top_k", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--train_examples", type=int, default=8192)
    parser.add_argument("--eval_examples", type=int, default=1024)
    parser.add_argument("--epochs", type=float, default=6.0)
    parser.add_argument("--output", type=Path)
    cli = parser.parse_args()

    vocab = 100
    teacher = random_bert(0, layers=2, hidden=64, num_labels=cli.num_labels, vocab_size=vocab, init_std=0.5)
    student = random_bert(1, layers=2, hidden=64, num_labels=cli.num_labels, vocab_size=vocab, init_std=0.02)
    train, held_out = random_text(cli.train_examples, 0, vocab), random_text(cli.eval_examples, 1, vocab)
    held_out_teacher = np.asarray(precompute_teacher_logits(teacher, held_out)["teacher_logits"])

    storages = {"full float32": {}, "full float16": {"dtype": "float16"}}
    storages.update({f"top-{k} float16": {"top_k": k, "temperature": cli.temperature} for k in cli.top_k})
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, options in storages.items():
            data = precompute_teacher_logits(teacher, train, **options)
            stored = [c for c in ("teacher_logits", indices_column("teacher_logits")) if c in data.column_names]
            args = DistillationTrainingArguments(
                output_dir=workdir,
                report_to=[],
                use_cpu=True,
                alpha=0.0,
                temperature=cli.temperature,
                per_device_train_batch_size=64,
                num_train_epochs=cli.epochs,
                learning_rate=1e-3,
                logging_strategy="no",
                save_strategy="no",
                disable_tqdm=True,
                seed=0,
            )
            trainer = DistillationTrainer(
                model=copy.deepcopy(student),
                args=args,
                train_dataset=data,
                data_collator=DataCollatorForDistillation(),
            )
            trainer.train()
            student_logits = predict(trainer.model, held_out)
            results[name] = {
                "bytes_per_example": bytes_per_example(data, stored),
                "agreement": agreement(student_logits, held_out_teacher),
                "kl_teacher_student_t1": mean_kl(student_logits, held_out_teacher),
            }
            print(f"{name:<16} " + "  ".join(f"{k}={v:.4g}" for k, v in results[name].items()), flush=True)
    results["untrained student"] = {"agreement": agreement(predict(student, held_out), held_out_teacher)}
    if cli.output:
        cli.output.parent.mkdir(parents=True, exist_ok=True)
        cli.output.write_text(
            json.dumps({"args": {**vars(cli), "output": str(cli.output)}, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
