"""Trains a tiny student with an in-batch teacher; run under `torchrun` by tests/trainer/test_distributed.py.

Options, so that one launch checks several things:
``--precompute-dir DIR``: first precompute teacher logits of a dataset saved under DIR (sharded over the processes
when there are several) and save the result to ``DIR/logits-<world size>``.
``--fsdp-teacher``: also place a teacher with FSDP (plugin versions 1 and 2) and compare its logits and loss.
``--deepspeed-stage N``: train under DeepSpeed ZeRO-N (needs deepspeed).
``--intermediate``: distil hidden states too, from a wider teacher (learned projections outside the DDP model).

Usage: python tests/trainer/distributed_train.py OUTPUT_JSON PER_DEVICE_BATCH_SIZE [options]
"""

import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from accelerate import PartialState  # noqa: E402
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin  # noqa: E402
from datasets import load_from_disk  # noqa: E402

import hf_distill.data.precompute  # noqa: E402
from hf_distill import (  # noqa: E402
    DataCollatorForDistillation,
    DistillationTrainer,
    distillation_loss,
    precompute_teacher_logits,
)
from hf_distill.teachers.distributed import place_teacher  # noqa: E402
from tests.conftest import make_args, tiny_bert, tiny_text_dataset, varied_bert  # noqa: E402


def precompute(workdir: Path) -> dict:
    """Precompute twice (the second call must reuse the shards) and try an in-memory dataset without cache_dir."""
    hf_distill.data.precompute.LENGTH_GROUP_BATCHES = 2  # blocks of 8 rows: each process gets length-sorted batches
    state = PartialState()
    if state.is_main_process and not (workdir / "data").exists():
        tiny_text_dataset(23).save_to_disk(str(workdir / "data"))
    state.wait_for_everyone()
    data = load_from_disk(str(workdir / "data"))
    teacher, calls = varied_bert(seed=1), []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    result = precompute_teacher_logits(teacher, data, batch_size=4)
    first_calls = len(calls)
    precompute_teacher_logits(teacher, data, batch_size=4)
    record = {"teacher_calls": [first_calls, len(calls) - first_calls]}
    try:
        precompute_teacher_logits(teacher, tiny_text_dataset(4))
    except ValueError as error:
        record["in_memory_error"] = str(error)
    if state.is_main_process:
        result.save_to_disk(str(workdir / f"logits-{state.num_processes}"))
    return record


def fsdp_teacher() -> dict:
    """Logits and KD loss of FSDP-placed teachers against the plain teacher, on each process's own rows.

    accelerate enables FSDP only on accelerators (on CPU it stays MULTI_CPU), so the accelerator is a stand-in
    carrying a real `FullyShardedDataParallelPlugin`; the sharding is torch's own, on gloo.
    """
    state = PartialState()
    rows = tiny_text_dataset(8, ragged=False)["input_ids"]
    input_ids = torch.tensor(rows[state.process_index :: state.num_processes])
    student, teacher = tiny_bert(seed=2), varied_bert(seed=1)
    with torch.no_grad():
        reference, student_logits = teacher(input_ids=input_ids).logits, student(input_ids=input_ids).logits
    expected = distillation_loss(student_logits, reference, None, alpha=0.0, temperature=2.0).loss.item()
    record = {}
    for version in (1, 2):
        plugin = FullyShardedDataParallelPlugin(fsdp_version=version)
        accelerator = SimpleNamespace(
            distributed_type=DistributedType.FSDP,
            device=torch.device("cpu"),
            state=SimpleNamespace(fsdp_plugin=plugin),
        )
        placed = place_teacher(copy.deepcopy(teacher), accelerator)
        with torch.no_grad():
            logits = placed(input_ids=input_ids).logits
        params = list(placed.parameters())
        local = params if version == 1 else [p.to_local() for p in params]
        record[f"fsdp{version}"] = {
            "max_logit_diff": (logits - reference).abs().max().item(),
            "loss": distillation_loss(student_logits, logits, None, alpha=0.0, temperature=2.0).loss.item(),
            "expected_loss": expected,
            "local_size": sum(p.numel() for p in local),
            "full_size": sum(p.numel() for p in teacher.parameters()),
            "trainable": any(p.requires_grad for p in params),
        }
    return record


