"""The train / evaluate / predict / publish tail that every recipe shares, in the shape of transformers' examples."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import Trainer

from ..data.labels import label_names
from ..teachers.loading import unwrap
from .hub import push_or_explain

logger = logging.getLogger(__name__)
PREDICTIONS_FILE = "predict_results.txt"


def train_evaluate_publish(
    trainer: Trainer,
    eval_splits: dict[str, Dataset | None],
    card: dict[str, Any] | None = None,
    predict_dataset: Dataset | None = None,
) -> dict[str, float]:
    """Train (if ``--do_train``), save, evaluate each ``{metric prefix: dataset}``, predict, then card and push.

    As `run_glue.py` does: metrics are saved (``{prefix}_results.json``, ``all_results.json``; one log line per split
    shows them instead of run_glue's ``***** metrics *****`` block), and
    ``predict_dataset`` (labelled or not; ``--do_predict``) is scored into ``predict_results.txt`` with label names,
    plus ``test_*`` metrics when it has labels. A trained student gets ``output_dir/README.md``; with
    ``--push_to_hub`` the upload comes last, after everything is on disk (see :func:`push_or_explain`). An untrained
    model gets neither card nor upload. Returns all metrics.
    """
    args, card = trainer.args, card or {}
    metrics: dict[str, float] = {}
    if args.do_train:
        result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        trainer.save_model(_internal_call=True)  # as Trainer does internally: save without `push_to_hub`'s upload
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        metrics.update(result.metrics)
    for prefix, dataset in eval_splits.items():
        if dataset is not None:
            split_metrics = trainer.evaluate(dataset, metric_key_prefix=prefix)
            trainer.save_metrics(prefix, split_metrics)
            logger.info("%s", summary(prefix, split_metrics))
            metrics.update(split_metrics)
    if predict_dataset is not None:
        metrics.update(write_predictions(trainer, predict_dataset))
    if not args.do_train:
        logger.info("Metrics saved in %s (no --do_train: no model card, no upload)", args.output_dir)
        return metrics
    if trainer.is_world_process_zero():
        trainer.create_model_card(**card)
        logger.info("Model, metrics and model card saved in %s", args.output_dir)
    if args.push_to_hub:
        push_or_explain(trainer, **card)
    return metrics


def write_predictions(trainer: Trainer, dataset: Dataset, prefix: str = "test") -> dict[str, float]:
    """Write ``index<TAB>prediction`` (label names) for ``dataset`` to ``output_dir/predict_results.txt``, as
    `run_glue.py` does; returns ``{prefix}_*`` metrics (empty for an unlabelled dataset)."""
    output = trainer.predict(dataset, metric_key_prefix=prefix)  # in row order (DistillationTrainer's eval sampler)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    names = label_names(unwrap(trainer.model).config)
    labelled = output.label_ids is not None and bool((np.asarray(output.label_ids) != -100).any())
    if labelled:
        trainer.log(output.metrics)  # kept in the log history, where the model card finds them
        trainer.save_metrics(prefix, output.metrics)
        logger.info("%s", summary(prefix, output.metrics))
    if trainer.is_world_process_zero():
        path = os.path.join(trainer.args.output_dir, PREDICTIONS_FILE)
        with open(path, "w") as writer:
            writer.write("index\tprediction\n")
            writer.writelines(f"{i}\t{names[c]}\n" for i, c in enumerate(np.argmax(logits, axis=-1)))
        logger.info("Predictions for %d rows written to %s", len(dataset), path)
    return output.metrics if labelled else {}


def summary(prefix: str, metrics: dict[str, float]) -> str:
    """One line of a split's scores, e.g. ``test: accuracy 0.8120, agreement 0.9340, teacher_accuracy 0.8300``."""
    skipped = ("_runtime", "_per_second", "epoch")
    scores = {k[len(prefix) + 1 :]: v for k, v in metrics.items() if k.startswith(prefix) and not k.endswith(skipped)}
    return f"{prefix}: " + ", ".join(f"{name} {value:.4f}" for name, value in scores.items())
