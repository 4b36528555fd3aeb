"""Reads every batch of `DistillationTrainer.get_train_dataloader()` over logit columns stored as full float32, full
float16, top-k and K views, and checks each against the stored values; run alone or under `torchrun` (2 CPU
processes) by tests/data/test_logit_columns.py.

The stored logits carry their row's index in class 0 (and the view's in class 1), so a process can check the rows its
shard of the sampler gave it. Usage: python tests/data/dataloader_logits.py OUTPUT_JSON
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from accelerate import PartialState  # noqa: E402
from datasets import Array2D, Dataset, Features, List, Value  # noqa: E402
from transformers import ViTConfig, ViTForImageClassification  # noqa: E402

from hf_distill import DataCollatorForDistillation, DistillationTrainer, TeacherLogitsInfo  # noqa: E402
from hf_distill.data.provenance import write_logits_info  # noqa: E402
from hf_distill.vision import (  # noqa: E402
    DistillationImageTransform,
    PixelFormat,
    RandomResizedCropFlip,
    default_image_processor,
)
from tests.conftest import make_args, tiny_bert, tiny_text_dataset  # noqa: E402

ROWS, CLASSES, TOP_K, VIEWS, SIDE = 32, [f"c{i}" for i in range(6)], 3, 4, 12
STUDENT, AUGMENT = PixelFormat(default_image_processor((8, 8))), RandomResizedCropFlip(scale=(0.3, 1.0))


def stored_logits(shape: tuple[int, ...], seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    values[:, ..., 0] = np.arange(shape[0]).reshape(-1, *[1] * (len(shape) - 2))
    return values


def with_info(dataset: Dataset, dtype: str, **top_k: float) -> Dataset:
    write_logits_info(
        dataset,
        "teacher_logits",
        TeacherLogitsInfo(teacher="made-up", labels=CLASSES, dtype=dtype, teacher_fingerprint="0", **top_k),
    )
    return dataset


def text_datasets() -> dict[str, tuple[Dataset, dict[str, np.ndarray]]]:
    text = tiny_text_dataset(ROWS)
    full = stored_logits((ROWS, len(CLASSES)), seed=0)
    values = stored_logits((ROWS, TOP_K + 1), seed=1)
    indices = np.stack([np.random.default_rng(i).permutation(len(CLASSES))[:TOP_K] for i in range(ROWS)])
    datasets = {}
    for dtype in ("float32", "float16"):
        column = {"teacher_logits": List(Value(dtype), length=len(CLASSES))}
        data = text.add_column("teacher_logits", list(full)).cast(Features({**text.features, **column}))
        datasets[f"full {dtype}"] = (with_info(data, dtype), {"teacher_logits": full.astype(dtype)})
    columns = {
        "teacher_logits": List(Value("float16"), length=TOP_K + 1),
        "teacher_logits_indices": List(Value("int16"), length=TOP_K),
    }
    data = text.add_column("teacher_logits", list(values)).add_column("teacher_logits_indices", list(indices))
    data = with_info(data.cast(Features({**text.features, **columns})), "float16", top_k=TOP_K, temperature=2.0)
    datasets["top-k"] = (data, {"teacher_logits": values.astype("float16"), "teacher_logits_indices": indices})
    return datasets


def k_view_dataset() -> tuple[Dataset, dict[str, np.ndarray]]:
    images = np.random.default_rng(2).integers(0, 256, (ROWS, SIDE, SIDE), dtype=np.uint8)
    generator = torch.Generator().manual_seed(0)
    views = np.array([[AUGMENT.sample(SIDE, SIDE, generator) for _ in range(VIEWS)] for _ in range(ROWS)], np.int32)
    logits = stored_logits((ROWS, VIEWS, len(CLASSES)), seed=3)
    logits[:, :, 1] = np.arange(VIEWS)
    features = Features(
        {
            "image": Array2D((SIDE, SIDE), "uint8"),
            "label": Value("int64"),
            "teacher_views": List(List(Value("int32"), length=5), length=VIEWS),
            "teacher_logits": List(List(Value("float32"), length=len(CLASSES)), length=VIEWS),
        }
    )
    data = Dataset.from_dict(
        {"image": images, "label": np.arange(ROWS) % 6, "teacher_views": views, "teacher_logits": logits}, features
    )
    data = with_info(data, "float32")
    data.set_transform(DistillationImageTransform(student=STUDENT, augment=AUGMENT))
    return data, {"teacher_logits": logits, "teacher_views": views, "image": images}


def vit() -> ViTForImageClassification:
    config = ViTConfig(
        image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=len(CLASSES), id2label=dict(enumerate(CLASSES)),
    )  # fmt: skip
    return ViTForImageClassification(config)


def check(name: str, trainer: DistillationTrainer, stored: dict[str, np.ndarray]) -> dict:
    """The row ids each batch carried, and whether its logit tensors have the expected dtypes and stored values."""
    seen, ok = [], True
    for batch in trainer.get_train_dataloader():
        logits = batch["teacher_logits"]
        ok &= logits.dtype == torch.float32 and logits.dim() == 2
        ids = logits[:, 0].long()
        expected = stored["teacher_logits"][ids.numpy()]
        if name == "K views":
            views = logits[:, 1].long().numpy()
            expected = expected[np.arange(len(ids)), views]
            for row, i, j in zip(batch["pixel_values"], ids.numpy(), views, strict=True):
                ok &= torch.equal(row, STUDENT.render(stored["image"][i], stored["teacher_views"][i, j].tolist()))
        ok &= torch.equal(logits, torch.from_numpy(expected.astype(np.float32)))
        if "teacher_logits_indices" in stored:
            indices = batch["teacher_logits_indices"]
            ok &= indices.dtype == torch.int64
            ok &= torch.equal(indices, torch.from_numpy(stored["teacher_logits_indices"][ids.numpy()]).long())
        seen += ids.tolist()
    return {"ids": seen, "ok": bool(ok)}


def main(output: str) -> None:
    state = PartialState(cpu=True)
    workdir = Path(output).parent
    results = {}
    for name, (data, stored) in text_datasets().items():
        args = make_args(workdir, max_steps=-1, num_train_epochs=1, temperature=2.0, per_device_train_batch_size=4)
        trainer = DistillationTrainer(
            model=tiny_bert(labels=CLASSES), args=args, train_dataset=data, data_collator=DataCollatorForDistillation()
        )
        results[name] = check(name, trainer, stored)
    data, stored = k_view_dataset()
    args = make_args(
        workdir, max_steps=-1, num_train_epochs=1, per_device_train_batch_size=4, remove_unused_columns=False
    )
    trainer = DistillationTrainer(
        model=vit(), args=args, train_dataset=data, data_collator=DataCollatorForDistillation()
    )
    results["K views"] = check("K views", trainer, stored)
    results["processes"] = state.num_processes
    Path(f"{output}.{state.process_index}").write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
    # Leave the process group before exit: a gloo group torn down by the interpreter at exit sometimes aborts with
    # "terminate called without an active exception" after the work is done.
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
