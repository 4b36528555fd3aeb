"""One-off: ChunkedColumn.take of 2729d78 (a gather per chunk) against this commit's (one gather from the shared
buffer), alternated in one process on a cache file written in 20000-, 1000- and 64-row chunks.

    git worktree add /tmp/before 2729d78
    taskset -c 0 env OMP_NUM_THREADS=1 python chunk_gather_before_after.py /tmp/before
"""

import importlib.util
import sys
import tempfile

import datasets
import numpy as np
import torch.utils.benchmark as tb

from hf_distill.data.logit_columns import ChunkedColumn

spec = importlib.util.spec_from_file_location("old", f"{sys.argv[1]}/hf_distill/data/logit_columns.py")
old_module = importlib.util.module_from_spec(spec)
sys.modules["hf_distill.data.old_logit_columns"] = old_module
old_module.__package__ = "hf_distill.data"
spec.loader.exec_module(old_module)

rng = np.random.default_rng(0)
rows, classes = 20000, 1000
values = rng.standard_normal((rows, classes), dtype=np.float32)
features = datasets.Features(
    {"id": datasets.Value("int64"), "t": datasets.List(datasets.Value("float32"), length=classes)}
)
with tempfile.TemporaryDirectory() as folder:
    for chunk_rows in (20000, 1000, 64):
        data = datasets.Dataset.from_dict({"id": range(rows)}).map(
            lambda batch: {"t": values[batch["id"]]},
            batched=True,
            batch_size=chunk_rows,
            writer_batch_size=chunk_rows,
            features=features,
            cache_file_name=f"{folder}/c{chunk_rows}.arrow",
        )
        table = data.data.table
        readers = {"before": old_module.ChunkedColumn(table, "t"), "after": ChunkedColumn(table, "t")}
        batches = [rng.integers(0, rows, 256) for _ in range(32)]
        assert np.array_equal(readers["before"].take(batches[0]), readers["after"].take(batches[0]))
        for name, reader in readers.items():
            step = iter(range(10**9))
            timer = tb.Timer(
                "reader.take(batches[next(step) % 32])", globals=dict(reader=reader, batches=batches, step=step)
            )
            median = timer.blocked_autorange(min_run_time=1).median * 1e6
            print(f"{table.column('t').num_chunks:5d} chunks, {name:6s}: {median:7.1f} us per batch of 256")
