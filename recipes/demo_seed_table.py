#!/usr/bin/env python
"""The demo's seed table: mean +- std of each student kind over seeds, and each kind's paired differences to a
baseline kind, seed by seed, with a paired t-test (the sweep report's tables, on runs named KIND:SEED=DIR).

    python recipes/demo_seed_table.py --baseline ce_tiny ce_tiny:1=out/seed1/ce_tiny kd_tiny:1=out/seed1/kd_tiny ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from hf_distill.workflow.sweep import METRICS_FILE, SEED, paired_differences, summary_markdown


def seed_table(runs: list[str], baseline: str, metrics: list[str]) -> str:
    rows = []
    for spec in runs:
        name, _, directory = spec.partition("=")
        kind, _, seed = name.partition(":")
        if not directory or not seed:
            raise ValueError(f"Name each run KIND:SEED=DIR, got {spec!r}.")
        rows.append({"student": kind, SEED: int(seed), **json.loads((Path(directory) / METRICS_FILE).read_text())})
    results = pd.DataFrame(rows)
    table = summary_markdown(results, ["student"], metrics)
    return table + "\n" + paired_differences(results, ["student"], {"student": baseline}, metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="KIND:SEED=DIR")
    parser.add_argument("--baseline", required=True, help="The KIND the others are compared with.")
    parser.add_argument("--metrics", default="test_accuracy,test_agreement")
    parser.add_argument("--output", default=None, help="Also write the tables (markdown) here.")
    args = parser.parse_args()
    table = seed_table(args.runs, args.baseline, args.metrics.split(","))
    if args.output:
        Path(args.output).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
