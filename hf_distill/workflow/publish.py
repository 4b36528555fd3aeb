"""The train / evaluate / publish tail that every recipe shares, in the shape of transformers' examples."""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from transformers import Trainer


def train_evaluate_publish(
    trainer: Trainer, eval_splits: dict[str, Dataset | None], card: dict[str, Any] | None = None
) -> dict[str, float]:
    """Train (if ``--do_train``), save, evaluate each ``{metric prefix: dataset}``, then push or write the card.

    Metrics are logged and saved (``{prefix}_results.json``, ``all_results.json``) as `run_glue.py` does; the card
    goes to the Hub with ``--push_to_hub``, else to ``output_dir/README.md``. Returns all metrics.
    """
    args, card = trainer.args, card or {}
    metrics: dict[str, float] = {}
    if args.do_train:
        result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        metrics.update(result.metrics)
    for prefix, dataset in eval_splits.items():
        if dataset is not None:
            split_metrics = trainer.evaluate(dataset, metric_key_prefix=prefix)
            trainer.log_metrics(prefix, split_metrics)
            trainer.save_metrics(prefix, split_metrics)
            metrics.update(split_metrics)
    if args.push_to_hub:
        trainer.push_to_hub(**card)
    elif trainer.is_world_process_zero():
        trainer.create_model_card(**card)
    return metrics
