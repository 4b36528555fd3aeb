"""Parsing recipe arguments the way transformers' examples do: CLI flags, or one JSON / YAML file."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import datasets
import transformers
from transformers import HfArgumentParser, TrainingArguments


def parse_arguments(parser: HfArgumentParser, argv: Sequence[str] | None = None) -> tuple:
    """The parser's dataclasses from ``argv`` (default ``sys.argv[1:]``): a lone ``.json``/``.yaml`` path is read
    as a config file, anything else as command-line flags (unknown flags raise)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(argv[0])
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def setup_logging(training_args: TrainingArguments) -> None:
    """Log as transformers' examples do: INFO on the main process (``--log_level`` to change), WARNING elsewhere,
    for the recipe's own loggers and for transformers and datasets alike."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO
    )
    log_level = training_args.get_process_log_level()
    logging.getLogger().setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
