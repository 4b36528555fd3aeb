"""Sweeps over recipe flags: ``hf-distill sweep study.yaml``.

Each trial is an ordinary recipe run (``script`` under ``launcher``, e.g. ``accelerate launch``) in its own output
directory. The bookkeeping is an Optuna study in SQLite (``output_dir/study.db``) over the grid (``GridSampler``),
with the pending points enqueued in grid order so that an interrupted sweep leaves whole cells. It resumes where it
stopped: finished trials are skipped, a trial killed mid-run is run again, nothing finished is deleted, and
``optuna-dashboard sqlite:///output_dir/study.db`` inspects it.

A trial is identified by everything that decides its run: the script's content, the launcher and its resolved flags
(``args``, its named flag sets, ``--set`` overrides). Its folder is named by its grid values and a digest of that
identity, so two values with the same readable name never share a folder, and a changed configuration runs new
trials beside the old ones instead of reporting them. One sweep at a time runs in an ``output_dir`` (a lock file). A
trial that fails before any trial of the study has finished stops the sweep with its log's tail (a typo'd flag fails
every trial the same way), as does an ``objective`` that the finished trial did not write. Objectives named
``*loss*`` are minimised (the snapshot report names the snapshot with the lowest), others maximised. At the end every finished
trial's metric file (``all_results.json``, written by the recipe) is collected into ``results.csv``, a markdown table
of mean +- std over seeds (``results.md``) and a plot (``results.png``); trials run with ``eval_strategy: epoch`` also
give each cell's validation ``curve_metric`` per epoch (``learning_curves.md``, :mod:`.curves`; the default is the
objective when it is an ``eval_*`` metric, else ``eval_accuracy``).

A config (YAML) names the recipe, its fixed flags and a ``grid``. Each grid entry is a flag with a list of values,
a named dimension mapping names to sets of flags (``recovery: {ce: {alpha: 1.0}, kd: {alpha: 0.5}}``), or
``{snapshots: teacher_dir}``: the teacher's per-epoch checkpoints from its ``snapshots.json``, for the early-stopped
teacher study of Cho & Hariharan (2019). Trials are the grid's product; the table averages over ``seed``::

    study: alpha_temperature
    script: recipes/text_classification.py
    launcher: python                      # or: accelerate launch --num_processes 2
    output_dir: outputs/studies/alpha_temperature
    objective: eval_accuracy
    metrics: [eval_accuracy, eval_agreement]
    args: {teacher_model_name_or_path: teacher, dataset_name: tweet_sentiment, do_train: true, do_eval: true}
    grid:
      loss: {ce: {alpha: 1.0}, kd: {alpha: 0.5}}
      temperature: [1, 2, 4]
      seed: [1, 2, 3]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .curves import EPOCH, STATE_FILE, learning_curves

METRICS_FILE = "all_results.json"
TRIAL_FILE = "sweep_trial.json"
SEED = "seed"
SNAPSHOT_METRIC = "snapshot_eval_accuracy"
LOCK_FILE = "sweep.lock"
LOG_TAIL_LINES = 20
CURVES_FILE = "learning_curves.md"


@dataclass
class SweepConfig:
    """A sweep: the recipe and its fixed flags, the grid, where results go and what they report."""

    script: str
    output_dir: str
    grid: dict[str, Any]
    args: dict[str, Any] = field(default_factory=dict)
    launcher: str = "python"
    study: str = "sweep"
    objective: str = "eval_accuracy"
    metrics: list[str] = field(default_factory=list)
    plot_x: str | None = None
    baseline: dict[str, Any] | None = None
    curve_metric: str | None = None

    def __post_init__(self) -> None:
        if not self.grid:
            raise ValueError("A sweep needs a `grid`: {flag: [values]} or {dimension: {name: {flag: value}}}.")
        self.grid = dict(self.grid)
        self.flag_sets: dict[str, dict[str, dict[str, Any]]] = {}
        for name, values in self.grid.items():
            if isinstance(values, dict) and set(values) == {"snapshots"}:
                self.grid[name] = [record["path"] for record in read_snapshots(values["snapshots"])]
            elif isinstance(values, dict) and values and all(isinstance(v, dict) for v in values.values()):
                self.flag_sets[name], self.grid[name] = values, list(values)
            elif not isinstance(values, list) or not values:
                raise ValueError(
                    f"grid[{name!r}] must be a non-empty list of values or a mapping of names to flag sets, "
                    f"got {values!r}."
                )
        if "output_dir" in self.grid:
            raise ValueError("output_dir cannot be a grid flag: each trial gets its own folder under output_dir.")
        if self.plot_x is not None and self.plot_x not in self.grid:
            raise ValueError(f"plot_x={self.plot_x!r} is not a grid entry ({list(self.grid)}).")
        self.metrics = self.metrics or [self.objective]
        self.curve_metric = self.curve_metric or (
            self.objective if self.objective.startswith("eval_") else "eval_accuracy"
        )
        for name, value in (self.baseline or {}).items():
            if name == SEED or name not in self.grid or value not in self.grid[name]:
                raise ValueError(
                    f"baseline {name}={value!r} must name a value of a grid entry other than seed "
                    f"({ {k: v for k, v in self.grid.items() if k != SEED} })."
                )

    @classmethod
    def from_yaml(cls, path: str | Path, settings: Sequence[str] = (), **overrides: Any) -> SweepConfig:
        """Read a config; ``$VARS`` in strings are expanded, ``settings`` are ``dotted.key=yaml_value`` overrides
        (``args.max_train_samples=200``, ``grid.seed=[1,2]``) and ``overrides`` replace top-level keys."""
        config = yaml.safe_load(Path(path).read_text())
        if not isinstance(config, dict):
            raise ValueError(f"{path} must hold a YAML mapping with at least `script`, `output_dir` and `grid`.")
        config.update({k: v for k, v in overrides.items() if v is not None})
        for setting in settings:
            key, sep, value = setting.partition("=")
            if not sep:
                raise ValueError(f"--set takes KEY=VALUE (e.g. args.alpha=0.5), got {setting!r}.")
            *parents, last = key.split(".")
            node = config
            for parent in parents:
                node = node.setdefault(parent, {})
            node[last] = yaml.safe_load(value)
        config = _expand_vars(config)
        unknown = set(config) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown keys {sorted(unknown)} in {path}; known: {sorted(cls.__dataclass_fields__)}.")
        return cls(**config)

    @property
    def study_name(self) -> str:
        """``study`` plus a digest of every trial's identity and the direction: a changed grid, ``args``, flag set,
        script or launcher is a new Optuna study (which adopts the finished trials whose identity did not change)."""
        folders = [self.trial_dir(params).name for params in self.points()]
        return f"{self.study}-{_digest([folders, self.direction])}"

    @property
    def direction(self) -> str:
        """``minimize`` for an objective with a ``loss`` part (``eval_loss``, ``eval_loss_kd``), else ``maximize``."""
        return "minimize" if lower_is_better(self.objective) else "maximize"

    @cached_property
    def script_digest(self) -> str:
        """A digest of the script's content (of its path while it does not exist)."""
        path = Path(self.script)
        return _digest(path.read_bytes() if path.is_file() else self.script)

    @property
    def search_space(self) -> dict[str, list[Any]]:
        """Optuna's grid: every grid entry's values (the names, for named dimensions)."""
        return self.grid

    def points(self) -> list[dict[str, Any]]:
        """Every trial's parameters, in grid order."""
        space = self.search_space
        return [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]

    def flags(self, params: dict[str, Any]) -> dict[str, Any]:
        """The recipe flags of the trial at ``params`` (``args``, then each grid value or named flag set), without
        ``output_dir``."""
        flags = dict(self.args)
        for name, value in params.items():
            flags |= self.flag_sets[name][value] if name in self.flag_sets else {name: value}
        return flags

    def trial_dir(self, params: dict[str, Any]) -> Path:
        """``output_dir/trials/<flag=value,...>-<digest>``: readable, and the digest of the script's content, the
        launcher and the trial's resolved flags makes it unique to the run (values whose readable names collide, such
        as ``a/checkpoint-500`` and ``b/checkpoint-500``, get two folders; a changed configuration gets new ones)."""
        parts = [f"{name}={_slug(value)}" for name, value in params.items()]
        identity = _digest([self.script_digest, self.launcher, self.flags(params)])
        return Path(self.output_dir) / "trials" / f"{','.join(parts)}-{identity}"

    def trial_log(self, params: dict[str, Any]) -> Path:
        """The trial's log (the recipe's stdout and stderr), beside its folder."""
        trial_dir = self.trial_dir(params)
        return trial_dir.parent / f"{trial_dir.name}.log"

    def command(self, params: dict[str, Any]) -> list[str]:
        flags = {**self.flags(params), "output_dir": str(self.trial_dir(params))}
        launcher = [sys.executable] if self.launcher == "python" else shlex.split(self.launcher)
        return [*launcher, self.script, *itertools.chain.from_iterable(_flag(k, v) for k, v in flags.items())]


