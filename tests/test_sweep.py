"""The sweep runner: resumable Optuna grid over recipe flags, with tables equal to the trials' own metric files."""

import itertools
import json
import sys
import textwrap
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from scipy.stats import ttest_rel

from hf_distill.cli import main as cli_main
from hf_distill.sweep import SweepConfig, collect_results, paired_differences, run_sweep, runs_table, summarize

# A stand-in recipe: parses --flag value pairs, logs its call, writes all_results.json like train_evaluate_publish.
FAKE_RECIPE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    flags = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    out = Path(flags["--output_dir"])
    if out.is_dir() and any(out.iterdir()) and flags.get("--overwrite_output_dir") != "true":
        sys.exit("refusing a non-empty output_dir, as the recipes do")
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent.parent / "calls.txt", "a") as calls:
        calls.write(out.name + "\\n")
    if flags.get("--crash") == "true":
        sys.exit(3)
    accuracy = 0.5 + 0.1 * float(flags["--alpha"]) + 0.01 * int(flags["--seed"])
    (out / "all_results.json").write_text(json.dumps({"eval_accuracy": accuracy, "train_loss": 1 - accuracy}))
    """
)


@pytest.fixture
def config(tmp_path) -> SweepConfig:
    script = tmp_path / "fake_recipe.py"
    script.write_text(FAKE_RECIPE)
    return SweepConfig(
        script=str(script),
        output_dir=str(tmp_path / "sweep"),
        args={"do_train": True},
        grid={"arm": {"ce": {"alpha": 1.0}, "kd": {"alpha": 0.5}}, "seed": [1, 2, 3]},
        metrics=["eval_accuracy", "train_loss"],
    )


def fields(config: SweepConfig) -> dict:
    return {name: getattr(config, name) for name in SweepConfig.__dataclass_fields__}


def calls(config: SweepConfig) -> list[str]:
    path = Path(config.output_dir) / "calls.txt"
    return path.read_text().split() if path.exists() else []


def test_sweep_runs_every_trial_and_tables_equal_metric_files(config):
    results = run_sweep(config, log=lambda *_: None)
    assert len(calls(config)) == 6 and len(results) == 6
    for _, row in results.iterrows():
        own = json.loads((config.trial_dir({"arm": row["arm"], "seed": row["seed"]}) / "all_results.json").read_text())
        assert row["eval_accuracy"] == own["eval_accuracy"] and row["train_loss"] == own["train_loss"]
    on_disk = pd.read_csv(Path(config.output_dir) / "results.csv")
    pd.testing.assert_series_equal(on_disk["eval_accuracy"], results["eval_accuracy"])
    mean, std, size = summarize(results, ["arm"], ["eval_accuracy"])
    assert mean.loc["kd", "eval_accuracy"] == pytest.approx(0.55 + 0.02)
    assert std.loc["ce", "eval_accuracy"] == pytest.approx(0.01)
    assert size["ce"] == 3
    table = (Path(config.output_dir) / "results.md").read_text()
    assert "| ce | 3 | 0.6200 +- 0.0100 |" in table
    assert (Path(config.output_dir) / "results.png").stat().st_size > 0
    study = optuna.load_study(study_name=config.study_name, storage=f"sqlite:///{config.output_dir}/study.db")
    assert sorted(t.value for t in study.trials) == sorted(results["eval_accuracy"])


def test_sweep_skips_finished_trials(config):
    run_sweep(config, log=lambda *_: None)
    run_sweep(config, log=lambda *_: None)
    assert len(calls(config)) == 6
    grid = {"arm": {"ce": {"alpha": 1.0}, "kd": {"alpha": 0.5}}, "seed": [1, 2, 3, 4]}
    bigger = SweepConfig(**{**fields(config), "grid": grid, "study": "sweep4"})
    results = run_sweep(bigger, log=lambda *_: None)
    assert len(results) == 8 and len(calls(config)) == 8  # a bigger grid adopts the 6 finished trials, runs 2
    study = optuna.load_study(study_name=bigger.study_name, storage=f"sqlite:///{config.output_dir}/study.db")
    assert sum(bool(t.user_attrs.get("adopted")) for t in study.trials) == 6


def test_sweep_reruns_a_killed_trial(config):
    import optuna

    Path(config.output_dir).mkdir(parents=True)
    study = optuna.create_study(
        study_name=config.study_name,
        storage=f"sqlite:///{config.output_dir}/study.db",
        sampler=optuna.samplers.GridSampler(config.search_space, seed=0),
        direction="maximize",
    )
    killed = study.ask()  # a sweep killed while this trial ran: RUNNING forever in the database
    params = {name: killed.suggest_categorical(name, values) for name, values in config.search_space.items()}
    killed_dir = config.trial_dir(params)
    killed_dir.mkdir(parents=True)
    (killed_dir / "all_results.json").write_text('{"train_loss": 9}')  # partial metrics of the killed run
    results = run_sweep(config, log=lambda *_: None)
    assert sorted(calls(config)) == sorted(config.trial_dir(p).name for p in config.points())
    assert len(results) == 6 and 9 not in results["train_loss"].tolist()
    states = [t.state for t in optuna.load_study(study_name=config.study_name, storage=study._storage).trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1 and states.count(optuna.trial.TrialState.COMPLETE) == 6


def test_failed_trial_is_reported_and_retried(config):
    grid = {"arm": {"ce": {"alpha": 1.0}, "bad": {"alpha": 0.0, "crash": True}}, "seed": [1, 2, 3]}
    crashing = SweepConfig(**{**fields(config), "grid": grid})
    with pytest.raises(RuntimeError, match="3 trial"):
        run_sweep(crashing, log=lambda *_: None)
    assert len(collect_results(crashing)) == 3
    grid = {"arm": {"ce": {"alpha": 1.0}, "bad": {"alpha": 0.0, "crash": False}}, "seed": [1, 2, 3]}
    fixed = SweepConfig(**{**fields(config), "grid": grid})
    assert len(run_sweep(fixed, log=lambda *_: None)) == 6
    assert len(calls(config)) == 9


def test_cli_sweep_and_table(config, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**fields(config), "grid": {"arm": config.flag_sets["arm"], "seed": [1, 2, 3]}}))
    assert cli_main(["sweep", str(path)]) == 0
    assert "[6/6]" in capsys.readouterr().out
    trial = config.trial_dir({"arm": "kd", "seed": 1})
    assert cli_main(["sweep-table", f"kd={trial}", "--metrics", "eval_accuracy"]) == 0
    assert "| kd | 1 | 0.5600 |" in capsys.readouterr().out
    runs = [f"{arm}={config.trial_dir({'arm': arm, 'seed': seed})}" for arm in ("kd", "ce") for seed in (1, 2, 3)]
    assert cli_main(["sweep-table", *runs, "--metrics", "eval_accuracy"]) == 0
    out = capsys.readouterr().out
    assert "| ce | 3 | 0.6200 +- 0.0100 |" in out and "kd - ce: eval_accuracy -0.0500 (Welch t-test p = 0.00" in out


def test_snapshot_grid_and_bad_configs(tmp_path):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    records = [{"path": str(teacher / f"checkpoint-{s}"), "eval_accuracy": a} for s, a in [(1, 0.6), (2, 0.7)]]
    (teacher / "snapshots.json").write_text(json.dumps(records))
    config = SweepConfig(
        script="x.py", output_dir=str(tmp_path), grid={"teacher_model_name_or_path": {"snapshots": str(teacher)}}
    )
    assert config.points() == [{"teacher_model_name_or_path": r["path"]} for r in records]
    assert config.command(config.points()[0])[:2] == [sys.executable, "x.py"]
    with pytest.raises(ValueError, match="non-empty list"):
        SweepConfig(script="x.py", output_dir=str(tmp_path), grid={"seed": []})
    with pytest.raises(ValueError, match="snapshots.json"):
        SweepConfig(script="x.py", output_dir=str(tmp_path), grid={"t": {"snapshots": str(tmp_path / "none")}})
    with pytest.raises(ValueError, match="does not exist"):
        run_sweep(config)
    with pytest.raises(ValueError, match="Name each run"):
        runs_table([str(tmp_path)], ["eval_accuracy"])


def test_report_pairs_each_cell_with_its_baseline_seed_by_seed(tmp_path):
    rows = []
    for ratio, recovery, seed in itertools.product(["50", "75"], ["ce", "kd"], [1, 2, 3]):
        accuracy = 0.6 + 0.05 * seed + (0.01 * seed if recovery == "kd" else 0.0) - (0.1 if ratio == "75" else 0.0)
        rows.append({"ratio": ratio, "recovery": recovery, "seed": seed, "eval_accuracy": accuracy})
    results = pd.DataFrame(rows)
    table = paired_differences(results, ["ratio", "recovery"], {"recovery": "ce"}, ["eval_accuracy"])
    expected_p = ttest_rel([0.66, 0.72, 0.78], [0.65, 0.7, 0.75]).pvalue
    assert f"| 50 | kd | 3 | 0.0200 +- 0.0100 ({expected_p:.2g}) |" in table  # the seed effect (0.05) cancels
    assert f"| 75 | kd | 3 | 0.0200 +- 0.0100 ({expected_p:.2g}) |" in table  # compared within its own ratio
    assert "| 50 | ce |" not in table
    with pytest.raises(ValueError, match="baseline"):
        SweepConfig(script="x.py", output_dir=str(tmp_path), grid={"arm": [1, 2], "seed": [1]}, baseline={"arm": 3})
