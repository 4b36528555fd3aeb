"""Distil from precomputed teacher logits: the teacher runs once, the training loop never holds it."""

import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

from hf_distill import (
    DataCollatorForDistillation,
    DistillationTrainer,
    DistillationTrainingArguments,
    precompute_teacher_logits,
    read_logits_info,
)

labels = {0: "negative", 1: "positive"}
config = BertConfig(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=64,
    id2label=labels,
    label2id={v: k for k, v in labels.items()},
)
teacher = BertForSequenceClassification(config)  # in practice: from_pretrained("your-fine-tuned-teacher")
student = BertForSequenceClassification(BertConfig(**{**config.to_dict(), "num_hidden_layers": 1}))

torch.manual_seed(0)
train = Dataset.from_dict({"input_ids": torch.randint(5, 100, (64, 12)).tolist(), "label": [0, 1] * 32})
train = precompute_teacher_logits(teacher, train, dtype="float16")  # adds "teacher_logits"; cached by fingerprint
print(read_logits_info(train, "teacher_logits"))  # teacher, label order, dtype: checked against the student

args = DistillationTrainingArguments(
    output_dir="outputs/examples/precomputed",
    alpha=0.5,
    temperature=2.0,
    num_train_epochs=1,
    per_device_train_batch_size=16,
    logging_steps=2,
    report_to=[],
    use_cpu=True,
)
trainer = DistillationTrainer(
    model=student, args=args, train_dataset=train, data_collator=DataCollatorForDistillation()
)
trainer.train()
print(trainer.state.log_history[0])  # loss, loss_ce, loss_kd, grad_norm, ...
