"""One-off: ChunkedColumn.take of 2729d78 (a gather per chunk) against this commit's (one gather from the shared
buffer), alternated in one process on a cache file written in 20000-, 1000- and 64-row chunks.

    git worktree add /tmp/before 2729d78
    taskset -c 0 env OMP_NUM_THREADS=1 python chunk_gather_before_after.py /tmp/before
"""

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch.utils.benchmark as tb

from hf_distill.data.logit_columns import ChunkedColumn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from logit_path_costs import cache_of_chunks  # noqa: E402

spec = importlib.util.spec_from_file_location("old", f"{sys.argv[1]}/hf_distill/data/logit_columns.py")
old_module = importlib.util.module_from_spec(spec)
sys.modules["hf_distill.data.old_logit_columns"] = old_module
old_module.__package__ = "hf_distill.data"
spec.loader.exec_module(old_module)

rng = np.random.default_rng(0)
values = rng.standard_normal((20000, 1000), dtype=np.float32)
with tempfile.TemporaryDirectory() as folder:
    for chunk_rows in (20000, 1000, 64):
        data = cache_of_chunks(values, chunk_rows, f"{folder}/c{chunk_rows}.arrow")
        table = data.data.table
        readers = {
            "before": old_module.ChunkedColumn(table, "teacher_logits"),
            "after": ChunkedColumn(table, "teacher_logits"),
        }
        batches = [rng.integers(0, len(values), 256) for _ in range(32)]
        assert np.array_equal(readers["before"].take(batches[0]), readers["after"].take(batches[0]))
        for name, reader in readers.items():
            step = iter(range(10**9))
            timer = tb.Timer(
                "reader.take(batches[next(step) % 32])", globals=dict(reader=reader, batches=batches, step=step)
            )
            median = timer.blocked_autorange(min_run_time=1).median * 1e6
            print(
                f"{table.column('teacher_logits').num_chunks:5d} chunks, {name:6s}: {median:7.1f} us per batch of 256"
            )
