"""Plain fine-tuning and precomputed distillation, one training step each in turn, in one process: the paired
difference per step is steadier on a shared machine than whole runs apart (`distillation_throughput.py`).

Each step reads its batch from the trainer's own dataloader, then runs `training_step` and the optimizer; the CPU time
of each (``time.process_time``, one torch thread) is kept, and the first ``--skip`` steps of each are dropped. For
steadier numbers, stop glibc returning memory between steps:

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 OMP_NUM_THREADS=1 \\
        taskset -c 0 python benchmarks/paired_steps.py --steps 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator

import numpy as np
import torch
from distillation_throughput import SHAPES, Benchmark


def forever(dataloader) -> Iterator[dict]:
    while True:
        yield from dataloader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="text-1000-classes", choices=[s.name for s in SHAPES["cpu"]])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip", type=int, default=10)
    cli = parser.parse_args()
    if not 0 <= cli.skip < cli.steps:
        parser.error(f"--skip ({cli.skip}) must be >= 0 and below --steps ({cli.steps}): the kept steps are timed.")
    torch.set_num_threads(1)
    shape = next(s for s in SHAPES["cpu"] if s.name == cli.task)
    options = argparse.Namespace(
        device="cpu", teacher_dtype="auto", bf16=False, teacher_compile=False, warmup_steps=0, steps=cli.steps
    )
    with tempfile.TemporaryDirectory() as workdir:
        bench = Benchmark(shape, options, workdir)
        runs = {}
        for mode in ("ce", "kd_precomputed"):
            trainer = bench.trainer(mode)
            trainer.create_optimizer_and_scheduler(num_training_steps=cli.steps)
            trainer.model.train()
            trainer.current_gradient_accumulation_steps = 1
            runs[mode] = (trainer, forever(trainer.get_train_dataloader()))
        seconds = {mode: [] for mode in runs}
        for step in range(cli.steps):
            for mode in runs if step % 2 == 0 else reversed(runs):
                trainer, batches = runs[mode]
                start = time.process_time()
                trainer.training_step(trainer.model, trainer._prepare_inputs(next(batches)), None)
                trainer.optimizer.step()
                trainer.optimizer.zero_grad()
                seconds[mode].append(time.process_time() - start)
    ce, kd = (np.array(seconds[mode][cli.skip :]) * 1e3 for mode in ("ce", "kd_precomputed"))
    print(
        f"{cli.task}: ce {np.median(ce):.2f} ms, kd_precomputed {np.median(kd):.2f} ms per step (medians); "
        f"paired difference {np.median(kd - ce):.3f} ms (quartiles {np.percentile(kd - ce, 25):.3f} to "
        f"{np.percentile(kd - ce, 75):.3f}); median-step ratio {np.median(ce) / np.median(kd):.4f}"
    )


if __name__ == "__main__":
    main()
