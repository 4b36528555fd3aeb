#!/usr/bin/env python
r"""Train an image teacher with plain cross-entropy, keeping a snapshot per epoch.

The teacher is a pretrained `AutoModelForImageClassification` (path or Hub id, fine-tuned) or one built from a config
(`--model_type resnet|convnext|vit|...` plus `--config_overrides` JSON). Snapshots land in
`output_dir/checkpoint-*` each epoch: an early checkpoint can teach better than the last (Cho & Hariharan, 2019).

    python recipes/train_teacher.py --modality image --dataset_name fashion_mnist --model_type resnet \
        --config_overrides '{"embedding_size": 32, "hidden_sizes": [32, 64, 128], "depths": [1, 1, 1]}' \
        --output_dir teacher --num_train_epochs 2 --do_train --do_eval
"""

import logging
import sys
from dataclasses import dataclass, field

from transformers import Trainer, set_seed

from hf_distill import DataCollatorForDistillation
from hf_distill.evaluation.metrics import compute_metrics_fn
from hf_distill.vision import (
    IMAGE_MODEL_PRESETS,
    DistillationImageTransform,
    ImageDataArguments,
    image_model_from_config,
    image_shape,
    load_image_processor,
    parse_config_overrides,
    pixel_format_for,
    prepare_image_splits,
    pretrained_image_model,
)
from hf_distill.workflow.arguments import ModelLoadingArguments, RecipeArgumentParser, parse_arguments, setup_logging
from hf_distill.workflow.checkpoints import TeacherTrainingArguments
from hf_distill.workflow.console import run_reporting_errors
from hf_distill.workflow.hub import check_hub_access
from hf_distill.workflow.publish import train_evaluate_publish
from hf_distill.workflow.snapshots import write_snapshots

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "A pretrained model to fine-tune."})
    model_type: str | None = field(
        default=None,
        metadata={"help": f"Build from a config instead: resnet, convnext, ... or {', '.join(IMAGE_MODEL_PRESETS)}."},
    )
    config_overrides: str | None = field(default=None, metadata={"help": "JSON object of config fields."})
    image_size: int | None = field(default=None, metadata={"help": "Input side in pixels (default: the images')."})
    image_processor_name: str | None = field(default=None, metadata={"help": "Image processor, if not the model's."})


def main(argv: list[str] | None = None) -> None:
    parser = RecipeArgumentParser(
        (ModelArguments, ModelLoadingArguments, ImageDataArguments, TeacherTrainingArguments),
        description=__doc__,
        groups={ModelArguments: "teacher", ModelLoadingArguments: "Hub", ImageDataArguments: "data"},
    )
    model_args, loading, data_args, training_args = parse_arguments(parser, argv)
    if (model_args.model_name_or_path is None) == (model_args.model_type is None):
        raise ValueError("Pass exactly one of --model_name_or_path (fine-tune) and --model_type (from a config).")
    training_args.remove_unused_columns = False  # the transform needs the raw image column
    setup_logging(training_args)
    check_hub_access(training_args)
    set_seed(training_args.seed)

    dataset, labels = prepare_image_splits(data_args, training_args.seed)
    height, _ = image_shape(dataset)
    image_size = model_args.image_size or height
    if model_args.model_name_or_path:
        model = pretrained_image_model(
            model_args.model_name_or_path,
            labels,
            ignore_mismatched_sizes=loading.ignore_mismatched_sizes,
            **loading.from_pretrained_kwargs(),
        )
        processor = load_image_processor(
            model_args.image_processor_name or model_args.model_name_or_path, **loading.from_pretrained_kwargs()
        )
    else:
        overrides = parse_config_overrides(model_args.config_overrides)
        model = image_model_from_config(model_args.model_type, labels, image_size=image_size, overrides=overrides)
        processor = None
    pixels = pixel_format_for(model.config, processor, default_size=image_size)
    logger.info(f"Teacher: {model.config.model_type}, {model.num_parameters():,} parameters")
    dataset["train"].set_transform(
        DistillationImageTransform(student=pixels, augment=data_args.augmentation(), seed=training_args.seed)
    )
    for split in ("validation", "test"):
        if split in dataset:
            dataset[split].set_transform(DistillationImageTransform(student=pixels))

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"] if training_args.do_train else None,
        eval_dataset=dataset["validation"] if training_args.do_eval else None,
        data_collator=DataCollatorForDistillation(),
        compute_metrics=compute_metrics_fn(),
        processing_class=pixels.processor,
    )
    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "image-classification"}
    card.update(data_args.card_kwargs())
    splits = {"eval": dataset.get("validation"), "test": dataset.get("test")} if training_args.do_eval else {}
    train_evaluate_publish(trainer, splits, card)
    if trainer.is_world_process_zero():
        for snapshot in write_snapshots(training_args.output_dir):
            logger.info("snapshot %s", snapshot)


if __name__ == "__main__":
    sys.exit(run_reporting_errors(main))
