"""learning_curves.md: each grid cell's validation metric per epoch (mean +- std over seeds) from the trials'
trainer_state.json, written by the sweep report."""

import json
from pathlib import Path

import yaml

from hf_distill.cli import main as cli_main
from hf_distill.workflow.sweep import METRICS_FILE, TRIAL_FILE, SweepConfig, collect_results, write_report

# eval_accuracy at epochs 1, 2, 3 per (arm, seed). Means: ce 0.55, 0.70, 0.725 (best 3); kd 0.75, 0.90, 0.75 (best 2).
ACCURACY = {
    ("ce", 1): [0.5, 0.6, 0.7],
    ("ce", 2): [0.6, 0.8, 0.75],
    ("kd", 1): [0.7, 0.9, 0.8],
    ("kd", 2): [0.8, 0.9, 0.7],
}


def log_history(accuracies: list[float]) -> list[dict]:
    """A Trainer's log_history for ``eval_strategy: epoch``: training logs, one evaluation per epoch, the training
    summary, then an evaluation of the best model at the last epoch (not part of the curve)."""
    history = []
    for epoch, accuracy in enumerate(accuracies, start=1):
        history.append({"epoch": epoch - 0.5, "loss": 1.0 / epoch, "step": 4 * epoch - 2})
        history.append(
            {"epoch": float(epoch), "eval_accuracy": accuracy, "eval_loss": 1 - accuracy, "step": 4 * epoch}
        )
    history.append({"epoch": float(len(accuracies)), "train_loss": 0.5, "train_runtime": 1.0})
    history.append({"epoch": float(len(accuracies)), "eval_accuracy": 0.99, "eval_loss": 0.01})
    return history


def fake_trial(config: SweepConfig, params: dict, history: list[dict] | None) -> None:
    """A finished trial's folder, with a trainer_state.json holding ``history`` (none when ``history`` is None)."""
    trial_dir = config.trial_dir(params)
    trial_dir.mkdir(parents=True)
    (trial_dir / TRIAL_FILE).write_text(json.dumps({"params": params, "wall_seconds": 1.0}))
    (trial_dir / METRICS_FILE).write_text(json.dumps({"eval_accuracy": 0.99, "eval_loss": 0.01}))
    if history is not None:
        (trial_dir / "trainer_state.json").write_text(json.dumps({"global_step": 12, "log_history": history}))


def study(tmp_path: Path, **keys) -> SweepConfig:
    return SweepConfig(
        script="x.py",
        output_dir=str(tmp_path / "sweep"),
        grid={"arm": {"ce": {"alpha": 1.0}, "kd": {"alpha": 0.5}}, "seed": [1, 2, 3]},
        **keys,
    )


def curves_of(config: SweepConfig, seed3: dict[str, list[dict] | None] | None = None) -> str:
    """The learning_curves.md of a report over the ACCURACY trials (and ``seed3``'s histories for seed 3)."""
    for (arm, seed), accuracies in ACCURACY.items():
        fake_trial(config, {"arm": arm, "seed": seed}, log_history(accuracies))
    for arm, history in (seed3 or {}).items():
        fake_trial(config, {"arm": arm, "seed": 3}, history)
    write_report(config, collect_results(config), log=lambda *_: None)
    return (Path(config.output_dir) / "learning_curves.md").read_text()


def test_curves_are_mean_and_std_per_cell_and_epoch_with_the_best_epoch(tmp_path):
    table = curves_of(study(tmp_path))
    assert "Validation eval_accuracy per epoch" in table and "best epoch: the highest mean" in table
    assert "| arm | n | epoch 1 | epoch 2 | epoch 3 | best epoch |" in table
    assert "| ce | 2 | 0.5500 +- 0.0707 | 0.7000 +- 0.1414 | 0.7250 +- 0.0354 | 3 |" in table
    assert "| kd | 2 | 0.7500 +- 0.0707 | 0.9000 +- 0.0000 | 0.7500 +- 0.0707 | 2 |" in table


def test_a_loss_curve_picks_the_lowest_epoch(tmp_path):
    table = curves_of(study(tmp_path, objective="eval_loss"))  # curve_metric defaults to an eval_* objective
    assert "Validation eval_loss per epoch" in table and "best epoch: the lowest mean" in table
    assert "| ce | 2 | 0.4500 +- 0.0707 | 0.3000 +- 0.1414 | 0.2750 +- 0.0354 | 3 |" in table
    assert "| kd | 2 | 0.2500 +- 0.0707 | 0.1000 +- 0.0000 | 0.2500 +- 0.0707 | 2 |" in table
    # control: a non-eval objective falls back to eval_accuracy, and curve_metric overrides the default
    assert study(tmp_path, objective="test_accuracy").curve_metric == "eval_accuracy"
    assert study(tmp_path, objective="eval_loss", curve_metric="eval_accuracy").curve_metric == "eval_accuracy"


def test_trials_without_curves_are_skipped(tmp_path):
    steps_only = [{"epoch": 0.5, "eval_accuracy": 0.1}, {"epoch": 1.5, "eval_accuracy": 0.1}]
    table = curves_of(study(tmp_path), seed3={"ce": None, "kd": steps_only})
    # the same rows as without the seed-3 trials: n = 2 and the same means
    assert "| ce | 2 | 0.5500 +- 0.0707 | 0.7000 +- 0.1414 | 0.7250 +- 0.0354 | 3 |" in table
    assert "| kd | 2 | 0.7500 +- 0.0707 | 0.9000 +- 0.0000 | 0.7500 +- 0.0707 | 2 |" in table


def test_cells_with_fewer_epochs_leave_the_later_ones_empty(tmp_path):
    config = SweepConfig(script="x.py", output_dir=str(tmp_path / "sweep"), grid={"num_train_epochs": [2, 3]})
    fake_trial(config, {"num_train_epochs": 2}, log_history([0.6, 0.5]))
    fake_trial(config, {"num_train_epochs": 3}, log_history([0.6, 0.7, 0.8]))
    write_report(config, collect_results(config), log=lambda *_: None)
    table = (Path(config.output_dir) / "learning_curves.md").read_text()
    assert "| 2 | 1 | 0.6000 | 0.5000 | - | 1 |" in table
    assert "| 3 | 1 | 0.6000 | 0.7000 | 0.8000 | 3 |" in table


def test_no_curves_no_file_and_a_line_saying_why(tmp_path):
    config = study(tmp_path)
    for arm, seed in ACCURACY:
        fake_trial(config, {"arm": arm, "seed": seed}, None)
    lines = []
    write_report(config, collect_results(config), log=lines.append)
    assert not (Path(config.output_dir) / "learning_curves.md").exists()
    assert any("eval_strategy: epoch" in line and "learning_curves.md" in line for line in lines)
    assert (Path(config.output_dir) / "results.md").is_file()  # control: the rest of the report is written


def test_report_only_prints_and_writes_the_curves(tmp_path, capsys):
    config = study(tmp_path)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"script": "x.py", "output_dir": config.output_dir, "grid": config.grid}))
    config = SweepConfig.from_yaml(path)
    for (arm, seed), accuracies in ACCURACY.items():
        fake_trial(config, {"arm": arm, "seed": seed}, log_history(accuracies))
    assert cli_main(["sweep", str(path), "--report_only"]) == 0
    row = "| kd | 2 | 0.7500 +- 0.0707 | 0.9000 +- 0.0000 | 0.7500 +- 0.0707 | 2 |"
    out = capsys.readouterr().out
    assert row in out and "learning_curves.md" in out.splitlines()[-1]
    assert row in (Path(config.output_dir) / "learning_curves.md").read_text()
