"""A sweep's learning curves: each grid cell's validation metric per epoch, mean +- std over seeds.

A study's budget is justified by its CE cells' curves (the budget where validation accuracy stops rising). A trial run
with ``eval_strategy: epoch`` leaves ``trainer_state.json`` (``trainer.save_state()``), whose ``log_history`` holds one
evaluation per epoch; ``learning_curves.md`` tables them over the grid (:func:`hf_distill.workflow.sweep.write_report`) as ``results.md`` tables the final metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

STATE_FILE = "trainer_state.json"
EPOCH = "epoch "


def epoch_curve(trial_dir: Path, metric: str) -> dict[int, float]:
    """``metric`` at each whole epoch in the trial's ``trainer_state.json`` (empty without the file or without such
    evaluations). The first evaluation at an epoch is kept: a later one at the same epoch (the best model evaluated
    after training) is not part of the curve."""
    path = trial_dir / STATE_FILE
    if not path.is_file():
        return {}
    curve: dict[int, float] = {}
    for entry in json.loads(path.read_text()).get("log_history", []):
        epoch = entry.get("epoch")
        if metric in entry and epoch is not None and abs(epoch - round(epoch)) < 1e-6:
            curve.setdefault(round(epoch), entry[metric])
    return curve


def learning_curves(trials: Iterable[tuple[dict[str, Any], Path]], metric: str) -> pd.DataFrame:
    """One row per trial (its parameters and folder) with a curve: its parameters and one ``epoch N`` column of
    ``metric`` per epoch, in epoch order."""
    rows = []
    for params, trial_dir in trials:
        curve = epoch_curve(trial_dir, metric)
        if curve:
            rows.append({**params, **{f"{EPOCH}{epoch}": value for epoch, value in curve.items()}})
    curves = pd.DataFrame(rows)
    epochs = sorted((c for c in curves.columns if c.startswith(EPOCH)), key=lambda c: int(c.removeprefix(EPOCH)))
    return curves[[c for c in curves.columns if c not in epochs] + epochs]
