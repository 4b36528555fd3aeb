#!/usr/bin/env python
r"""Distil an image classifier (any `AutoModelForImageClassification`) into a ViT, DeiT or ResNet student.

In the shape of transformers' `run_image_classification.py`. The student is built from a config (random init, sized
for the images) or loaded from a path. Teacher and student see the same augmented view, each at its own resolution
and normalisation. Two ways to get the teacher's logits:
  * in the loop (default): the teacher runs on `teacher_pixel_values` every batch;
  * `--teacher_views K`: the teacher labels K random views per training image once, and each epoch draws one.
`--student_model_type resnet-tiny` (or `resnet`, `resnet18`, ... with `--student_config_overrides`) builds a CNN.
`--prune_channels 0.5` makes the student the ResNet teacher (or `--student_model_name_or_path`) with half of every
stage's channels removed (Network Slimming), recovered by the training below.
`--student_model_type deit` trains a DeiTForImageClassificationWithTeacher through its distillation token
(`--distillation_loss kl` soft, `hard` hard distillation; Touvron et al., 2021).
With a ViT/DeiT teacher at the student's patch grid, `--hidden_state_loss mse --attention_loss kl` also distils its
layers (in the loop only; see docs/methods.md).

    python recipes/image_classification.py --dataset_name fashion_mnist --teacher_model_name_or_path teacher \
        --student_config_overrides '{"patch_size": 4, "hidden_size": 64, "num_hidden_layers": 4}' \
        --teacher_views 4 --output_dir student --do_train --do_eval
"""

import logging
import sys
from dataclasses import dataclass, field

from datasets import DatasetDict
from transformers import DeiTForImageClassificationWithTeacher, set_seed

from hf_distill import DataCollatorForDistillation, DistillationTrainer, DistillationTrainingArguments
from hf_distill.data.labels import count_labeled, encode_label_column, encoding_order, label_names
from hf_distill.data.unlabeled import check_alpha_for_unlabeled, training_data_summary
from hf_distill.evaluation.metrics import compute_metrics_fn
from hf_distill.teachers.loading import load_teacher
from hf_distill.vision import (
    IMAGE_MODEL_PRESETS,
    DeiTDistillationTrainer,
    DistillationImageTransform,
    ImageDataArguments,
    image_model_from_config,
    image_shape,
    load_image_processor,
    parse_config_overrides,
    pixel_format_for,
    precompute_teacher_views,
    prepare_image_splits,
    pretrained_image_model,
    prune_resnet_channels,
)
from hf_distill.workflow.arguments import ModelLoadingArguments, RecipeArgumentParser, parse_arguments, setup_logging
from hf_distill.workflow.console import run_reporting_errors
from hf_distill.workflow.hub import check_hub_access
from hf_distill.workflow.publish import train_evaluate_publish

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    teacher_model_name_or_path: str = field(metadata={"help": "The teacher: an image classifier path or Hub id."})
    student_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A pretrained student to tune (its head is replaced for the teacher's labels)."},
    )
    image_processor_name: str | None = field(
        default=None, metadata={"help": "The student's image processor, if not the pretrained student's own."}
    )
    student_model_type: str = field(
        default="vit",
        metadata={
            "help": "Student built from a config: vit, deit (trained with its distillation token), resnet (or any "
            f"image model type), or a preset: {', '.join(IMAGE_MODEL_PRESETS)}."
        },
    )
    student_config_overrides: str | None = field(default=None, metadata={"help": "JSON object of config fields."})
    student_image_size: int | None = field(default=None, metadata={"help": "Student input side (default: images')."})
    teacher_views: int = field(
        default=0,
        metadata={"help": "0: teacher in the loop. K > 0: precompute the teacher's logits of K views per image."},
    )
    teacher_batch_size: int = field(default=128, metadata={"help": "Batch size of the view precomputation."})
    prune_channels: float = field(
        default=0.0,
        metadata={
            "help": "Share of every stage's channels removed from a ResNet: the student is then the teacher (or "
            "--student_model_name_or_path) pruned, not a model from --student_model_type."
        },
    )
    clean_teacher_logits: bool = field(
        default=False,
        metadata={
            "help": "Cache the teacher's logits of the clean image only; the student still sees augmented views."
        },
    )