def deepspeed_config(stage: int) -> dict:
    return {
        "zero_optimization": {"stage": stage},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }


def main(
    output: str,
    batch_size: int,
    precompute_dir: str | None,
    fsdp: bool,
    deepspeed_stage: int | None,
    intermediate: bool = False,
) -> None:
    torch.set_num_threads(1)  # as torchrun's processes: the same CPU kernels, bit-identical teacher logits
    if deepspeed_stage is None:
        PartialState(cpu=True)  # without GPU, accelerate sees one process unless told cpu=True first
    record = precompute(Path(precompute_dir)) if precompute_dir else {}
    # Unevenly ignored labels: the CE must be weighted by the labelled rows of the global batch, not per process.
    # Token-averaged hidden-state losses split evenly over processes only when every row has the same length.
    data = tiny_text_dataset(16, ragged=not intermediate).remove_columns("text")
    data = data.map(lambda row, i: {"label": -100 if i in (0, 1, 2, 5, 11) else row["label"]}, with_indices=True)
    extra = {} if deepspeed_stage is None else {"use_cpu": False, "deepspeed": deepspeed_config(deepspeed_stage)}
    if intermediate:
        extra["hidden_state_loss"] = "mse"
    with tempfile.TemporaryDirectory() as tmp:
        trainer = DistillationTrainer(
            model=tiny_bert(seed=2),
            args=make_args(Path(tmp), per_device_train_batch_size=batch_size, max_steps=2, alpha=0.3, **extra),
            teacher_model=tiny_bert(seed=1, hidden=32, layers=4) if intermediate else tiny_bert(seed=1),
            train_dataset=data,
            eval_dataset=data,
            data_collator=DataCollatorForDistillation(),
        )
        trainer.train()
        # Under DeepSpeed on CPU accelerate counts 1 process in a group of 2, and gathering for metrics fails.
        metrics = trainer.evaluate() if deepspeed_stage is None else None
    teacher_params = list(trainer.teacher_model.parameters())
    record["teacher"] = {
        "type": type(trainer.teacher_model).__name__,
        "local_size": sum(p.numel() for p in teacher_params),
        "full_size": sum(getattr(p, "ds_numel", p.numel()) for p in teacher_params),
    }
    if fsdp:
        record["fsdp_teacher"] = fsdp_teacher()
    if intermediate:
        record["projections"] = {k: v.tolist() for k, v in trainer.objective.terms[0].state_dict().items()}
    record.update(
        processes_seen_by_trainer=trainer.args.world_size, log_history=trainer.state.log_history, eval=metrics
    )
    records = [None] * torch.distributed.get_world_size() if torch.distributed.is_initialized() else [record]
    if torch.distributed.is_initialized():
        torch.distributed.all_gather_object(records, record)
    if int(os.environ.get("RANK", 0)) == 0:  # not is_world_process_zero: under DeepSpeed on CPU all ranks say 0
        Path(output).write_text(json.dumps({**record, "processes": records}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("batch_size", type=int)
    parser.add_argument("--precompute-dir")
    parser.add_argument("--fsdp-teacher", action="store_true")
    parser.add_argument("--deepspeed-stage", type=int)
    parser.add_argument("--intermediate", action="store_true")
    args = parser.parse_args()
    main(args.output, args.batch_size, args.precompute_dir, args.fsdp_teacher, args.deepspeed_stage, args.intermediate)
    # Leave the process group, then exit without the interpreter's teardown: gloo's threads, torn down with it,
    # sometimes abort with "terminate called without an active exception" after the work is done and written.
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
