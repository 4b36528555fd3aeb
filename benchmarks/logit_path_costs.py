"""What a distillation step adds to a plain fine-tuning step at 1000 classes and batch 256, part by part, in CPU ms.

Timed with `torch.utils.benchmark` on one thread (process CPU time is what other jobs on a shared machine do not
inflate): reading a batch of logits from Arrow through `hf_distill.data.logit_columns` (full float32, float16, 8 views)
against the Python-list path; gathering a batch's logits from one Arrow chunk and from a memory-mapped cache file of
many small chunks (a row per chunk, at worst, in a large shuffled cache); collating a batch of token ids with its
logits, as rows that carry them or as one gathered array (`BatchLogitsCollator`), against the same rows without
logits; and the loss (`distillation_loss`, forward and backward) against plain cross-entropy.
Compare the sums with a plain step (``256 / ce_examples_per_cpu_s`` of `distillation_throughput.py`).

    python benchmarks/logit_path_costs.py --output benchmarks/results/logit_path_costs_cpu.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, Features, List, Value
from torch.utils import benchmark

from hf_distill import DataCollatorForDistillation, distillation_loss
from hf_distill.data.logit_columns import BatchLogitsCollator, LogitColumns


def cpu_ms(stmt: str, **env: object) -> float:
    """Median CPU milliseconds of ``stmt`` (``benchmark.Timer`` with ``time.process_time``)."""
    import time

    timer = benchmark.Timer(stmt, globals=env, num_threads=1, timer=time.process_time)
    return timer.blocked_autorange(min_run_time=1.0).median * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--chunk_rows", type=int, default=64, help="rows per Arrow chunk of the cache file")
    parser.add_argument("--output", type=Path)
    cli = parser.parse_args()
    torch.set_num_threads(1)
    g = np.random.default_rng(0)
    c, b, v = cli.classes, cli.batch_size, cli.views
    indices = g.permutation(cli.rows)[:b].tolist()
    datasets = {
        "full float32": (g.standard_normal((cli.rows, c), np.float32), List(Value("float32"), length=c)),
        "full float16": (g.standard_normal((cli.rows, c)).astype(np.float16), List(Value("float16"), length=c)),
        f"{v} views float32": (
            g.standard_normal((cli.rows, v, c), np.float32),
            List(List(Value("float32"), length=c), length=v),
        ),
    }
    results = {}
    for name, (values, feature) in datasets.items():
        data = Dataset.from_dict({"teacher_logits": values}, features=Features({"teacher_logits": feature}))
        columns = LogitColumns(data, ["teacher_logits"])
        results[f"read {name}, Arrow (LogitColumns)"] = cpu_ms(
            "np.stack([row['teacher_logits'] for row in columns.__getitems__(indices)])",
            np=np,
            columns=columns,
            indices=indices,
        )
        results[f"read {name}, Python lists"] = cpu_ms(
            "torch.tensor([row['teacher_logits'] for row in data.__getitems__(indices)])",
            torch=torch,
            data=data,
            indices=indices,
        )
    results.update(gather_costs(g, cli.rows, c, indices, cli.chunk_rows))
    results.update(collate_costs(g, cli.rows, c, indices))
    student = torch.randn(b, c, requires_grad=True)
    teacher, labels = torch.randn(b, c), torch.randint(0, c, (b,))
    results["loss: cross-entropy, forward + backward"] = cpu_ms(
        "F.cross_entropy(student, labels).backward()", F=F, student=student, labels=labels
    )
    results["loss: distillation_loss(alpha=0.5, T=2), forward + backward"] = cpu_ms(
        "distillation_loss(student, teacher, labels, alpha=0.5, temperature=2.0).loss.backward()",
        distillation_loss=distillation_loss,
        student=student,
        teacher=teacher,
        labels=labels,
    )
    print("| part | CPU ms per batch |\n|---|---|")
    for name, ms in results.items():
        print(f"| {name} | {ms:.2f} |")
    if cli.output:
        cli.output.parent.mkdir(parents=True, exist_ok=True)
        args = {k: str(val) if isinstance(val, Path) else val for k, val in vars(cli).items()}
        cli.output.write_text(json.dumps({"args": args, "cpu_ms_per_batch": results}, indent=2) + "\n")


def cache_of_chunks(values: np.ndarray, chunk_rows: int, path: str) -> Dataset:
    """``values`` as a ``teacher_logits`` column (beside a ``row`` number) in a cache file that ``map`` writes in
    chunks of ``chunk_rows`` rows, as `precompute_teacher_logits` and `datasets` do."""
    features = Features({"row": Value("int64"), "teacher_logits": List(Value("float32"), length=values.shape[1])})
    return Dataset.from_dict({"row": range(len(values))}).map(
        lambda batch: {"teacher_logits": values[batch["row"]]},
        batched=True,
        batch_size=chunk_rows,
        writer_batch_size=chunk_rows,
        features=features,
        cache_file_name=path,
    )


def gather_costs(
    g: np.random.Generator, rows: int, classes: int, indices: list[int], chunk_rows: int
) -> dict[str, float]:
    """`LogitColumns.take` of a batch from an in-memory column of one chunk and from a cache file written in chunks
    of ``chunk_rows`` rows."""
    values = g.standard_normal((rows, classes), np.float32)
    one = Dataset.from_dict(
        {"teacher_logits": values}, features=Features({"teacher_logits": List(Value("float32"), length=classes)})
    )
    with tempfile.TemporaryDirectory() as folder:
        cached = cache_of_chunks(values, chunk_rows, f"{folder}/logits.arrow")
        chunks = cached.data.table.column("teacher_logits").num_chunks
        return {
            "gather logits, one chunk": cpu_ms(
                "columns.take(indices)", columns=LogitColumns(one, ["teacher_logits"]), indices=indices
            ),
            f"gather logits, cache file of {chunks} chunks": cpu_ms(
                "columns.take(indices)", columns=LogitColumns(cached, ["teacher_logits"]), indices=indices
            ),
        }


def collate_costs(g: np.random.Generator, rows: int, classes: int, indices: list[int]) -> dict[str, float]:
    """`DataCollatorForDistillation` on a batch of token ids (8 to 32 per row) without logits, with per-row logits,
    and with the logits as one gathered array."""
    ids = [g.integers(5, 1000, n).tolist() for n in g.integers(8, 33, rows)]
    logits = g.standard_normal((rows, classes), np.float32)
    features = Features({"input_ids": List(Value("int64")), "teacher_logits": List(Value("float32"), length=classes)})
    data = Dataset.from_dict({"input_ids": ids, "teacher_logits": logits}, features=features)
    plain, per_row = data.remove_columns("teacher_logits"), LogitColumns(data, ["teacher_logits"])
    collator = DataCollatorForDistillation()
    batched = LogitColumns(data, ["teacher_logits"])
    batch_collator = BatchLogitsCollator(collator, batched)
    batch_collator(batched.__getitems__(indices))  # the first batch switches the dataset to whole-batch arrays
    env = {"collator": collator, "batch_collator": batch_collator, "indices": indices}
    return {
        "collate token ids, no logits": cpu_ms("collator(plain.__getitems__(indices))", plain=plain, **env),
        "collate token ids + per-row logits": cpu_ms(
            "collator(per_row.__getitems__(indices))", per_row=per_row, **env
        ),
        "collate token ids + logits as one array": cpu_ms(
            "batch_collator(batched.__getitems__(indices))", batched=batched, **env
        ),
    }


if __name__ == "__main__":
    main()