def lower_is_better(metric: str) -> bool:
    """Whether ``metric`` is a loss (``loss`` is one of its ``_``-separated parts), as for ``metric_for_best_model``."""
    return "loss" in metric.split("_")


def _digest(value: Any) -> str:
    """8 hex digits of the SHA-1 of ``value`` (bytes, or anything JSON can write)."""
    data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha1(data).hexdigest()[:8]


def _expand_vars(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _expand_vars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_vars(v) for v in value]
    if isinstance(value, str) and "$" in value:
        expanded = os.path.expandvars(value)
        if "$" in expanded:
            raise ValueError(f"Set the environment variable in {value!r} (or override it with --set).")
        return expanded
    return value


def _flag(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, (dict, list)):
        value = json.dumps(value)
    return [f"--{name}", str(value)]


def _slug(value: Any) -> str:
    """A short readable name of a grid value (a path's last part): for display and folder names, not unique."""
    text = Path(value).name if isinstance(value, str) and "/" in value else str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:40]


def read_snapshots(teacher_dir: str | Path) -> list[dict]:
    """The records of ``teacher_dir/snapshots.json`` (written by ``recipes/train_teacher.py``)."""
    path = Path(teacher_dir) / "snapshots.json"
    if not path.is_file():
        raise ValueError(
            f"{path} does not exist: train the teacher with recipes/train_teacher.py --save_strategy epoch."
        )
    return json.loads(path.read_text())


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def run_sweep(config: SweepConfig, log=print) -> pd.DataFrame:
    """Run every trial not yet finished, then write and return the results (see the module docstring)."""
    if not Path(config.script).is_file():
        raise ValueError(f"The sweep's script {config.script!r} does not exist (paths are relative to {Path.cwd()}).")
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    with sweep_lock(output):
        failures = _run_pending_trials(config, log)
    results = collect_results(config)
    write_report(config, results, log=log)
    if failures:
        label, log_path = failures[0]
        raise RuntimeError(
            f"{len(failures)} trial(s) failed: {[label for label, _ in failures]}. The end of the first one's log "
            f"({log_path}):\n{_tail(log_path)}\nFix the cause (a flag of a named flag set, ...), then run the sweep "
            "again: it retries only the failed trials."
        )
    return results


