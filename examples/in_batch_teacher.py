"""Distil with an in-batch teacher: the teacher runs on every batch, frozen, under no_grad and autocast."""

import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

from hf_distill import DataCollatorForDistillation, DistillationTrainer, DistillationTrainingArguments

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

args = DistillationTrainingArguments(
    output_dir="outputs/examples/in_batch",
    alpha=0.5,
    temperature=2.0,
    num_train_epochs=1,
    per_device_train_batch_size=16,
    logging_steps=2,
    report_to=[],
    use_cpu=True,
)
trainer = DistillationTrainer(
    model=student, args=args, teacher_model=teacher, train_dataset=train, data_collator=DataCollatorForDistillation()
)
trainer.train()
print(trainer.state.log_history[0])  # loss, loss_ce, loss_kd, grad_norm, ...
