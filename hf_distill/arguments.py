"""Parsing recipe arguments the way transformers' examples do: CLI flags, or one JSON / YAML file."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from transformers import HfArgumentParser


def parse_arguments(parser: HfArgumentParser, argv: Sequence[str] | None = None) -> tuple:
    """The parser's dataclasses from ``argv`` (default ``sys.argv[1:]``): a lone ``.json``/``.yaml`` path is read
    as a config file, anything else as command-line flags (unknown flags raise)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(argv[0])
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(argv[0])
    return parser.parse_args_into_dataclasses(args=argv)
