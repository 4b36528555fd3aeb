#!/usr/bin/env python
r"""Distil a text classifier into a smaller student, in the shape of transformers' run_glue.py.

    accelerate launch recipes/text_classification.py --teacher_model_name_or_path teacher/checkpoint-500 \
        --dataset_name glue --dataset_config_name sst2 --text_columns sentence \
        --student_init teacher_layers --student_num_layers 6 --precompute_teacher_logits \
        --alpha 0.5 --temperature 2 --output_dir student --do_train --do_eval --eval_strategy epoch

Students: `teacher_layers` (DistilBERT-style copy of teacher layers), `random` (teacher config, smaller), or
`pretrained` (`--student_model_name_or_path`, with its own tokenizer; the teacher then reads `teacher_` columns).
Teacher logits come from an in-batch teacher, or with `--precompute_teacher_logits` from a dataset column.
`--use_peft` trains a LoRA adapter on a pretrained student; `--do_predict` writes `predict_results.txt` for the test
split (labelled or not); `--push_to_hub` checks the Hub before any work and uploads only once all is saved.
Methods are flags of DistillationTrainingArguments: `--hidden_state_loss mse --attention_loss kl --layer_map 0:1,1:3`
(in-batch teacher only), several teachers (`--teacher_model_name_or_path a,b --teacher_weights 0.7,0.3`), and
`--self_distillation` (teacher: the PEFT student's frozen base with `--use_peft`, else an earlier checkpoint of the
student's architecture). See docs/methods.md.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

from hf_distill import (
    DataCollatorForDistillation,
    DistillationTrainer,
    DistillationTrainingArguments,
    precompute_teacher_logits,
)
from hf_distill.data.labels import count_labeled, encoding_order, label_names
from hf_distill.data.unlabeled import check_alpha_for_unlabeled, training_data_summary
from hf_distill.evaluation.metrics import compute_metrics_fn
from hf_distill.evaluation.model_card import command_line
from hf_distill.methods.pruning import PruningArguments, prune_student
from hf_distill.teachers.loading import load_classifier
from hf_distill.text.augment import TextAugmentationArguments, mask_token_of
from hf_distill.text.data import TextDataArguments, label_list, tokenize_for_distillation
from hf_distill.text.students import (
    STUDENT_INITS,
    STUDENT_PRESETS,
    copied_layers,
    create_student,
    preset_sizes,
    unused_student_options,
)
from hf_distill.text.transfer import assemble_training_set
from hf_distill.workflow.arguments import ModelLoadingArguments, RecipeArgumentParser, parse_arguments, setup_logging
from hf_distill.workflow.console import run_reporting_errors
from hf_distill.workflow.hub import check_hub_access
from hf_distill.workflow.peft import PeftArguments
from hf_distill.workflow.publish import train_evaluate_publish

logger = logging.getLogger(__name__)


@dataclass
class StudentArguments:
    teacher_model_name_or_path: str = field(
        metadata={
            "help": "The fine-tuned teacher (or a snapshot of it); several, comma-separated, are distilled together "
            "(--teacher_weights). The first builds the student and tokenizes for all."
        }
    )
    student_init: str = field(default="teacher_layers", metadata={"help": f"One of {', '.join(STUDENT_INITS)}."})
    student_preset: str | None = field(
        default=None,
        metadata={
            "help": f"A deploy-sized random-init student: {', '.join(STUDENT_PRESETS)} (tiny: 1 layer, 128 wide, "
            "~4M parameters, the teacher's tokenizer; train it with lr 1e-3). Sets --student_init random; explicit "
            "size flags win."
        },
    )
    student_model_name_or_path: str | None = field(default=None, metadata={"help": "For student_init=pretrained."})
    student_layers: str | None = field(
        default=None, metadata={"help": "Teacher layers to copy, e.g. '0,2,4,7,9,11' (default: evenly spread)."}
    )
    student_num_layers: int | None = field(default=None, metadata={"help": "Student depth (default: half)."})
    student_hidden_size: int | None = field(default=None, metadata={"help": "For student_init=random."})
    student_num_attention_heads: int | None = field(default=None, metadata={"help": "For student_init=random."})
    student_intermediate_size: int | None = field(default=None, metadata={"help": "For student_init=random."})
    teacher_tokenizer_name: str | None = field(default=None, metadata={"help": "Default: the teacher's own."})
    precompute_teacher_logits: bool = field(
        default=False, metadata={"help": "Compute teacher logits once into a dataset column instead of in-batch."}
    )
    teacher_logits_dtype: str = field(default="float32", metadata={"help": "Storage dtype: float32 or float16."})


def main(argv: list[str] | None = None) -> dict:
    parser = RecipeArgumentParser(
        (
            StudentArguments,
            ModelLoadingArguments,
            PeftArguments,
            TextDataArguments,
            TextAugmentationArguments,
            PruningArguments,
            DistillationTrainingArguments,
        ),
        description=__doc__,
        groups={
            StudentArguments: "student",
            ModelLoadingArguments: "Hub",
            PeftArguments: "student",
            TextDataArguments: "data",
            TextAugmentationArguments: "data",
            PruningArguments: "student",
            DistillationTrainingArguments: "distillation method",
        },
    )
    parsed = parse_arguments(parser, argv)
    model_args, loading, peft_args, data_args, augmentation, pruning_args, training_args = parsed
    setup_logging(training_args)
    if peft_args.use_peft and model_args.student_init != "pretrained":
        raise ValueError("--use_peft adapts a saved base model: use --student_init pretrained.")
    check_hub_access(training_args)
    set_seed(training_args.seed)

    raw = data_args.load(seed=training_args.seed, cache_dir=loading.cache_dir, token=loading.token)
    if not training_args.do_predict:
        raw.pop("test", None)  # no tokenizing or teacher logits for a split that is never evaluated
    text_columns = data_args.columns(raw)
    hub = loading.from_pretrained_kwargs()
    teacher_paths = model_args.teacher_model_name_or_path.split(",")
    teachers = [load_classifier(path, AutoModelForSequenceClassification, **hub) for path in teacher_paths]
    teacher = teachers[0]
    teacher_tokenizer = AutoTokenizer.from_pretrained(model_args.teacher_tokenizer_name or teacher_paths[0], **hub)
    raw, (labelled, unlabelled) = assemble_training_set(
        raw,
        text_columns,
        label_column=data_args.label_column,
        augmentation=augmentation,
        mask_token=mask_token_of(teacher_tokenizer) if augmentation.augment_copies else None,
        seed=training_args.seed,
    )
    if training_args.do_train:
        check_alpha_for_unlabeled(labelled, unlabelled, training_args.alpha, training_args.alpha_end)
    has_labels = any(count_labeled(split, data_args.label_column)[0] for split in raw.values())
    labels = label_list(raw, data_args.label_column) if has_labels else label_names(teacher.config)
    logger.info(
        "Data: %s; text %s; labels %s", {split: len(rows) for split, rows in raw.items()}, text_columns, labels
    )
    init = "random" if model_args.student_preset else model_args.student_init
    options = {
        "name_or_path": model_args.student_model_name_or_path,
        "layers": [int(i) for i in model_args.student_layers.split(",")] if model_args.student_layers else None,
        **(preset_sizes(model_args.student_preset) if model_args.student_preset else {}),
    }
    explicit = {
        "num_layers": model_args.student_num_layers,
        "hidden_size": model_args.student_hidden_size,
        "num_attention_heads": model_args.student_num_attention_heads,
        "intermediate_size": model_args.student_intermediate_size,
    }
    options.update({name: value for name, value in explicit.items() if value is not None})
    student = create_student(
        init, teacher, **options, labels=labels, seed=training_args.seed, **(hub if init == "pretrained" else {})
    )
    unused = [f"student_{'model_' if n == 'name_or_path' else ''}{n}" for n in unused_student_options(init, options)]
    if unused:
        logger.warning(
            "--student_init %s does not use %s: ignored (and left out of the model card's command).",
            init,
            ", ".join(f"--{name}" for name in unused),
        )
    labels = encoding_order(labels, label_names(student.config))  # ids follow the student's id2label, by name
    logger.info(
        "Teacher %s: %s parameters; %s student: %s",
        model_args.teacher_model_name_or_path,
        f"{teacher.num_parameters():,}",
        model_args.student_init,
        f"{student.num_parameters():,}",
    )
    student = peft_args.apply(student)
    tokenizer = (
        AutoTokenizer.from_pretrained(model_args.student_model_name_or_path, **hub)
        if model_args.student_init == "pretrained"
        else teacher_tokenizer
    )
    with training_args.main_process_first(desc="tokenization"):
        data = tokenize_for_distillation(
            raw,
            tokenizer,
            teacher_tokenizer=teacher_tokenizer,
            teacher_input_prefix=training_args.teacher_input_prefix,
            text_columns=text_columns,
            labels=labels,
            label_column=data_args.label_column,
            max_length=data_args.max_seq_length,
            pad_to_max_length=data_args.pad_to_max_length,
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=not data_args.overwrite_cache,
        )
    if model_args.precompute_teacher_logits:  # every process at once: each computes one shard
        columns = training_args.logits_columns
        if len(columns) != len(teachers):
            raise ValueError(
                f"--precompute_teacher_logits with {len(teachers)} teachers needs --teacher_logits_columns with one "
                f"column name per teacher (got {columns})."
            )
        for model, column in zip(teachers, columns, strict=True):
            data = precompute_teacher_logits(
                model,
                data,
                column=column,
                teacher_input_prefix=training_args.teacher_input_prefix,
                batch_size=training_args.per_device_eval_batch_size,
                dtype=model_args.teacher_logits_dtype,
                device=training_args.device,
            )
        prefixed = [c for c in data["train"].column_names if c.startswith(training_args.teacher_input_prefix)]
        data = data.remove_columns([c for c in prefixed if c not in columns])

    collator = DataCollatorForDistillation(
        tokenizer=tokenizer,
        teacher_tokenizer=teacher_tokenizer,
        teacher_input_prefix=training_args.teacher_input_prefix,
        teacher_logits_column=training_args.teacher_logits_column,
    )
    pruning_metrics = {}
    if pruning_args.active:  # structured pruning of the student, then recovery by the training below
        student, pruning_metrics = prune_student(student, data["train"], collator, pruning_args, training_args.seed)
        logger.info(f"Pruned the student: {pruning_metrics}")

    in_batch = teachers if len(teachers) > 1 else teacher
    if model_args.precompute_teacher_logits or (training_args.self_distillation and peft_args.use_peft):
        in_batch = None  # logits from the dataset, or the PEFT student's own frozen base
    trainer = DistillationTrainer(
        model=student,
        args=training_args,
        teacher_model=in_batch,
        train_dataset=data["train"] if training_args.do_train else None,
        eval_dataset=data.get("validation"),
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics_fn(),
    )
    starts_from = {"pretrained": model_args.student_model_name_or_path, "random": None}
    starts_from = None if model_args.student_preset else starts_from.get(model_args.student_init, teacher_paths[0])
    method = {"training_data": training_data_summary(labelled, unlabelled)}
    if augmentation.augment_copies:
        method["augment_copies"] = augmentation.augment_copies
    if init == "teacher_layers":  # named in the card: which teacher layers the student started from
        method["teacher_layers"] = copied_layers(teacher.config, options["layers"], options.get("num_layers"))
    card = {"finetuned_from": starts_from, "tasks": "text-classification", "method": method}
    card |= data_args.card_kwargs()
    card["reproduce_command"] = command_line(ignored=tuple(unused))
    eval_splits = {"eval": data.get("validation") if training_args.do_eval else None}
    metrics = train_evaluate_publish(
        trainer, eval_splits, card, data.get("test") if training_args.do_predict else None
    )
    if pruning_metrics:
        trainer.save_metrics("pruning", pruning_metrics)
    return metrics | pruning_metrics


if __name__ == "__main__":
    sys.exit(run_reporting_errors(main))
