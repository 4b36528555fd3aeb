"""A sweep's learning curves: each grid cell's validation metric per epoch, mean +- std over seeds.

A study's budget is justified by its CE cells' curves (the budget where validation accuracy stops rising). A trial run
with ``eval_strategy: epoch`` leaves ``trainer_state.json`` (``trainer.save_state()``), whose ``log_history`` holds one
evaluation per epoch; ``learning_curves.md`` tables them over the grid as ``results.md`` tables the final metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .sweep import SEED, SweepConfig, finished_trials, lower_is_better, summarize, summary_markdown

STATE_FILE = "trainer_state.json"
CURVES_FILE = "learning_curves.md"
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


def learning_curves(config: SweepConfig) -> pd.DataFrame:
    """One row per finished trial with a curve: its parameters and one ``epoch N`` column of ``curve_metric`` per
    epoch, in epoch order."""
    rows = []
    for params, trial_dir in finished_trials(config):
        curve = epoch_curve(trial_dir, config.curve_metric)
        if curve:
            rows.append({**params, **{f"{EPOCH}{epoch}": value for epoch, value in curve.items()}})
    curves = pd.DataFrame(rows)
    epochs = sorted((c for c in curves.columns if c.startswith(EPOCH)), key=lambda c: int(c.removeprefix(EPOCH)))
    return curves[[c for c in curves.columns if c not in epochs] + epochs]


def curves_markdown(config: SweepConfig, curves: pd.DataFrame) -> str:
    """:func:`summary_markdown` of the curves over the grid's cells (seeds pooled), plus each cell's best epoch: the
    one with the highest mean (the lowest for a loss)."""
    by = [name for name in config.search_space if name != SEED]
    epochs = [c for c in curves.columns if c.startswith(EPOCH)]
    mean, _, _ = summarize(curves, by, epochs)
    lower = lower_is_better(config.curve_metric)
    best = (mean.idxmin(axis=1) if lower else mean.idxmax(axis=1)).str.removeprefix(EPOCH)
    title = (
        f"Validation {config.curve_metric} per epoch (mean +- std over {SEED}s; n: trials with a curve; best epoch: "
        f"the {'lowest' if lower else 'highest'} mean):\n\n"
    )
    return title + summary_markdown(curves, by, epochs, extra={"best epoch": best})


def write_learning_curves(config: SweepConfig, log=print) -> Path | None:
    """Write ``output_dir/learning_curves.md`` and log its table; return its path, or ``None`` (with a line saying
    why) when no finished trial logged ``curve_metric`` per epoch."""
    curves = learning_curves(config)
    if curves.empty:
        log(
            f"No finished trial logged {config.curve_metric} per epoch in its {STATE_FILE}, so no {CURVES_FILE}: set "
            "`eval_strategy: epoch` in the config's args to record the learning curves."
        )
        return None
    table = curves_markdown(config, curves)
    path = Path(config.output_dir) / CURVES_FILE
    path.write_text(table)
    log(table)
    return path
