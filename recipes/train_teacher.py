#!/usr/bin/env python
r"""Fine-tune a teacher with plain cross-entropy, keeping a checkpoint per epoch (early-stopped teacher snapshots).

    accelerate launch recipes/train_teacher.py --model_name_or_path bert-base-uncased --dataset_name glue \
        --dataset_config_name sst2 --text_columns sentence --output_dir teacher --do_train --do_eval \
        --eval_strategy epoch --save_strategy epoch --num_train_epochs 3

Every `checkpoint-*` folder can serve as a teacher; `snapshots.json` lists them with their validation scores.
`--do_predict` scores the test split (`predict_results.txt`, plus `test_*` metrics when it has labels).
`--modality image` trains an image teacher instead (see recipes/train_image_teacher.py for its flags).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    set_seed,
)

from hf_distill.data.labels import label_config
from hf_distill.evaluation.metrics import compute_metrics_fn
from hf_distill.text.data import TextDataArguments, label_list, tokenize_for_distillation
from hf_distill.workflow.arguments import (
    ModelLoadingArguments,
    RecipeArgumentParser,
    parse_arguments,
    quiet_transformers,
    setup_logging,
)
from hf_distill.workflow.checkpoints import TeacherTrainingArguments
from hf_distill.workflow.console import run_reporting_errors
from hf_distill.workflow.hub import check_hub_access
from hf_distill.workflow.publish import train_evaluate_publish
from hf_distill.workflow.snapshots import write_snapshots

logger = logging.getLogger(__name__)


@dataclass
class TeacherArguments:
    model_name_or_path: str = field(metadata={"help": "The pretrained encoder to fine-tune: a Hub id or a path."})
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's own."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's own."})
    modality: str = field(
        default="text",
        metadata={
            "help": "text, or image for an image teacher (flags: recipes/train_image_teacher.py --help).",
            "choices": ["text", "image"],
        },
    )


def main(argv: list[str] | None = None) -> dict:
    parser = RecipeArgumentParser(
        (TeacherArguments, ModelLoadingArguments, TextDataArguments, TeacherTrainingArguments),
        description=__doc__,
        groups={TeacherArguments: "teacher", ModelLoadingArguments: "Hub", TextDataArguments: "data"},
    )
    model_args, loading, data_args, training_args = parse_arguments(parser, argv)
    setup_logging(training_args)
    check_hub_access(training_args)
    set_seed(training_args.seed)

    raw = data_args.load(seed=training_args.seed, cache_dir=loading.cache_dir, token=loading.token)
    labels = label_list(raw, data_args.label_column)
    text_columns = data_args.columns(raw)
    logger.info(
        "Data: %s; text %s; labels %s", {split: len(rows) for split, rows in raw.items()}, text_columns, labels
    )
    hub = loading.from_pretrained_kwargs()
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path, **hub)
    config = AutoConfig.from_pretrained(
        model_args.config_name or model_args.model_name_or_path,
        **label_config(labels),
        **hub,
    )
    with quiet_transformers():  # transformers' load report becomes the line below
        model, report = AutoModelForSequenceClassification.from_pretrained(
            model_args.model_name_or_path,
            config=config,
            ignore_mismatched_sizes=loading.ignore_mismatched_sizes,
            output_loading_info=True,
            **hub,
        )
    logger.info(
        "Teacher %s: %s parameters; newly initialised: %s; unused from the checkpoint: %s",
        model_args.model_name_or_path,
        f"{model.num_parameters():,}",
        ", ".join(sorted(report["missing_keys"])) or "none",
        ", ".join(sorted(report["unexpected_keys"])) or "none",
    )
    with training_args.main_process_first(desc="tokenization"):
        data = tokenize_for_distillation(
            raw,
            tokenizer,
            text_columns=text_columns,
            labels=labels,
            label_column=data_args.label_column,
            max_length=data_args.max_seq_length,
            pad_to_max_length=data_args.pad_to_max_length,
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=not data_args.overwrite_cache,
        )

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data["train"] if training_args.do_train else None,
        eval_dataset=data.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics_fn(),
    )
    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "text-classification", **data_args.card_kwargs()}
    eval_splits = {"eval": data.get("validation") if training_args.do_eval else None}
    predict = data.get("test") if training_args.do_predict else None
    metrics = train_evaluate_publish(trainer, eval_splits, card, predict)
    if trainer.is_world_process_zero():
        snapshots = write_snapshots(training_args.output_dir)
        scores = ", ".join(f"epoch {s['epoch']:g}: {s.get('eval_accuracy', float('nan')):.4f}" for s in snapshots)
        logger.info("Snapshots (validation accuracy) in snapshots.json: %s", scores)
    return metrics


def dispatch(argv: list[str]) -> None:
    """``--modality text`` (default) runs :func:`main`; ``--modality image`` runs train_image_teacher.main (the
    field of the same name in `TeacherArguments` shows it in ``--help``)."""
    selector = argparse.ArgumentParser(add_help=False)
    selector.add_argument("--modality", choices=["text", "image"], default="text")
    known, rest = selector.parse_known_args(argv)
    if known.modality == "image":
        from train_image_teacher import main as image_main  # a sibling script: recipes/ is on sys.path

        image_main(rest)
    else:
        main(rest)


if __name__ == "__main__":
    sys.exit(run_reporting_errors(lambda: dispatch(sys.argv[1:])))