@contextlib.contextmanager
def sweep_lock(output: Path) -> Iterator[None]:
    """Hold ``output/sweep.lock`` while a sweep runs there: a second sweep on the same folder stops at once instead of
    running the same trials. The operating system releases the lock when the process ends, even when it is killed."""
    import fcntl  # POSIX; imported here so that the module loads everywhere

    with open(output / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise RuntimeError(
                f"Another sweep (pid {holder}) is running in {output}. Wait for it to finish (it runs the same "
                "trials), or give this sweep another output_dir."
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_pending_trials(config: SweepConfig, log) -> list[tuple[str, Path]]:
    """Run the trials the study has not finished, under the sweep's lock; return the label and log of each that
    failed."""
    import optuna
    from optuna.trial import TrialState

    output = Path(config.output_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=config.study_name,
        storage=f"sqlite:///{output / 'study.db'}",
        sampler=optuna.samplers.GridSampler(config.search_space, seed=0),
        direction=config.direction,
        load_if_exists=True,
    )
    # The lock admits one sweep per folder: a trial still RUNNING in the database was killed with its sweep.
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        log(f"Trial {trial.number} ({trial.params}) was interrupted: it runs again.")
    _adopt_finished_trials(study, config)
    total = len(config.points())
    attempted: set[str] = set()
    failures: list[tuple[str, Path]] = []

    def finished() -> set[str]:
        return {_key(t.params) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}

    def objective(trial: optuna.Trial) -> float:
        params = {name: trial.suggest_categorical(name, values) for name, values in config.search_space.items()}
        attempted.add(_key(params))
        label = ", ".join(f"{k}={_slug(v)}" for k, v in params.items())
        log(f"[{len(finished()) + len(failures) + 1}/{total}] {label} ...")
        metrics, seconds, returncode = _run_trial(config, params)
        trial_log = config.trial_log(params)
        if returncode != 0:
            if not finished():  # no trial has worked yet: the cause is likely common to all (a typo'd flag, ...)
                raise ValueError(
                    f"The first trial ({label}) failed (exit {returncode}), so the sweep stops before running the "
                    f"others. The end of its log ({trial_log}):\n{_tail(trial_log)}\nFix the config and run the sweep "
                    "again."
                )
            failures.append((label, trial_log))
            log(f"    FAILED (exit {returncode}) after {seconds:.0f}s: see {trial_log}")
            raise TrialFailed(label)
        if config.objective not in metrics:
            raise ValueError(
                f"objective {config.objective!r} is not among the metrics that trial {label} wrote to "
                f"{config.trial_dir(params) / METRICS_FILE}: {sorted(metrics)}. Set `objective` to one of them (the "
                "finished trial is kept and adopted by the next sweep)."
            )
        trial.set_user_attr("output_dir", str(config.trial_dir(params)))
        log(
            f"    done in {seconds:.0f}s: "
            + ", ".join(f"{m}={metrics[m]:.4f}" for m in config.metrics if m in metrics)
        )
        return metrics[config.objective]

    log(f"Study {config.study!r}: {total} trials, {len(finished())} finished ({output / 'study.db'}).")
    while True:
        done = finished()
        pending = [p for p in config.points() if _key(p) not in done and _key(p) not in attempted]
        if not pending:
            break
        # Pending points are enqueued in grid order (the last grid entry, usually the seed, varies fastest), so an
        # interrupted sweep leaves whole cells; points whose trial failed or was killed are enqueued again.
        waiting = {_key(t.params) for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
        for params in pending:
            if _key(params) not in waiting:
                study.enqueue_trial(params)
        study.optimize(objective, n_trials=len(pending), catch=(TrialFailed,))
    return failures


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a trial's log."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no log)"


def _adopt_finished_trials(study, config: SweepConfig) -> None:
    """Record in ``study`` the finished trial folders it does not know yet: those of an earlier, smaller grid (more
    seeds or snapshots were added, which makes a new study), of a lost database, or a finished run whose objective was
    missing. Only folders of the same trial identity are candidates (see ``SweepConfig.trial_dir``). Nothing runs
    twice."""
    import optuna
    from optuna.trial import TrialState

    known = {_key(t.params) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    distributions = {name: optuna.distributions.CategoricalDistribution(v) for name, v in config.search_space.items()}
    for params in config.points():
        trial_dir = config.trial_dir(params)
        if _key(params) in known or not (trial_dir / TRIAL_FILE).is_file():
            continue
        metrics = json.loads((trial_dir / METRICS_FILE).read_text()) if (trial_dir / METRICS_FILE).is_file() else {}
        if config.objective in metrics:
            trial = optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                value=metrics[config.objective],
                user_attrs={"output_dir": str(trial_dir), "adopted": True},
            )
            study.add_trial(trial)


class TrialFailed(RuntimeError):
    """A trial's recipe exited with an error or wrote no objective metric."""


def _run_trial(config: SweepConfig, params: dict[str, Any]) -> tuple[dict[str, float], float, int]:
    """Run one trial's recipe, its output in ``trial_dir`` and its log beside it (``trial_dir.log``). A killed
    trial's folder is reused: the recipe resumes from its last ``checkpoint-*``, else overwrites what it left."""
    trial_dir = config.trial_dir(params)
    command = config.command(params)
    if trial_dir.is_dir() and any(trial_dir.iterdir()) and not any(trial_dir.glob("checkpoint-*")):
        (trial_dir / METRICS_FILE).unlink(missing_ok=True)  # partial metrics of the killed run
        command += ["--overwrite_output_dir", "true"]
    trial_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(config.trial_log(params), "w") as log_file:
        log_file.write(shlex.join(command) + "\n")
        log_file.flush()
        returncode = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    metrics_path = trial_dir / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if returncode == 0:
        record = {"params": params, "command": command, "wall_seconds": seconds}
        (trial_dir / TRIAL_FILE).write_text(json.dumps(record, indent=2, default=str))
    return metrics, seconds, returncode


def finished_trials(config: SweepConfig) -> Iterator[tuple[dict[str, Any], Path]]:
    """The parameters and folder of each finished trial (its run ended well and wrote its metric file), in grid
    order."""
    for params in config.points():
        trial_dir = config.trial_dir(params)
        if (trial_dir / TRIAL_FILE).is_file() and (trial_dir / METRICS_FILE).is_file():
            yield params, trial_dir


def collect_results(config: SweepConfig) -> pd.DataFrame:
    """One row per finished trial: its parameters, ``wall_seconds`` and every metric of its own metric file."""
    rows = []
    for params, trial_dir in finished_trials(config):
        record = json.loads((trial_dir / TRIAL_FILE).read_text())
        rows.append(
            {**params, "wall_seconds": record["wall_seconds"], **json.loads((trial_dir / METRICS_FILE).read_text())}
        )
    results = pd.DataFrame(rows)
    snapshot_flags = [name for name in config.grid if name.startswith("teacher_model_name_or_path")]
    if snapshot_flags and not results.empty:
        accuracy = _snapshot_accuracy(results[snapshot_flags[0]].unique())
        if accuracy:
            results[SNAPSHOT_METRIC] = results[snapshot_flags[0]].map(accuracy)
    return results


def _snapshot_accuracy(paths: Sequence[str]) -> dict[str, float]:
    """``eval_accuracy`` of each teacher checkpoint that its parent's ``snapshots.json`` lists."""
    accuracy = {}
    for path in paths:
        snapshots = Path(path).parent / "snapshots.json"
        if snapshots.is_file():
            for record in json.loads(snapshots.read_text()):
                if Path(record["path"]).resolve() == Path(path).resolve() and "eval_accuracy" in record:
                    accuracy[path] = record["eval_accuracy"]
    return accuracy


def summarize(
    results: pd.DataFrame, by: list[str], metrics: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Mean and sample std of ``metrics`` over the rows of each group of ``by`` (the seeds), and the group sizes."""
    metrics = [m for m in metrics if m in results.columns]
    grouped = results.groupby(by, sort=False, dropna=False) if by else results.groupby(lambda _: "all")
    return grouped[metrics].mean(), grouped[metrics].std(ddof=1), grouped.size()


def summary_markdown(
    results: pd.DataFrame, by: list[str], metrics: list[str], extra: dict[str, pd.Series] | None = None
) -> str:
    """A markdown table: one row per group of ``by``, each metric as ``mean +- std`` over the group's runs, then the
    ``extra`` columns (a value per group, indexed like :func:`summarize`'s results)."""
    mean, std, size = summarize(results, by, metrics)
    extra = extra or {}
    names = by or ["runs"]
    lines = [
        "| " + " | ".join([*names, "n", *mean.columns, *extra]) + " |",
        "|" + "---|" * (len(names) + 1 + len(mean.columns) + len(extra)),
    ]
    display = [_display_names(results[name]) for name in by]
    for group in mean.index:
        labels = [names[v] for names, v in zip(display, _as_tuple(group), strict=False)] if by else [str(group)]
        cells = [_mean_std(mean.loc[group, m], std.loc[group, m]) for m in mean.columns]
        cells += [str(column[group]) for column in extra.values()]
        lines.append("| " + " | ".join([*labels, str(size[group]), *cells]) + " |")
    return "\n".join(lines) + "\n"


def _display_names(values: pd.Series) -> dict[Any, str]:
    """Each distinct value's short name (:func:`_slug`), or its full text where two values share a short name."""
    unique = list(dict.fromkeys(values))
    short = [_slug(v) for v in unique]
    return {v: name if short.count(name) == 1 else str(v) for v, name in zip(unique, short, strict=True)}


def _as_tuple(group: Any) -> tuple:
    return group if isinstance(group, tuple) else (group,)


def _mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"  # no run of the group has the metric
    digits = 1 if abs(mean) >= 10 else 4
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} +- {std:.{digits}f}"


def write_report(config: SweepConfig, results: pd.DataFrame, log=print) -> None:
    """``results.csv``, ``results.md`` (mean +- std over seeds), ``results.png`` and, where trials logged per-epoch
    evaluations, ``learning_curves.md`` in the sweep's output_dir."""
    output = Path(config.output_dir)
    if results.empty:
        log("No finished trials yet.")
        return
    results.to_csv(output / "results.csv", index=False)
    by = [name for name in config.search_space if name != SEED]
    metrics = [*config.metrics, *(m for m in ("wall_seconds", SNAPSHOT_METRIC) if m not in config.metrics)]
    table = summary_markdown(results, by, metrics)
    if config.baseline and SEED in results.columns:
        table += "\n" + paired_differences(results, by, config.baseline, [config.objective])
    if SNAPSHOT_METRIC in results.columns:
        table += "\n" + best_snapshot(results, config) + "\n"
    (output / "results.md").write_text(table)
    log(table)
    written = [output / "results.csv", output / "results.md"]
    try:
        plot_results(config, results, output / "results.png")
        written.append(output / "results.png")
    except ImportError:
        log("matplotlib is not installed: no plot.")
    curves = write_learning_curves(config, log=log)
    written += [curves] if curves else []
    log(f"Wrote {', '.join(map(str, written))}")


def curves_markdown(config: SweepConfig, curves: pd.DataFrame) -> str:
    """:func:`summary_markdown` of the learning curves over the grid's cells (seeds pooled), plus each cell's best
    epoch: the one with the highest mean (the lowest for a loss)."""
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
    curves = learning_curves(finished_trials(config), config.curve_metric)
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


def paired_differences(results: pd.DataFrame, by: list[str], baseline: dict[str, Any], metrics: list[str]) -> str:
    """Markdown: each cell's metrics minus those of its baseline cell (the cell with the same values of the other grid
    entries and ``baseline``'s), seed by seed, as mean +- std of the differences with a paired t-test's p-value.

    Trials of one seed share the seed's data order, initialisation and (where a recipe draws them from the seed) data
    subsets, so the differences within a seed carry less noise than the cells' own spread."""
    from scipy.stats import ttest_rel

    metrics = [m for m in metrics if m in results.columns]
    keys = [name for name in by if name not in baseline]
    header = [*by, "seeds", *(f"{m} - baseline (paired p)" for m in metrics)]
    lines = [
        f"Differences to the baseline cell ({', '.join(f'{k}={_slug(v)}' for k, v in baseline.items())}), "
        "seed by seed:\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    is_baseline = pd.Series(True, index=results.index)
    for name, value in baseline.items():
        is_baseline &= results[name].map(str) == str(value)
    for group, rows in results[~is_baseline].groupby(by, sort=False):
        cell = dict(zip(by, _as_tuple(group), strict=True))
        reference = results[is_baseline]
        for name in keys:
            reference = reference[reference[name].map(str) == str(cell[name])]
        pairs = rows.merge(reference, on=SEED, suffixes=("", "_baseline"), how="inner")
        cells = []
        for metric in metrics:
            diff = pairs[metric] - pairs[f"{metric}_baseline"]
            p = ttest_rel(pairs[metric], pairs[f"{metric}_baseline"]).pvalue if len(diff) > 1 else float("nan")
            cells.append(f"{_mean_std(diff.mean(), diff.std(ddof=1))} ({p:.2g})")
        lines.append("| " + " | ".join([*(_slug(v) for v in cell.values()), str(len(pairs)), *cells]) + " |")
    return "\n".join(lines) + "\n"


def best_snapshot(results: pd.DataFrame, config: SweepConfig) -> str:
    """The teacher snapshot whose students scored the best mean ``objective`` (the lowest for a loss)."""
    flag = next(name for name in config.grid if name.startswith("teacher_model_name_or_path"))
    by = [name for name in config.search_space if name not in (SEED, flag)]
    most_accurate = results[flag].iloc[results[SNAPSHOT_METRIC].argmax()]
    lines = []
    for group, rows in results.groupby(by, sort=False) if by else [((), results)]:
        mean = rows.groupby(flag, sort=False)[config.objective].mean()
        best = mean.idxmin() if lower_is_better(config.objective) else mean.idxmax()
        prefix = f"{dict(zip(by, _as_tuple(group), strict=True))}: " if by else ""
        lines.append(
            f"{prefix}best-teaching snapshot: {_slug(best)} (student {config.objective} {mean[best]:.4f}); "
            f"most accurate snapshot: {_slug(most_accurate)}."
        )
    return "\n".join(lines)


def plot_results(config: SweepConfig, results: pd.DataFrame, path: Path) -> None:
    """The objective's mean +- std against ``plot_x`` (default: the first named dimension, else the first grid
    entry other than the seed), one series per
    combination of the other flags; teacher snapshots' own accuracy is drawn beside the students'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = config.plot_x or next(iter(config.flag_sets), next(name for name in config.grid if name != SEED))
    series = [name for name in config.search_space if name not in (SEED, x)]
    fig, ax = plt.subplots(figsize=(7, 4))
    groups = results.groupby(series, sort=False) if series else [((), results)]
    for group, rows in groups:
        mean, std, _ = summarize(rows, [x], [config.objective])
        label = ", ".join(f"{k}={_slug(v)}" for k, v in zip(series, _as_tuple(group), strict=True))
        ticks = [_display_names(results[x])[v] for v in mean.index]
        ax.errorbar(
            ticks,
            mean[config.objective],
            yerr=std[config.objective].fillna(0),
            marker="o",
            capsize=4,
            label=label or f"student {config.objective}",
        )
    if SNAPSHOT_METRIC in results.columns and x in results.columns:
        # The snapshot's accuracy on the students' evaluation rows when the recipe logged it, else snapshots.json's.
        own = config.objective.replace("_", "_teacher_", 1)
        own = own if own in results.columns else SNAPSHOT_METRIC
        teacher = results.groupby(x, sort=False)[own].mean()
        ax.plot(
            [_slug(v) for v in teacher.index], teacher.values, "s--", color="grey", label=f"snapshot's own ({own})"
        )
    ax.set_xlabel(x)
    ax.set_ylabel(config.objective)
    ax.set_title(f"{config.study}: mean +- std over {SEED}s")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep_command(argv: Sequence[str]) -> int:
    """``hf-distill sweep CONFIG [--set KEY=VALUE ...]`` (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="hf-distill sweep",
        description="Run a grid of recipe runs from a YAML config, one folder per trial, resumable through an Optuna "
        "SQLite study; write results.csv, results.md (mean +- std over seeds), results.png and, for trials run "
        "with eval_strategy epoch, learning_curves.md (each cell's validation metric per epoch).",
    )
    parser.add_argument("config", help="The sweep's YAML file (see recipes/studies/).")
    parser.add_argument("--output_dir", default=None, help="Override the config's output_dir.")
    parser.add_argument("--launcher", default=None, help="Override the config's launcher, e.g. 'accelerate launch'.")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="settings",
        metavar="KEY=VALUE",
        help="Override a config entry, e.g. --set args.max_train_samples=200 --set grid.seed=[1,2]. Repeatable.",
    )
    parser.add_argument("--report_only", action="store_true", help="Only collect finished trials and write reports.")
    return _run_sweep_command(parser.parse_args(list(argv)))


def table_command(argv: Sequence[str]) -> int:
    """``hf-distill sweep-table NAME=DIR ...``: mean +- std over runs grouped by name."""
    parser = argparse.ArgumentParser(
        prog="hf-distill sweep-table",
        description="Mean +- std table over runs grouped by name (e.g. one DIR per seed), with a Welch t-test when "
        "there are two groups.",
    )
    parser.add_argument("runs", nargs="+", metavar="NAME=DIR", help="A run's output_dir, named by its group.")
    parser.add_argument("--metrics", default="test_accuracy,test_agreement", help="Comma-separated metric names.")
    parser.add_argument("--output", default=None, help="Also write the table (markdown) to this file.")
    return _run_table_command(parser.parse_args(list(argv)))


def _run_sweep_command(args: argparse.Namespace) -> int:
    config = SweepConfig.from_yaml(args.config, args.settings, output_dir=args.output_dir, launcher=args.launcher)
    if args.report_only:
        write_report(config, collect_results(config))
    else:
        run_sweep(config)
    return 0


def runs_table(runs: Sequence[str], metrics: list[str]) -> str:
    """:func:`summary_markdown` of ``NAME=DIR`` runs, read from each DIR's ``all_results.json``."""
    rows = []
    for spec in runs:
        name, sep, directory = spec.partition("=")
        if not sep:
            raise ValueError(f"Name each run as NAME=DIR, got {spec!r}.")
        path = Path(directory) / METRICS_FILE
        if not path.is_file():
            raise ValueError(f"{path} does not exist: run the recipe with --output_dir {directory} first.")
        rows.append({"run": name, **json.loads(path.read_text())})
    results = pd.DataFrame(rows)
    table = summary_markdown(results, ["run"], metrics)
    names = list(dict.fromkeys(results["run"]))
    if len(names) == 2:
        table += "\n" + "\n".join(welch_line(results, "run", names, m) for m in metrics if m in results) + "\n"
    return table


def welch_line(results: pd.DataFrame, by: str, names: list[str], metric: str) -> str:
    """``a - b`` of ``metric``'s means with Welch's t-test (unequal variances; scipy), for a report's "is the gain
    outside the noise" sentence."""
    from scipy.stats import ttest_ind

    a, b = (results.loc[results[by] == name, metric].to_numpy() for name in names)
    difference = a.mean() - b.mean()
    if min(len(a), len(b)) < 2:
        return f"{names[0]} - {names[1]}: {metric} {difference:+.4f} (one run each: no test)"
    p = ttest_ind(a, b, equal_var=False).pvalue
    return f"{names[0]} - {names[1]}: {metric} {difference:+.4f} (Welch t-test p = {p:.3f}, n = {len(a)} and {len(b)})"


def _run_table_command(args: argparse.Namespace) -> int:
    table = runs_table(args.runs, args.metrics.split(","))
    if args.output:
        Path(args.output).write_text(table)
    print(table)
    return 0
