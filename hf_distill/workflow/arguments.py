"""Parsing recipe arguments the way transformers' examples do: CLI flags, or one JSON / YAML file."""

from __future__ import annotations

import json
import logging
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

import datasets
import transformers
import yaml
from transformers import HfArgumentParser, TrainingArguments

from .checkpoints import resolve_checkpoint


def parse_arguments(parser: HfArgumentParser, argv: Sequence[str] | None = None) -> tuple:
    """The parser's dataclasses from ``argv`` (default ``sys.argv[1:]``): a lone ``.json``/``.yaml`` path is read
    as a config file, anything else as command-line flags (unknown flags raise).

    Numbers written as strings in a config file (PyYAML reads ``5e-1`` as one) are converted for number fields, and
    refused with the field's name when they are not numbers. The training arguments' ``resume_from_checkpoint`` is
    then set for a rerun on an existing ``output_dir`` (see :func:`~hf_distill.workflow.checkpoints.resolve_checkpoint`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        text = Path(argv[0]).read_text()
        config = json.loads(text) if argv[0].endswith(".json") else yaml.safe_load(text)
        outputs = parser.parse_dict(_coerce_numbers(parser, config), allow_extra_keys=False)
    else:
        outputs = parser.parse_args_into_dataclasses(args=argv)
    for output in outputs:
        if isinstance(output, TrainingArguments):
            resolve_checkpoint(output)
    return outputs


def _coerce_numbers(parser: HfArgumentParser, config: dict) -> dict:
    """``config`` with string values of ``float``/``int`` fields converted (``"5e-1"`` -> 0.5)."""
    kinds = {}
    for dtype in parser.dataclass_types:
        for name, hint in typing.get_type_hints(dtype).items():
            options = set(typing.get_args(hint)) or {hint}
            for kind in (int, float):
                if kind in options and str not in options:
                    kinds[name] = kind
    coerced = dict(config)
    for name, value in config.items():
        if isinstance(value, str) and name in kinds:
            try:
                coerced[name] = kinds[name](value)
            except ValueError:
                raise ValueError(f"{name} must be a number ({kinds[name].__name__}), got {value!r}.") from None
    return coerced


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
