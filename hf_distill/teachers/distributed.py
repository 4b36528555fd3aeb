"""Running past one process: sharded dataset computations and teacher placement under DeepSpeed / FSDP."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
from collections.abc import Callable, Iterator

import datasets
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, broadcast_object_list
from datasets import Dataset, concatenate_datasets, load_from_disk

from .loading import unwrap


def process_state() -> PartialState:
    """accelerate's `PartialState`, refused when it sees one process where the launcher started several."""
    state = PartialState()
    launched = int(os.environ.get("WORLD_SIZE", 1))
    if state.num_processes == 1 and launched > 1:
        raise RuntimeError(
            f"The launcher started {launched} processes (WORLD_SIZE) but accelerate sees one, so each would do all "
            "the work. On a machine without GPU, accelerate needs PartialState(cpu=True) (or "
            "TrainingArguments(use_cpu=True)) to be created first, before any other PartialState()."
        )
    return state


def map_in_shards(
    dataset: Dataset,
    function: Callable[[Dataset], Dataset],
    *,
    key: str,
    block_size: int,
    cache_dir: str | None = None,
    load_from_cache_file: bool = True,
) -> Dataset:
    """``function(dataset)``, computed by every process on one contiguous shard and merged on every process.

    Shard boundaries fall on multiples of ``block_size`` rows, so a ``function`` that works in blocks of that size
    (a batched ``map``) sees exactly the blocks of a single-process run and the merged result equals it. Process
    ``i`` of ``n`` writes its shard with ``save_to_disk`` to ``<dir>/hf_distill-<key>/shard-i-of-n``, where ``<dir>``
    is ``cache_dir`` or the folder of the dataset's cache files; after a barrier every process loads all shards
    (memory-mapped) and concatenates them. Shards already on disk are reused when ``load_from_cache_file``. An empty
    dataset is passed to ``function`` whole.
    """
    if not len(dataset):
        return function(dataset)
    state = process_state()
    root = [os.path.join(_shared_dir(dataset, cache_dir), f"hf_distill-{key}")]
    broadcast_object_list(root)  # every process writes where the main process says
    rank, world = state.process_index, state.num_processes
    per_rank = math.ceil(math.ceil(len(dataset) / block_size) / world) * block_size
    shards = {  # process -> its rows; a small dataset leaves the last processes none
        i: range(i * per_rank, min((i + 1) * per_rank, len(dataset)))
        for i in range(world)
        if i * per_rank < len(dataset)
    }
    paths = {i: os.path.join(root[0], f"shard-{i:05d}-of-{world:05d}") for i in shards}
    if rank in shards and not (load_from_cache_file and os.path.isdir(paths[rank])):
        with _quiet(not state.is_main_process):
            result = function(dataset.select(shards[rank]))
            partial = paths[rank] + ".partial"
            shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
            result.save_to_disk(partial)
        shutil.rmtree(paths[rank], ignore_errors=True)
        os.replace(partial, paths[rank])  # a shard directory is complete or absent
    state.wait_for_everyone()
    with _quiet(True):
        return concatenate_datasets([load_from_disk(paths[i]) for i in sorted(paths)])


def _shared_dir(dataset: Dataset, cache_dir: str | None) -> str:
    if cache_dir is not None:
        return cache_dir
    if dataset.cache_files:
        return os.path.dirname(dataset.cache_files[0]["filename"])
    raise ValueError(
        "Under several processes each one writes its shard of the result to disk, but this dataset is held in "
        "memory and has no cache directory. Pass cache_dir= a directory every process can read (a shared "
        "filesystem across machines), or save the dataset with save_to_disk and reload it with load_from_disk."
    )


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """No `datasets` progress bars in the block when ``quiet``."""
    was_enabled = datasets.is_progress_bar_enabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if quiet and was_enabled:
            datasets.enable_progress_bars()


def place_teacher(
    teacher: torch.nn.Module, accelerator: Accelerator, dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """The teacher, frozen and in eval mode, made ready for forward passes beside a student prepared by ``accelerator``.

    - DeepSpeed ZeRO-3: an inference engine of its own (``deepspeed.initialize`` with the student's DeepSpeed config,
      no optimizer or scheduler), so its weights are partitioned like the student's; its precision follows the
      config's ``bf16`` / ``fp16`` and ``dtype`` is not used.
    - FSDP (plugin version 1 or 2): sharded on its own with the plugin's settings, one unit per layer class named in
      the teacher's ``_no_split_modules``, cast to ``dtype`` first.
    - Otherwise (one device, DDP, ZeRO stages 0-2): moved to ``accelerator.device`` in ``dtype``.

    The teacher is never registered with the accelerator, so it stays out of the optimizer and of the checkpoints.
    Under ZeRO-3 and FSDP every process must run the teacher on every step (its forward gathers the weights).
    """
    teacher.eval().requires_grad_(False)
    distributed_type = accelerator.distributed_type
    if distributed_type == DistributedType.DEEPSPEED and accelerator.state.deepspeed_plugin.zero_stage == 3:
        return _deepspeed_zero3_engine(teacher, accelerator.state.deepspeed_plugin.deepspeed_config)
    if distributed_type == DistributedType.FSDP:
        return _fsdp_sharded(teacher.to(dtype=dtype), accelerator)
    return teacher.to(device=accelerator.device, dtype=dtype)


def _deepspeed_zero3_engine(teacher: torch.nn.Module, student_config: dict) -> torch.nn.Module:
    import deepspeed

    config = copy.deepcopy(student_config)
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    hidden_size = getattr(getattr(unwrap(teacher), "config", None), "hidden_size", None)
    if isinstance(hidden_size, int):  # the student's buckets were sized for the student (transformers' rule)
        config["zero_optimization"].update(
            stage3_prefetch_bucket_size=int(0.9 * hidden_size * hidden_size),
            stage3_param_persistence_threshold=10 * hidden_size,
        )
    engine, *_ = deepspeed.initialize(model=teacher, config=config)
    engine.eval()
    return engine


def _fsdp_sharded(teacher: torch.nn.Module, accelerator: Accelerator) -> torch.nn.Module:
    plugin = accelerator.state.fsdp_plugin
    names = set(getattr(unwrap(teacher), "_no_split_modules", None) or [])
    layer_classes = {type(m) for m in teacher.modules() if type(m).__name__ in names}
    if plugin.fsdp_version == 2:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = getattr(accelerator, "torch_device_mesh", None)
        kwargs = dict(
            reshard_after_forward=plugin.reshard_after_forward,
            mp_policy=plugin.mixed_precision_policy or MixedPrecisionPolicy(),
            offload_policy=plugin.cpu_offload,
            mesh=mesh[tuple(accelerator.parallelism_config.fsdp_dim_names)] if mesh is not None else None,
        )
        for module in teacher.modules():
            if type(module) in layer_classes:
                fully_shard(module, **kwargs)
        return fully_shard(teacher, **kwargs)
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    return FullyShardedDataParallel(
        teacher,
        sharding_strategy=plugin.sharding_strategy or plugin.reshard_after_forward,
        auto_wrap_policy=ModuleWrapPolicy(layer_classes) if layer_classes else None,
        mixed_precision=plugin.mixed_precision_policy,
        cpu_offload=plugin.cpu_offload,
        device_id=accelerator.device,
    )
