"""Parsing recipe arguments and logging the way transformers' examples do."""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import difflib
import json
import logging
import sys
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
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


# transformers' run_classification.py names, accepted as aliases of ours where the parser has no field of that name.
RUN_CLASSIFICATION_ALIASES = {
    "student_model_name_or_path": "--model_name_or_path",
    "text_columns": "--text_column_names",
    "label_column": "--label_column_name",
}
# TrainingArguments fields that DistillationTrainer refuses (see training_args.check_trainer_fields), and the one
# that only configures a refused one: kept out of a distillation recipe's --help, still parsed so that the refusal
# can explain itself.
REFUSED_TRAINING_FIELDS = ("label_names", "use_liger_kernel")
HIDDEN_TRAINING_FIELDS = (*REFUSED_TRAINING_FIELDS, "liger_kernel_config")
GROUP_DESCRIPTIONS = {  # in the order --help shows them
    "models": "The teacher and the students to compare.",
    "data": "What to train and evaluate on, and how it is tokenized or transformed.",
    "teacher": "The model being fine-tuned as a teacher.",
    "student": "The teacher(s) and how the student is built (copied layers, a config, a pretrained model, LoRA, "
    "pruning).",
    "distillation method": "The loss and its settings (docs/methods.md): alpha weighs the labels, 1 - alpha the "
    "teacher.",
    "training": "transformers.TrainingArguments, as in any Trainer script.",
    "measurement": "How quality and speed are measured, and where the report goes.",
    "Hub": "Loading from and pushing to the Hugging Face Hub.",
}


class RecipeHelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description keeps its layout (the example command); a flag's default is shown once, only when its help
    does not already name one, and not when it is None."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        """``--flag_name VALUE``, without HfArgumentParser's ``--flag-name`` twin (still accepted)."""
        kept = [o for o in action.option_strings if not (o.startswith("--") and "-" in o[2:])]
        if kept and kept != action.option_strings:
            action = copy.copy(action)
            action.option_strings = kept
        return super()._format_action_invocation(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        return super()._get_help_string(action)


class RecipeArgumentParser(HfArgumentParser):
    """`HfArgumentParser` with the help a newcomer needs: the recipe's description and example command first, flags
    grouped (``data``, ``student``, ``distillation method``, ``training``, ``Hub``), flags that DistillationTrainer
    refuses hidden, and transformers' ``run_classification.py`` names accepted (:data:`RUN_CLASSIFICATION_ALIASES`).

    ``groups`` names the group of each dataclass's fields. `TrainingArguments` fields go to ``training`` (the
    ``hub_*`` ones and ``push_to_hub`` to ``Hub``); fields that a subclass adds go to ``groups[subclass]``. The
    recipe's docstring is split into the description (up to the end of its first indented example) and the epilog.
    """

    def __init__(
        self,
        dataclass_types: Sequence[type],
        *,
        description: str | None = None,
        groups: Mapping[type, str] | None = None,
        aliases: Mapping[str, str] = RUN_CLASSIFICATION_ALIASES,
        **kwargs: Any,
    ) -> None:
        self._groups = dict(groups or {})
        field_names = {f.name for dtype in dataclass_types for f in dataclasses.fields(dtype)}
        self.aliases = {
            name: alias for name, alias in aliases.items() if name in field_names and alias[2:] not in field_names
        }
        head, epilog = split_docstring(description or "")
        kwargs.setdefault("formatter_class", RecipeHelpFormatter)
        kwargs.setdefault("usage", "%(prog)s --flag value [--flag value ...]\n       %(prog)s config.yaml")
        super().__init__(dataclass_types, description=head or None, epilog=epilog or None, **kwargs)

    def _argument_group(self, name: str) -> argparse._ArgumentGroup:
        if not hasattr(self, "_named_groups"):  # created in a fixed order, whatever the dataclasses' order
            used = set(self._groups.values())
            if any(issubclass(dtype, TrainingArguments) for dtype in self.dataclass_types):
                used |= {"training", "Hub"}
            self._named_groups = {
                n: self.add_argument_group(n, GROUP_DESCRIPTIONS[n]) for n in GROUP_DESCRIPTIONS if n in used
            }
        if name not in self._named_groups:
            self._named_groups[name] = self.add_argument_group(name, GROUP_DESCRIPTIONS.get(name))
        return self._named_groups[name]

    def _add_dataclass_arguments(self, dtype: type) -> None:
        hints = typing.get_type_hints(dtype)
        trainer_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
        refused = _is_distillation_arguments(dtype)
        for source in dataclasses.fields(dtype):
            if not source.init:
                continue
            spec = copy.copy(source)  # the dataclass's own field keeps its metadata and type
            spec.type = hints[source.name]
            metadata = dict(source.metadata)
            if source.name in self.aliases:
                metadata["aliases"] = [self.aliases[source.name]]
            if refused and source.name in HIDDEN_TRAINING_FIELDS:
                metadata["help"] = argparse.SUPPRESS
            spec.metadata = types.MappingProxyType(metadata)
            if source.name in trainer_fields and issubclass(dtype, TrainingArguments):
                group = "Hub" if source.name.startswith("hub_") or source.name == "push_to_hub" else "training"
            else:
                group = self._groups.get(dtype, "training")
            self._parse_dataclass_field(self._argument_group(group), spec)


def _is_distillation_arguments(dtype: type) -> bool:
    from ..training_args import DistillationTrainingArguments

    return issubclass(dtype, DistillationTrainingArguments)


def split_docstring(doc: str) -> tuple[str, str]:
    """A recipe docstring as (description, epilog): the description runs to the end of the first indented block
    (the example command), the epilog holds the rest."""
    lines = doc.strip("\n").splitlines()
    seen_block = False
    for index, line in enumerate(lines):
        indented = line.startswith("    ")
        if indented:
            seen_block = True
        elif seen_block and line.strip():
            return "\n".join(lines[:index]).rstrip(), "\n".join(lines[index:]).strip()
    return "\n".join(lines).strip(), ""


def parse_arguments(parser: HfArgumentParser, argv: Sequence[str] | None = None) -> tuple:
    """The parser's dataclasses from ``argv`` (default ``sys.argv[1:]``): a lone ``.json``/``.yaml`` path is read
    as a config file, anything else as command-line flags.

    An unknown flag or config key raises naming the closest known one. Numbers written as strings in a config file
    (PyYAML reads ``5e-1`` as one) are converted for number fields, and refused with the field's name when they are
    not numbers. A recipe's training arguments (:class:`RecipeArgumentParser`) with none of ``do_train``,
    ``do_eval``, ``do_predict`` are refused (nothing to do). The training arguments' ``resume_from_checkpoint`` is set for a rerun on an existing ``output_dir`` (see
    :func:`~hf_distill.workflow.checkpoints.resolve_checkpoint`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        text = Path(argv[0]).read_text()
        config = json.loads(text) if argv[0].endswith(".json") else yaml.safe_load(text)
        config = _config_with_field_names(parser, config)
        outputs = parser.parse_dict(_coerce_numbers(parser, config), allow_extra_keys=False)
    else:
        *outputs, unused = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
        if unused:
            raise ValueError(_unknown_flags_message(parser, unused))
    for output in outputs:
        if isinstance(output, TrainingArguments):
            nothing_to_do = not (output.do_train or output.do_eval or output.do_predict)
            if nothing_to_do and isinstance(parser, RecipeArgumentParser):
                raise ValueError(
                    "Nothing to do: pass --do_train, --do_eval and/or --do_predict (as in transformers' example "
                    "scripts); --eval_strategy other than 'no' also turns on --do_eval."
                )
            resolve_checkpoint(output)
    return tuple(outputs)


def _known_flags(parser: argparse.ArgumentParser) -> list[str]:
    return [
        option
        for action in parser._actions
        if action.help is not argparse.SUPPRESS
        for option in action.option_strings
        if option.startswith("--") and "-" not in option[2:]
    ]


def _unknown_flags_message(parser: argparse.ArgumentParser, unused: list[str]) -> str:
    """Each unknown ``--flag`` in ``unused`` with the closest known flag, if any is close (difflib); the values that
    follow an unknown flag are its own."""
    known = _known_flags(parser)
    problems = []
    for index, token in enumerate(unused):
        if token.startswith("-"):
            flag = token.split("=", 1)[0]
            match = difflib.get_close_matches("--" + flag.lstrip("-").replace("-", "_"), known, n=1, cutoff=0.6)
            problems.append(f"unknown flag {flag}" + (f": did you mean {match[0]}?" if match else ""))
        elif index == 0:
            problems.append(f"{token!r} follows no flag (a flag takes one value; quote values with spaces)")
    return "; ".join(problems) + ". `--help` lists the flags by group."


def _config_with_field_names(parser: HfArgumentParser, config: dict) -> dict:
    """``config`` with run_classification.py's names renamed to ours; an unknown key raises naming the closest."""
    aliases = {alias[2:]: name for name, alias in getattr(parser, "aliases", {}).items()}
    renamed = {aliases.get(key, key): value for key, value in config.items()}
    known = {f.name for dtype in parser.dataclass_types for f in dataclasses.fields(dtype) if f.init}
    unknown = [key for key in renamed if key not in known]
    if unknown:
        problems = []
        for key in unknown:
            match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            problems.append(f"unknown key {key!r}" + (f": did you mean {match[0]!r}?" if match else ""))
        raise ValueError("; ".join(problems) + ". `--help` lists the keys (the flags' names) by group.")
    return renamed


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
