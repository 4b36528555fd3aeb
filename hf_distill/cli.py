"""The ``hf-distill`` console command: ``compare``, ``sweep`` and ``sweep-table``.

Each command's module is imported only when the command runs, so ``hf-distill --help`` answers without loading
torch, transformers or datasets.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .workflow.console import run_reporting_errors

# Command -> ("module:function" taking the command's own argv, one-line help).
COMMANDS = {
    "compare": (
        "hf_distill.evaluation.compare_command:compare_command",
        "a teacher against its students: accuracy, agreement, KL, calibration, size, latency, throughput",
    ),
    "sweep": (
        "hf_distill.workflow.sweep:sweep_command",
        "a resumable grid of recipe runs from a YAML config (recipes/studies/)",
    ),
    "sweep-table": (
        "hf_distill.workflow.sweep:table_command",
        "mean +- std over runs, with a Welch t-test for two groups",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-distill",
        description="Knowledge distillation tools for classifiers. `hf-distill COMMAND --help` lists a command's "
        "flags.",
        epilog="Errors print as one line; set HF_DISTILL_TRACEBACK=1 for the full traceback.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        # The command's own parser reads the rest: add_help=False passes `--help` on to it.
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hf-distill``. From the console (``argv`` None) a user error prints as one line and returns 1; called
    with an ``argv`` list, as in tests and scripts, errors are raised."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args, rest = build_parser().parse_known_args(arguments[:1])
    module_name, function_name = COMMANDS[args.command][0].split(":")

    def command() -> int:
        return getattr(importlib.import_module(module_name), function_name)(rest + arguments[1:])

    if argv is not None:
        return command()
    return run_reporting_errors(command, arguments, prog=f"hf-distill {args.command}")


if __name__ == "__main__":
    sys.exit(main())