def build_student(args: ModelArguments, labels: list[str], side: int, teacher, **hub):
    if args.prune_channels and not args.student_model_name_or_path:
        if args.student_model_type != "vit" or args.student_config_overrides:
            raise ValueError(
                "--prune_channels prunes the teacher (or --student_model_name_or_path), not a model built from a "
                "config: drop --student_model_type / --student_config_overrides, or --prune_channels."
            )
        return teacher  # pruned into a new, smaller model in main()
    if args.student_model_name_or_path:
        return pretrained_image_model(args.student_model_name_or_path, labels, **hub)
    overrides = parse_config_overrides(args.student_config_overrides)
    return image_model_from_config(
        args.student_model_type,
        labels,
        image_size=side,
        overrides=overrides,
        with_distillation_token=args.student_model_type == "deit",
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = RecipeArgumentParser(
        (ModelArguments, ModelLoadingArguments, ImageDataArguments, DistillationTrainingArguments),
        description=__doc__,
        groups={
            ModelArguments: "student",
            ModelLoadingArguments: "Hub",
            ImageDataArguments: "data",
            DistillationTrainingArguments: "distillation method",
        },
    )
    model_args, loading, data_args, training_args = parse_arguments(parser, argv)
    training_args.remove_unused_columns = False  # the transform needs the raw image column
    setup_logging(training_args)
    check_hub_access(training_args)
    set_seed(training_args.seed)
    hub = loading.from_pretrained_kwargs()

    dataset, labels = prepare_image_splits(data_args, training_args.seed)
    height, _ = image_shape(dataset)
    teacher = load_teacher(model_args.teacher_model_name_or_path, **hub)
    teacher_format = pixel_format_for(
        teacher.config, load_image_processor(model_args.teacher_model_name_or_path, **hub), default_size=height
    )
    student_side = model_args.student_image_size or height  # CNN configs have no image_size: the processor's size
    student = build_student(model_args, labels, student_side, teacher, **hub)
    pruning = {}
    if model_args.prune_channels:  # Network Slimming, then recovery by the training below
        pruned = prune_resnet_channels(student, model_args.prune_channels)
        pruning = {"parameters_before": student.num_parameters(), "parameters_after": pruned.num_parameters()}
        student = pruned
    order = encoding_order(labels, label_names(student.config))  # a pretrained student's own label order, by name
    counts = count_labeled(dataset["train"])  # ids in that order; unlabelled images (--unlabeled_dir) get -100
    dataset = DatasetDict({name: encode_label_column(split, "label", order) for name, split in dataset.items()})
    if training_args.do_train:
        check_alpha_for_unlabeled(*counts, training_args.alpha, training_args.alpha_end)
    processor_name = model_args.image_processor_name or model_args.student_model_name_or_path
    if model_args.prune_channels:  # the pruned teacher sees the teacher's pixels
        processor_name = processor_name or model_args.teacher_model_name_or_path
    student_processor = processor_name and load_image_processor(processor_name, **hub)
    student_format = pixel_format_for(student.config, student_processor or None, default_size=student_side)
    logger.info(f"Student: {student.config.model_type}, {student.num_parameters():,} parameters")

    augment = data_args.augmentation()
    in_loop = model_args.teacher_views == 0
    if not in_loop:
        for split in dataset:
            views = split == "train" and augment is not None and not model_args.clean_teacher_logits
            dataset[split] = precompute_teacher_views(
                teacher,
                dataset[split],
                teacher_format=teacher_format,
                augment=augment if views else None,
                num_views=model_args.teacher_views if views else 1,
                column=training_args.teacher_logits_column,
                seed=training_args.seed,
                batch_size=model_args.teacher_batch_size,
            )
    for split in dataset:
        dataset[split].set_transform(
            DistillationImageTransform(
                student=student_format,
                teacher=teacher_format if in_loop else None,
                augment=augment if split == "train" else None,
                teacher_input_prefix=training_args.teacher_input_prefix,
                teacher_logits_column=training_args.teacher_logits_column,
                seed=training_args.seed,
                clean_teacher_logits=model_args.clean_teacher_logits,
            )
        )

    deit = isinstance(student, DeiTForImageClassificationWithTeacher)
    trainer = (DeiTDistillationTrainer if deit else DistillationTrainer)(
        model=student,
        args=training_args,
        teacher_model=teacher if in_loop else None,
        train_dataset=dataset["train"] if training_args.do_train else None,
        eval_dataset=dataset["validation"] if training_args.do_eval else None,
        data_collator=DataCollatorForDistillation(teacher_input_prefix=training_args.teacher_input_prefix),
        compute_metrics=compute_metrics_fn(),
        processing_class=student_format.processor,
    )
    method = {"teacher_views": model_args.teacher_views, "augmentation": data_args.augmentation_settings()}
    method["training_data"] = training_data_summary(*counts)
    card = {"tasks": "image-classification", "method": method, **data_args.card_kwargs()}
    splits = {"eval": dataset.get("validation"), "test": dataset.get("test")} if training_args.do_eval else {}
    metrics = train_evaluate_publish(trainer, splits, card)
    if pruning:
        trainer.save_metrics("pruning", pruning)
        metrics |= pruning
    return metrics


if __name__ == "__main__":
    sys.exit(run_reporting_errors(main))
