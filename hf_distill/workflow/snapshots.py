"""Per-epoch teacher checkpoints and their scores, to pick an early-stopped teacher.

Cho & Hariharan, "On the Efficacy of Knowledge Distillation" (2019): an early-stopped teacher often teaches better
than the fully trained one, so `recipes/train_teacher.py` keeps a checkpoint per epoch.
"""

from __future__ import annotations

import json
from pathlib import Path


def teacher_snapshots(output_dir: str | Path) -> list[dict]:
    """One record per ``checkpoint-*`` folder: path, step, epoch and the last ``eval_*`` metrics logged by then."""
    records = []
    for checkpoint in Path(output_dir).glob("checkpoint-*"):
        state_file = checkpoint / "trainer_state.json"
        if not state_file.is_file():
            continue
        state = json.loads(state_file.read_text())
        evals = [entry for entry in state["log_history"] if "eval_loss" in entry]
        metrics = {k: v for k, v in (evals[-1] if evals else {}).items() if k.startswith("eval_")}
        records.append({"path": str(checkpoint), "step": state["global_step"], "epoch": state["epoch"], **metrics})
    return sorted(records, key=lambda record: record["step"])


def write_snapshots(output_dir: str | Path) -> list[dict]:
    """Write :func:`teacher_snapshots` of ``output_dir`` to ``output_dir/snapshots.json`` and return them."""
    snapshots = teacher_snapshots(output_dir)
    (Path(output_dir) / "snapshots.json").write_text(json.dumps(snapshots, indent=2))
    return snapshots
