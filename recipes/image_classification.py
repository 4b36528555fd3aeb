#!/usr/bin/env python
"""Distil an image classifier (any `AutoModelForImageClassification`) into a ViT or DeiT student.

In the shape of transformers' `run_image_classification.py`. The student is built from a config (random init, sized
for the images) or loaded from a path. Teacher and student see the same augmented view, each at its own resolution
and normalisation. Two ways to get the teacher's logits:
  * in the loop (default): the teacher runs on `teacher_pixel_values` every batch;
  * `--teacher_views K`: the teacher labels K random views per training image once, and each epoch draws one.
`--student_model_type deit` trains a DeiTForImageClassificationWithTeacher through its distillation token
(`--distillation_loss kl` soft, `hard` hard distillation; Touvron et al., 2021).
With a ViT/DeiT teacher at the student's patch grid, `--hidden_state_loss mse --attention_loss kl` also distils its
layers (in the loop only; see docs/methods.md).

    python recipes/image_classification.py --dataset_name fashion_mnist --teacher_model_name_or_path teacher \
        --student_config_overrides '{"patch_size": 4, "hidden_size": 64, "num_hidden_layers": 4}' \
        --teacher_views 4 --output_dir student --do_train --do_eval
"""

import logging
from dataclasses import dataclass, field

from datasets import DatasetDict
from transformers import DeiTForImageClassificationWithTeacher, HfArgumentParser, set_seed

from hf_distill import DataCollatorForDistillation, DistillationTrainer, DistillationTrainingArguments
from hf_distill.labels import count_labeled, encode_label_column, encoding_order, label_names
from hf_distill.metrics import compute_metrics_fn
from hf_distill.teacher import load_teacher
from hf_distill.unlabeled import check_alpha_for_unlabeled, training_data_summary
from hf_distill.vision import (
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
)
from hf_distill.workflow.arguments import ModelLoadingArguments, parse_arguments, setup_logging
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
        metadata={"help": "Student built from a config: vit, or deit (trained with its distillation token)."},
    )
    student_config_overrides: str | None = field(default=None, metadata={"help": "JSON object of config fields."})
    student_image_size: int | None = field(default=None, metadata={"help": "Student input side (default: images')."})
    teacher_views: int = field(
        default=0,
        metadata={"help": "0: teacher in the loop. K > 0: precompute the teacher's logits of K views per image."},
    )
    teacher_batch_size: int = field(default=128, metadata={"help": "Batch size of the view precomputation."})
    clean_teacher_logits: bool = field(
        default=False,
        metadata={
            "help": "Cache the teacher's logits of the clean image only; the student still sees augmented views."
        },
    )


def build_student(args: ModelArguments, labels: list[str], side: int, **hub):
    if args.student_model_name_or_path:
        return pretrained_image_model(args.student_model_name_or_path, labels, **hub)
    overrides = parse_config_overrides(args.student_config_overrides)
    return image_model_from_config(
        args.student_model_type,
        labels,
        image_size=args.student_image_size or side,
        overrides=overrides,
        with_distillation_token=args.student_model_type == "deit",
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = HfArgumentParser(
        (ModelArguments, ModelLoadingArguments, ImageDataArguments, DistillationTrainingArguments)
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
    student = build_student(model_args, labels, height, **hub)
    order = encoding_order(labels, label_names(student.config))  # a pretrained student's own label order, by name
    counts = count_labeled(dataset["train"])  # ids in that order; unlabelled images (--unlabeled_dir) get -100
    dataset = DatasetDict({name: encode_label_column(split, "label", order) for name, split in dataset.items()})
    if training_args.do_train:
        check_alpha_for_unlabeled(*counts, training_args.alpha, training_args.alpha_end)
    processor_name = model_args.image_processor_name or model_args.student_model_name_or_path
    student_processor = processor_name and load_image_processor(processor_name, **hub)
    student_format = pixel_format_for(student.config, student_processor or None, default_size=height)
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
    return train_evaluate_publish(trainer, splits, card)


if __name__ == "__main__":
    main()
