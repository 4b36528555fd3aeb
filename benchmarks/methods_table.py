"""Each distillation method against plain KD and CE-only, same budget, several seeds: the table of docs/methods.md.

Every method is a set of `DistillationTrainingArguments` flags (exactly what the recipes take) on top of one shared
budget; each (method, seed) run trains a fresh student and scores it on a fixed test split. Data splits and teacher
logits are fixed (split seed 42, the teacher's); the seed changes the student's initialisation (ViT), data order and
dropout. Results are appended to a JSON-lines file, one line per run, so an interrupted study resumes where it
stopped; ``--report`` prints the markdown table (mean, std over seeds, difference to plain KD).

    python benchmarks/methods_table.py tweets --seeds 0 1 2 --output results/methods_tweets.jsonl
    python benchmarks/methods_table.py fmnist --seeds 0 1 2 --output results/methods_fmnist.jsonl
    python benchmarks/methods_table.py --report results/methods_tweets.jsonl results/methods_fmnist.jsonl

tweets: the demo student (3 layers copied from the MiniLM teacher, DistilBERT-style) on the built-in tweets, teacher
logits precomputed (the teacher runs in the loop for hidden-state distillation, whose targets are never precomputed),
scored on the test split (3,725 tweets). fmnist (logit methods only: a CNN teacher has no hidden states for a ViT): the ViT of recipes/demo_fashion_mnist.sh
from scratch, teacher logits of 4 augmented views per training image precomputed once, scored on the 10,000 test images.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from datasets import DatasetDict, load_from_disk
from transformers import AutoModelForSequenceClassification, AutoTokenizer, HfArgumentParser, set_seed

from hf_distill import (
    DataCollatorForDistillation,
    DistillationTrainer,
    DistillationTrainingArguments,
    precompute_teacher_logits,
)
from hf_distill.evaluation.metrics import compute_metrics_fn

# Each method: flags on top of the shared budget (alpha 0.5, T 2, kl). Fractions of training are filled per task.
METHODS: dict[str, list[str]] = {
    "ce_only": ["--alpha", "1.0"],
    "kd": [],
    "mse": ["--distillation_loss", "mse"],
    "dkd": ["--distillation_loss", "dkd"],
    "dist": ["--distillation_loss", "dist"],
    "reverse_kl": ["--distillation_loss", "reverse_kl"],
    "jsd": ["--distillation_loss", "jsd"],
    "swap": ["--teacher_correction", "swap"],
    "logit_standardization": ["--logit_standardization"],
    "cosine_alpha": ["--alpha", "0.1", "--alpha_end", "0.9", "--alpha_schedule", "cosine"],
    "kd_then_ce": ["--distillation_epochs", "{half_epochs}"],
    "two_stage": ["--two_stage_epochs", "{tenth_epochs}"],
    "hidden_state_mse": ["--hidden_state_loss", "mse"],  # teacher in the loop: hidden states are never precomputed
}
IN_LOOP = {"hidden_state_mse"}
TWEETS_TEACHER = "/work/artifacts/tweets_teacher"
FMNIST_TEACHER = "/work/artifacts/fmnist_teacher"
VIT = (
    '{"patch_size": 4, "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 128}'
)
SPLIT_SEED = 42


def budget_flags(task: str, ns: argparse.Namespace) -> list[str]:
    common = ["--alpha", "0.5", "--temperature", "2", "--num_train_epochs", str(ns.epochs)]
    common += ["--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true", "--logging_steps", "10"]
    if task == "tweets":
        common += ["--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128"]
        common += ["--train_sampling_strategy", "group_by_length"]
        return common + ["--learning_rate", "1e-4", "--warmup_steps", "3"]
    common += ["--per_device_train_batch_size", "128", "--per_device_eval_batch_size", "256"]
    common += ["--remove_unused_columns", "false"]  # the image transform reads the raw image column
    return common + ["--learning_rate", "1e-3", "--warmup_steps", "20", "--weight_decay", "0.05"]


def training_args(flags: list[str], output_dir: str, seed: int) -> DistillationTrainingArguments:
    parser = HfArgumentParser(DistillationTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(["--output_dir", output_dir, "--seed", str(seed), *flags])
    return args


def tweets_setup(ns: argparse.Namespace):
    from hf_distill.text.data import label_list, load_tweet_sentiment, tokenize_for_distillation
    from hf_distill.text.students import create_student

    teacher = AutoModelForSequenceClassification.from_pretrained(ns.teacher or TWEETS_TEACHER)
    tokenizer = AutoTokenizer.from_pretrained(ns.teacher or TWEETS_TEACHER)
    cache = (
        Path(ns.output).parent
        / f"tweets_data_{Path(ns.teacher or TWEETS_TEACHER).name}_{ns.train_samples}_{ns.test_samples}"
    )
    if cache.exists():  # tokenized, with teacher logits: computed once, shared by the processes of one study
        data = load_from_disk(str(cache))
    else:
        raw = load_tweet_sentiment(seed=SPLIT_SEED)
        test = raw["test"].select(range(min(ns.test_samples, len(raw["test"]))))
        raw = DatasetDict(train=raw["train"].select(range(ns.train_samples)), test=test)
        data = tokenize_for_distillation(raw, tokenizer, text_columns=["text"], labels=label_list(raw), max_length=48)
        data = precompute_teacher_logits(teacher, data, batch_size=128)
        # Evaluation in order of length: batches pad less; the metrics do not depend on the order.
        lengths = [len(ids) for ids in data["test"]["input_ids"]]
        data["test"] = data["test"].add_column("length", lengths).sort("length").remove_columns("length")
        data.save_to_disk(str(cache) + ".tmp")
        Path(str(cache) + ".tmp").rename(cache)

    def run(args: DistillationTrainingArguments) -> dict[str, float]:
        set_seed(args.seed)
        student = create_student("teacher_layers", teacher, num_layers=3)
        in_loop = args.hidden_state_loss is not None or args.attention_loss is not None
        splits = {name: split.remove_columns(["teacher_logits"]) if in_loop else split for name, split in data.items()}
        trainer = DistillationTrainer(
            model=student,
            args=args,
            teacher_model=teacher if in_loop else None,
            train_dataset=splits["train"],
            processing_class=tokenizer,
            data_collator=DataCollatorForDistillation(tokenizer=tokenizer),
            compute_metrics=compute_metrics_fn(),
        )
        trainer.train()
        return trainer.evaluate(splits["test"], metric_key_prefix="test")

    return run, len(data["test"])


def fmnist_setup(ns: argparse.Namespace):
    from hf_distill.teachers.loading import load_teacher
    from hf_distill.vision import (
        DistillationImageTransform,
        ImageDataArguments,
        image_model_from_config,
        image_shape,
        load_image_processor,
        parse_config_overrides,
        pixel_format_for,
        precompute_teacher_views,
        prepare_image_splits,
    )

    data_args = ImageDataArguments(dataset_name=ns.dataset, max_train_samples=ns.train_samples, min_crop_scale=0.5)
    dataset, labels = prepare_image_splits(data_args, SPLIT_SEED)
    # The official test split (Fashion-MNIST: 10,000 images); datasets without one use their validation split.
    dataset = DatasetDict(train=dataset["train"], test=dataset["test" if "test" in dataset else "validation"])
    height, _ = image_shape(dataset)
    path = ns.teacher or FMNIST_TEACHER
    teacher = load_teacher(path)
    teacher_format = pixel_format_for(teacher.config, load_image_processor(path), default_size=height)
    augment = data_args.augmentation()
    cache = Path(ns.output).parent / f"{ns.dataset}_views_{Path(path).name}_{ns.train_samples}"
    if cache.exists():  # teacher logits of the views: computed once, shared by the processes of one study
        dataset = load_from_disk(str(cache))
    else:
        for split in dataset:
            train = split == "train"
            dataset[split] = precompute_teacher_views(
                teacher,
                dataset[split],
                teacher_format=teacher_format,
                augment=augment if train else None,
                num_views=4 if train else 1,
                seed=SPLIT_SEED,
                batch_size=256,
            )
        dataset.save_to_disk(str(cache) + ".tmp")
        Path(str(cache) + ".tmp").rename(cache)

    def run(args: DistillationTrainingArguments) -> dict[str, float]:
        set_seed(args.seed)
        student = image_model_from_config("vit", labels, image_size=height, overrides=parse_config_overrides(VIT))
        student_format = pixel_format_for(student.config, None, default_size=height)
        for split in dataset:
            dataset[split].set_transform(
                DistillationImageTransform(
                    student=student_format,
                    teacher=None,
                    augment=augment if split == "train" else None,
                    teacher_logits_column=args.teacher_logits_column,
                    seed=args.seed,
                )
            )
        trainer = DistillationTrainer(
            model=student,
            args=args,
            train_dataset=dataset["train"],
            data_collator=DataCollatorForDistillation(),
            compute_metrics=compute_metrics_fn(),
        )
        trainer.train()
        return trainer.evaluate(dataset["test"], metric_key_prefix="test")

    return run, len(dataset["test"])


def run_study(ns: argparse.Namespace) -> None:
    output = Path(ns.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["method"], r["seed"]) for r in read_results([output])}
    run, test_size = (tweets_setup if ns.task == "tweets" else fmnist_setup)(ns)
    fill = {"half_epochs": str(ns.epochs / 2), "tenth_epochs": str(ns.epochs / 10)}
    methods = ns.methods or [m for m in METHODS if ns.task == "tweets" or m not in IN_LOOP]
    for seed in ns.seeds:  # seeds outermost: a cut-short study still covers every method
        for method in methods:
            if (method, seed) in done:
                continue
            flags = budget_flags(ns.task, ns) + [flag.format(**fill) for flag in METHODS[method]]
            with tempfile.TemporaryDirectory(prefix=f"{ns.task}_") as tmp:
                args = training_args(flags, tmp, seed)
                start = time.perf_counter()
                metrics = run(args)
            record = {
                "task": ns.task,
                "method": method,
                "seed": seed,
                "flags": flags,
                "train_samples": ns.train_samples,
                "epochs": ns.epochs,
                "test_size": test_size,
                "teacher": ns.teacher or (TWEETS_TEACHER if ns.task == "tweets" else FMNIST_TEACHER),
                "seconds": round(time.perf_counter() - start, 1),
                **{k: v for k, v in metrics.items() if k.startswith("test_")},
            }
            with output.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{method} seed {seed}: test accuracy {metrics['test_accuracy']:.4f}", flush=True)


def read_results(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for path in paths if path.exists() for line in path.read_text().splitlines() if line]


def report(paths: list[Path]) -> str:
    """Markdown: per task, test accuracy, macro-F1 and agreement with the teacher (percent, mean ± std over seeds), and
    the difference in accuracy to plain KD ± its standard error over seeds.

    The seeds share one test set, so their spread is training noise only. The verdict also counts the test sample: a
    difference is called one only when it exceeds twice ``sqrt(se_seeds^2 + se_test^2)``, with ``se_test`` the standard
    error of one accuracy on the test set (``sqrt(p (1 - p) / n)``). That is conservative for two methods scored on the
    same examples (their errors are correlated), so "within noise" means "not shown by this table", not "equal".
    """
    by_task: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in read_results(paths):
        by_task[record["task"]][record["method"]].append(record)
    lines = []
    for task, methods in by_task.items():
        kd = [100 * r["test_accuracy"] for r in methods.get("kd", [])]
        test_size = methods["kd"][0]["test_size"] if kd else None
        se_test = math.sqrt(statistics.mean(kd) * (100 - statistics.mean(kd)) / test_size) if kd else float("nan")
        teacher = 100 * next(iter(methods.values()))[0]["test_teacher_accuracy"]
        lines += [
            f"\n**{task}** (test set: {test_size} examples, one accuracy's standard error there {se_test:.2f} points; "
            f"teacher accuracy {teacher:.2f})\n",
            "| method | seeds | test accuracy (%) | test macro-F1 (%) | agreement (%) | accuracy vs. KD (points) | |"
            " vs. KD, paired by seed (p) |",
            "|:---|---:|---:|---:|---:|---:|:---|---:|",
        ]
        for method in [m for m in METHODS if m in methods]:
            acc = [100 * r["test_accuracy"] for r in methods[method]]
            f1 = [100 * r["test_macro_f1"] for r in methods[method]]
            agree = [100 * r["test_agreement"] for r in methods[method] if "test_agreement" in r]
            diff, verdict, paired = "", "", ""
            if method != "kd" and len(kd) > 1 and len(acc) > 1:
                paired = paired_difference(methods[method], methods["kd"])
                delta = statistics.mean(acc) - statistics.mean(kd)
                se_seeds = math.sqrt(statistics.variance(acc) / len(acc) + statistics.variance(kd) / len(kd))
                diff = f"{delta:+.2f} ± {se_seeds:.2f}"
                noise = 2 * math.sqrt(se_seeds**2 + se_test**2)
                verdict = "within noise" if abs(delta) < noise else ("better" if delta > 0 else "worse")
            lines.append(
                f"| {method} | {len(acc)} | {mean_std(acc)} | {mean_std(f1)} | {mean_std(agree)} | {diff} | {verdict} "
                f"| {paired} |"
            )
    return "\n".join(lines)


def paired_difference(runs: list[dict], kd_runs: list[dict]) -> str:
    """Test accuracy minus plain KD's on the same seed (same initialisation, data order and test set), in points:
    mean ± std over the seeds both ran, and a paired t-test's p-value."""
    from scipy.stats import ttest_rel

    kd = {r["seed"]: 100 * r["test_accuracy"] for r in kd_runs}
    pairs = [(100 * r["test_accuracy"], kd[r["seed"]]) for r in runs if r["seed"] in kd]
    if len(pairs) < 2:
        return ""
    diffs = [a - b for a, b in pairs]
    p = ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue
    return f"{statistics.mean(diffs):+.2f} ± {statistics.stdev(diffs):.2f} ({p:.2g})"


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", nargs="?", choices=["tweets", "fmnist"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="Default: all.")
    parser.add_argument("--train_samples", type=int, default=None, help="Default: 1000 (tweets), 2000 (fmnist).")
    parser.add_argument("--epochs", type=float, default=None, help="Default: 1 (tweets), 3 (fmnist).")
    parser.add_argument("--test_samples", type=int, default=2500, help="tweets: the first N of the test split.")
    parser.add_argument("--teacher", help="Teacher folder (default: the shared teacher of the task).")
    parser.add_argument("--dataset", default="fashion_mnist", help="fmnist: the image dataset (for smoke tests).")
    parser.add_argument("--output", help="JSON-lines results file (appended; finished runs are skipped).")
    parser.add_argument("--report", nargs="+", type=Path, help="Print the markdown table of these results files.")
    ns = parser.parse_args()
    if ns.report:
        print(report(ns.report))
        return
    if ns.task is None or ns.output is None:
        parser.error("give a task and --output, or --report FILES")
    ns.train_samples = ns.train_samples or (1000 if ns.task == "tweets" else 2000)
    ns.epochs = ns.epochs or (1.0 if ns.task == "tweets" else 3.0)
    run_study(ns)


if __name__ == "__main__":
    main()
