"""Parsing recipe arguments and logging the way transformers' examples do."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import transformers
import yaml
from transformers import HfArgumentParser, TrainingArguments

from .checkpoints import resolve_checkpoint


@dataclass
class ModelLoadingArguments:
    """How every model, tokenizer, image processor and Hub dataset of a recipe is loaded (run_glue.py's names)."""

    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub models and datasets are cached."})
    model_revision: str = field(default="main", metadata={"help": "Model version: a branch, tag or commit id."})
    token: str | None = field(
        default=None, metadata={"help": "Hub token for private models, if not the one saved by `hf auth login`."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run modelling code from the Hub repo; only for repos you trust."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Load a checkpoint whose head size differs (the head is re-initialised)."}
    )

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for every ``from_pretrained`` call."""
        return {
            "cache_dir": self.cache_dir,
            "revision": self.model_revision,
            "token": self.token,
            "trust_remote_code": self.trust_remote_code,
        }


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
    """Log as transformers' examples do: the recipe's and hf_distill's INFO lines on the main process, WARNING on
    the others.

    transformers and datasets keep their own level (WARNING) unless ``--log_level`` names one, so a run reads as one
    line per stage; ``--log_level info`` shows their INFO lines too. The progress bars of weight loading and saving
    are turned off (the Trainer's own bars and datasets' follow ``--disable_tqdm``), and so is pinned memory where there is no
    accelerator to pin for.
    """
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S")
    main_level = logging.INFO if training_args.should_log else logging.WARNING
    library_level = training_args.get_process_log_level()
    if training_args.log_level != "passive":
        main_level = library_level
    logging.getLogger().setLevel(main_level)
    datasets.utils.logging.set_verbosity(library_level)
    transformers.utils.logging.set_verbosity(library_level)
    transformers.utils.logging.disable_progress_bar()
    if training_args.disable_tqdm:  # datasets' map bars (tokenization, teacher logits) follow the Trainer's
        datasets.disable_progress_bars()
    if training_args.device.type == "cpu":
        training_args.dataloader_pin_memory = False


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings (such as a load report) for a block that logs its own summary instead, unless
    ``--log_level`` asked transformers for INFO or more."""
    previous = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity(max(previous, logging.ERROR))
    try:
        yield
    finally:
        transformers.utils.logging.set_verbosity(previous)
