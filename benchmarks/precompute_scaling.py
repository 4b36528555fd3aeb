"""Wall time, rows per second, peak resident memory and bytes on disk of `precompute_teacher_logits` as rows grow.

Each (rows, storage) run is a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own: it memory-maps a synthetic
dataset of random token ids (lengths drawn from 8 to ``--max_length``, written once per size to an Arrow file with
pyarrow, outside the measured process), builds a tiny BERT teacher from a config (random weights), and times
``precompute_teacher_logits(..., load_from_cache_file=False)``, which writes its cache file next to the data. Reported
per run: wall and CPU seconds (the CPU time of this process, which other jobs on a shared machine do not inflate),
rows/s, peak RSS, and the growth during the call of the anonymous (heap) resident memory and of the file-backed one
(pages of memory-mapped Arrow files, which the kernel can drop), sampled every 20 ms; the logits columns' Arrow bytes
per row and the cache file's bytes per row on disk (the cache file holds the input columns too).

    python benchmarks/precompute_scaling.py --rows 10000 100000 1000000 --output benchmarks/results/precompute_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

STORAGES = {
    "full float32": {},
    "full float16": {"dtype": "float16"},
    "top-10 float16": {"top_k": 10, "temperature": 1.0},
}


def write_data(path: Path, rows: int, max_length: int, vocab_size: int, chunk: int = 100_000) -> None:
    """``rows`` random token sequences in an Arrow stream file (the format `Dataset.from_file` memory-maps)."""
    g = np.random.default_rng(0)
    schema = pa.schema({"input_ids": pa.list_(pa.int32())})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for start in range(0, rows, chunk):
            lengths = g.integers(8, max_length + 1, min(chunk, rows - start))
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            ids = pa.array(g.integers(5, vocab_size, offsets[-1]).astype(np.int32))
            writer.write_batch(pa.record_batch([pa.ListArray.from_arrays(pa.array(offsets), ids)], schema=schema))


def proc_status_bytes(*fields: str) -> list[int]:
    values = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return [int(values[field].split()[0]) * 1024 for field in fields]


class PeakRss(threading.Thread):
    """Samples the anonymous (heap) and file-backed (memory-mapped Arrow files) resident memory every 20 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_anon = self.peak_file = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            anon, file = proc_status_bytes("RssAnon", "RssFile")
            self.peak_anon, self.peak_file = max(self.peak_anon, anon), max(self.peak_file, file)


def measure(data_file: str, storage: str, cli: argparse.Namespace) -> dict:
    """One precomputation in this process (run in a subprocess by ``main``)."""
    import torch
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification

    from hf_distill import precompute_teacher_logits

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=cli.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=cli.max_length, num_labels=cli.num_labels,
    )  # fmt: skip
    teacher = BertForSequenceClassification(config).eval()
    data = Dataset.from_file(data_file)
    anon_before, file_before = proc_status_bytes("RssAnon", "RssFile")
    sampler = PeakRss()
    sampler.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = precompute_teacher_logits(
        teacher, data, batch_size=cli.batch_size, device="cpu", load_from_cache_file=False, **STORAGES[storage]
    )
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    sampler.done.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stored = [c for c in result.column_names if c.startswith("teacher_logits")]
    cache = [f["filename"] for f in result.cache_files if f["filename"] != data_file]
    return {
        "rows": len(result),
        "storage": storage,
        "seconds": seconds,
        "rows_per_s": len(result) / seconds,
        "cpu_seconds": cpu_seconds,
        "rows_per_cpu_s": len(result) / cpu_seconds,
        "peak_rss_mib": peak / 2**20,
        "anon_rss_growth_mib": (sampler.peak_anon - anon_before) / 2**20,
        "file_rss_growth_mib": (sampler.peak_file - file_before) / 2**20,
        "logits_bytes_per_row": sum(result.data.column(c).nbytes for c in stored) / len(result),
        "cache_file_bytes_per_row": sum(os.path.getsize(f) for f in cache) / len(result),
        "data_file_bytes_per_row": os.path.getsize(data_file) / len(result),
        "torch_threads": torch.get_num_threads(),
    }


def markdown_table(runs: list[dict]) -> str:
    lines = [
        "| rows | storage | wall s | rows / s | CPU s | rows / CPU s | peak RSS MiB | heap growth MiB | mapped-file growth "
        "MiB | logits bytes / row | cache file bytes / row |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['rows']:,} | {r['storage']} | {r['seconds']:.1f} | {r['rows_per_s']:,.0f} | {r['cpu_seconds']:.1f} | "
            f"{r['rows_per_cpu_s']:,.0f} | {r['peak_rss_mib']:.0f} | {r['anon_rss_growth_mib']:.0f} | "
            f"{r['file_rss_growth_mib']:.0f} | {r['logits_bytes_per_row']:.0f} | {r['cache_file_bytes_per_row']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--storages", nargs="+", choices=sorted(STORAGES), default=sorted(STORAGES))
    parser.add_argument("--storage_rows", type=int, default=100_000, help="rows of the runs of the other storages")
    parser.add_argument("--num_labels", type=int, default=100)
    parser.add_argument("--max_length", type=int, default=16)
    parser.add_argument("--vocab_size", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--table", type=Path, help="only print the markdown table of this results JSON")
    parser.add_argument("--measure", nargs=2, metavar=("DATA_FILE", "STORAGE"), help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.table:
        print(markdown_table(json.loads(cli.table.read_text())["runs"]))
        return
    if cli.measure:
        print(json.dumps(measure(*cli.measure, cli)))
        return
    runs = [(rows, "full float32") for rows in cli.rows]
    runs += [(cli.storage_rows, storage) for storage in cli.storages if storage != "full float32"]
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for rows, storage in runs:
            data_file = Path(workdir) / f"data-{rows}.arrow"
            if not data_file.exists():
                write_data(data_file, rows, cli.max_length, cli.vocab_size)
            options = [f"--{k}={v}" for k, v in vars(cli).items() if k in ("num_labels", "max_length", "vocab_size")]
            command = [sys.executable, __file__, *options, f"--batch_size={cli.batch_size}"]
            output = subprocess.run(
                [*command, "--measure", str(data_file), storage], check=True, capture_output=True, text=True
            ).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
            for cache in Path(workdir).glob("cache-*.arrow"):
                cache.unlink()
    print(markdown_table(results))
    if cli.output:
        cli.output.parent.mkdir(parents=True, exist_ok=True)
        args = {k: str(v) if isinstance(v, Path) else v for k, v in vars(cli).items() if k != "measure"}
        cli.output.write_text(json.dumps({"args": args, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
