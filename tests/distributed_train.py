"""Trains a tiny student with an in-batch teacher; run under `torchrun` by tests/test_distributed.py.

Usage: python tests/distributed_train.py OUTPUT_JSON PER_DEVICE_BATCH_SIZE
"""

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_distill import DataCollatorForDistillation, DistillationTrainer  # noqa: E402
from tests.conftest import make_args, tiny_bert, tiny_text_dataset  # noqa: E402


def main(output: str, batch_size: int) -> None:
    data = tiny_text_dataset(16).remove_columns("text")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = DistillationTrainer(
            model=tiny_bert(seed=2),
            args=make_args(Path(tmp), per_device_train_batch_size=batch_size, max_steps=2, alpha=0.3),
            teacher_model=tiny_bert(seed=1),
            train_dataset=data,
            eval_dataset=data,
            data_collator=DataCollatorForDistillation(),
        )
        trainer.train()
        metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        record = {"world_size": trainer.args.world_size, "log_history": trainer.state.log_history, "eval": metrics}
        Path(output).write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
