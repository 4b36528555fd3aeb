"""Places a teacher with FSDP (plugin versions 1 and 2) on CPU processes; run under `torchrun` by
tests/test_distributed.py.

accelerate only enables FSDP on accelerators (on CPU it falls back to MULTI_CPU), so the accelerator here is a
stand-in carrying a real `FullyShardedDataParallelPlugin`; the sharding itself is torch's, on gloo.

Usage: torchrun --nproc_per_node 2 tests/distributed_teacher.py OUTPUT_JSON
"""

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from accelerate import PartialState  # noqa: E402
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin  # noqa: E402

from hf_distill import distillation_loss  # noqa: E402
from hf_distill.distributed import place_teacher  # noqa: E402
from tests.conftest import tiny_bert, tiny_text_dataset, varied_bert  # noqa: E402


def fsdp_accelerator(version: int) -> SimpleNamespace:
    plugin = FullyShardedDataParallelPlugin(fsdp_version=version)
    state = SimpleNamespace(fsdp_plugin=plugin)
    return SimpleNamespace(distributed_type=DistributedType.FSDP, device=torch.device("cpu"), state=state)


def main(output: str) -> None:
    state = PartialState()
    rows = tiny_text_dataset(8, ragged=False)["input_ids"]
    input_ids = torch.tensor(rows[state.process_index :: state.num_processes])  # each process its own rows
    student, teacher = tiny_bert(seed=2), varied_bert(seed=1)
    with torch.no_grad():
        reference = teacher(input_ids=input_ids).logits
        student_logits = student(input_ids=input_ids).logits
    full_size = sum(p.numel() for p in teacher.parameters())
    record = {}
    for version in (1, 2):
        placed = place_teacher(copy.deepcopy(teacher), fsdp_accelerator(version))
        with torch.no_grad():
            logits = placed(input_ids=input_ids).logits
        loss = distillation_loss(student_logits, logits, None, alpha=0.0, temperature=2.0).loss
        expected = distillation_loss(student_logits, reference, None, alpha=0.0, temperature=2.0).loss
        local = placed.parameters() if version == 1 else (p.to_local() for p in placed.parameters())
        record[f"fsdp{version}"] = {
            "type": type(placed).__name__,
            "max_logit_diff": (logits - reference).abs().max().item(),
            "loss": loss.item(),
            "expected_loss": expected.item(),
            "local_size": sum(p.numel() for p in local),
            "full_size": full_size,
            "requires_grad": any(p.requires_grad for p in placed.parameters()),
        }
    gathered = [None] * state.num_processes
    torch.distributed.all_gather_object(gathered, record)
    if state.is_main_process:
        Path(output).write_text(json.dumps(gathered))


if __name__ == "__main__":
    main(sys.argv[1])
