"""Structured pruning of BERT-family classifiers: attention heads, FFN neurons and whole layers, physically removed.

Importance is the first-order Taylor score of Michel et al., "Are Sixteen Heads Really Better than One?" (2019):
a gate of ones multiplies every head's output, every FFN neuron's activation and every layer's residual update, and a
unit's importance is ``E |dL/d gate|`` over labelled batches (the loss change if the unit were removed, to first
order). The least important units are sliced out of the Linear layers (`transformers.pytorch_utils.prune_linear_layer`)
and the config records the new shape, so the model gets smaller and faster. Recovery is then ordinary training of the
pruned model, with the unpruned model as the teacher (KD) or with labels alone (CE); Sanh et al., "Movement Pruning"
(2020) and Lagunas et al. (2021) recover with distillation.

transformers 5 removed ``PreTrainedModel.prune_heads`` and BERT derives the head size from
``hidden_size / num_attention_heads``, so its config cannot describe fewer heads of the same size, and the Auto
classes cannot rebuild a head-pruned model from its folder (``from_pretrained`` stops on the attention weights' sizes,
and with ``ignore_mismatched_sizes`` it would re-initialise them). A model whose heads were pruned records them in
``config.pruned_heads`` and reloads with :func:`load_pruned_model`; every place hf_distill loads a model (a teacher
or a ``hf-distill compare`` model through :func:`hf_distill.teachers.loading.load_classifier`, a pretrained student) goes
through it. Elsewhere, pass the loaded model: ``pipeline("text-classification", model=load_pruned_model(path),
tokenizer=path)``. Pruning FFN neurons (``intermediate_size``) and layers (``num_hidden_layers``) only keeps the
stock config, and the model reloads with ``AutoModelForSequenceClassification.from_pretrained``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.pytorch_utils import prune_linear_layer
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file

from ..evaluation.timing import time_calls

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")


@dataclass
class PruningArguments:
    """What to prune before training (``recipes/text_classification.py``); the student must be a copy of the
    teacher's layers (``--student_init teacher_layers`` with all of them) for KD recovery from the unpruned model."""

    prune_heads: float = field(default=0.0, metadata={"help": "Share of attention heads removed in every layer."})
    prune_ffn: float = field(default=0.0, metadata={"help": "Share of FFN neurons removed in every layer."})
    prune_layers: int = field(default=0, metadata={"help": "Number of whole layers removed."})
    pruning_samples: int = field(default=256, metadata={"help": "Training rows used to score importance."})
    pruning_batch_size: int = field(default=32, metadata={"help": "Batch size of the importance pass."})
    latency_seconds: float = field(
        default=1.0,
        metadata={
            "help": "Seconds of repeated timing for each of the two CPU latencies reported in pruning_results.json "
            "(one batch, before and after pruning); more is steadier. Training is unaffected."
        },
    )

    def __post_init__(self) -> None:
        for name in ("prune_heads", "prune_ffn"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} is a share in [0, 1), got {getattr(self, name)}.")
        if self.prune_layers < 0:
            raise ValueError(f"prune_layers must be >= 0, got {self.prune_layers}.")

    @property
    def active(self) -> bool:
        return self.prune_heads > 0 or self.prune_ffn > 0 or self.prune_layers > 0


@dataclass
class Importance:
    """Importance scores: ``heads`` (layers, heads), ``ffn`` (layers, intermediate_size), ``layers`` (layers,)."""

    heads: torch.Tensor
    ffn: torch.Tensor
    layers: torch.Tensor


def _layers(model: PreTrainedModel) -> nn.ModuleList:
    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList) or not hasattr(layers[0], "intermediate"):
        raise ValueError(
            f"Structured pruning supports BERT-family encoders (encoder.layer[i].attention.self / intermediate); "
            f"{type(model).__name__} has another layout."
        )
    return layers


def head_importance(model: PreTrainedModel, batches: Iterable[dict[str, torch.Tensor]]) -> Importance:
    """Michel et al. (2019) importance of every head, FFN neuron and layer: ``sum |dL/d gate|`` over ``batches``
    (labelled, model inputs only), with gates of ones so the forward pass is unchanged."""
    layers = _layers(model)
    num_heads = layers[0].attention.self.num_attention_heads
    head_size = layers[0].attention.self.attention_head_size
    gates = {
        "heads": torch.ones(len(layers), num_heads, requires_grad=True),
        "ffn": torch.ones(len(layers), layers[0].intermediate.dense.out_features, requires_grad=True),
        "layers": torch.ones(len(layers), requires_grad=True),
    }
    scores = {name: torch.zeros_like(gate) for name, gate in gates.items()}
    inputs: dict[int, torch.Tensor] = {}

    def gate_heads(i):
        def hook(module, args, output):
            context = output[0]
            shape = context.shape
            gated = context.view(*shape[:-1], -1, head_size) * gates["heads"][i, :, None].to(context.dtype)
            return (gated.view(shape), *output[1:])

        return hook

    def gate_ffn(i):
        return lambda module, args, output: output * gates["ffn"][i].to(output.dtype)

    def keep_input(i):
        def hook(module, args, kwargs):
            inputs[i] = args[0] if args else kwargs["hidden_states"]

        return hook

    def gate_layer(i):
        def hook(module, args, kwargs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            gated = inputs[i] + gates["layers"][i].to(hidden.dtype) * (hidden - inputs[i])
            return (gated, *output[1:]) if isinstance(output, tuple) else gated

        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles += [
            layer.attention.self.register_forward_hook(gate_heads(i)),
            layer.intermediate.register_forward_hook(gate_ffn(i)),
            layer.register_forward_pre_hook(keep_input(i), with_kwargs=True),
            layer.register_forward_hook(gate_layer(i), with_kwargs=True),
        ]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items() if k in MODEL_INPUTS}
            if "labels" not in batch:
                raise ValueError("Importance scores need labelled batches (a `labels` key).")
            loss = model(**batch).loss
            grads = torch.autograd.grad(loss, list(gates.values()))
            for name, grad in zip(gates, grads, strict=True):
                scores[name] += grad.abs().detach()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return Importance(**scores)


def _keep(scores: torch.Tensor, share: float) -> list[int]:
    """Indices of the units to keep (in their original order) after removing ``share`` of them, least important
    first; at least one unit stays."""
    n_keep = max(1, round(len(scores) * (1 - share)))
    return sorted(scores.argsort(descending=True)[:n_keep].tolist())


def prune_model(
    model: PreTrainedModel,
    importance: Importance,
    *,
    heads: float = 0.0,
    ffn: float = 0.0,
    layers: int = 0,
) -> PreTrainedModel:
    """A pruned copy of ``model``: the ``layers`` least important layers removed, then in every remaining layer
    the least important share ``heads`` of attention heads and ``ffn`` of FFN neurons (the same number per layer,
    so the config can describe the shape). Nothing to prune returns an exact copy."""
    model = copy.deepcopy(model)
    stack = _layers(model)
    if not 0 <= layers < len(stack):
        raise ValueError(f"Can remove 0 to {len(stack) - 1} of the model's {len(stack)} layers, got {layers}.")
    kept_layers = _keep(importance.layers, layers / len(stack)) if layers else list(range(len(stack)))
    model.base_model.encoder.layer = nn.ModuleList([stack[i] for i in kept_layers])
    model.config.num_hidden_layers = len(kept_layers)
    pruned_heads = {}
    for new_index, old_index in enumerate(kept_layers):
        layer = model.base_model.encoder.layer[new_index]
        if heads > 0:
            keep = _keep(importance.heads[old_index], heads)
            pruned_heads[new_index] = sorted(set(range(len(importance.heads[old_index]))) - set(keep))
            _remove_heads(layer, keep)
        if ffn > 0:
            _remove_neurons(layer, _keep(importance.ffn[old_index], ffn))
    if ffn > 0:
        model.config.intermediate_size = model.base_model.encoder.layer[0].intermediate.dense.out_features
    if pruned_heads:
        model.config.pruned_heads = pruned_heads
    return model


def _remove_heads(layer: nn.Module, keep: list[int]) -> None:
    attention = layer.attention.self
    size = attention.attention_head_size
    index = torch.tensor([h * size + j for h in keep for j in range(size)], dtype=torch.long)
    for name in ("query", "key", "value"):
        setattr(attention, name, prune_linear_layer(getattr(attention, name), index, dim=0))
    layer.attention.output.dense = prune_linear_layer(layer.attention.output.dense, index, dim=1)
    attention.num_attention_heads = len(keep)
    attention.all_head_size = len(keep) * size


def _remove_neurons(layer: nn.Module, keep: list[int]) -> None:
    index = torch.tensor(keep, dtype=torch.long)
    layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, index, dim=0)
    layer.output.dense = prune_linear_layer(layer.output.dense, index, dim=1)


def pruned_heads(config: PretrainedConfig) -> dict[int, list[int]]:
    """The heads removed per layer, from ``config.pruned_heads`` (JSON keys are strings); empty when none."""
    return {int(layer): list(heads) for layer, heads in (getattr(config, "pruned_heads", None) or {}).items() if heads}


def load_pruned_model(
    path: str | Path, auto_class: type = AutoModelForSequenceClassification, **from_pretrained_kwargs
) -> PreTrainedModel:
    """Load a (possibly head-pruned) classifier from a folder or Hub id: ``auto_class.from_pretrained``, after
    removing the heads that ``config.pruned_heads`` lists (which the stock BERT config cannot describe in
    transformers 5). ``from_pretrained_kwargs`` (``revision``, ``cache_dir``, ``token``, ``dtype``, ...) are used as
    ``from_pretrained`` would."""
    hub = {k: from_pretrained_kwargs[k] for k in ("cache_dir", "revision", "token") if k in from_pretrained_kwargs}
    config = AutoConfig.from_pretrained(
        path, trust_remote_code=from_pretrained_kwargs.get("trust_remote_code", False), **hub
    )
    removed = pruned_heads(config)
    if not removed:
        return auto_class.from_pretrained(path, **from_pretrained_kwargs)
    from safetensors.torch import load_file

    model = auto_class.from_config(config)
    for i, layer in enumerate(_layers(model)):
        if removed.get(i):
            num_heads = layer.attention.self.num_attention_heads
            _remove_heads(layer, [h for h in range(num_heads) if h not in removed[i]])
    index = cached_file(str(path), SAFE_WEIGHTS_INDEX_NAME, _raise_exceptions_for_missing_entries=False, **hub)
    if index is None:
        files = [cached_file(str(path), SAFE_WEIGHTS_NAME, **hub)]
    else:
        shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        files = [cached_file(str(path), shard, **hub) for shard in shards]
    state = {name: tensor for file in files for name, tensor in load_file(file).items()}
    model.load_state_dict(state)
    dtype = from_pretrained_kwargs.get("dtype", from_pretrained_kwargs.get("torch_dtype"))
    if isinstance(dtype, torch.dtype):
        model = model.to(dtype)
    return model.eval()


def latency_ms(models: dict[str, nn.Module], batch: dict[str, torch.Tensor], seconds: float = 1.0) -> dict[str, float]:
    """Median milliseconds of one forward pass of each model on ``batch``, one CPU thread, the models interleaved call
    by call (:func:`hf_distill.evaluation.timing.time_calls`), for about ``seconds`` in all."""
    feed = {k: v for k, v in batch.items() if k in MODEL_INPUTS and k != "labels"}

    def runner(model: nn.Module):
        def run(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            with torch.inference_mode():
                return model(**inputs).logits

        return run

    modes = {name: model.training for name, model in models.items()}
    for model in models.values():
        model.eval()
    try:
        runs = {name: runner(model) for name, model in models.items()}
        first = time_calls(runs, [feed], warmup_runs=1)  # one call each, to size the measurement
        calls = max(5, int(seconds / max(sum(times[0] for times in first.values()), 1e-6)))
        times = time_calls(runs, [feed] * calls, warmup_runs=0)
    finally:
        for name, model in models.items():
            model.train(modes[name])
    return {name: 1000 * float(np.median(values)) for name, values in times.items()}


def prune_student(
    model: PreTrainedModel, dataset: Dataset, data_collator, args: PruningArguments, seed: int = 0
) -> tuple[PreTrainedModel, dict[str, float]]:
    """Score ``model`` on ``args.pruning_samples`` random labelled rows of ``dataset``, prune it as ``args`` asks,
    and return it with its size and latency before and after (one batch of ``args.pruning_batch_size`` rows, one CPU
    thread, measured side by side)."""
    rows = dataset.shuffle(seed=seed).select(range(min(args.pruning_samples, len(dataset))))
    columns = [c for c in rows.column_names if c in MODEL_INPUTS]
    loader = torch.utils.data.DataLoader(
        rows.select_columns(columns), batch_size=args.pruning_batch_size, collate_fn=data_collator
    )
    importance = head_importance(model, loader)
    pruned = prune_model(model, importance, heads=args.prune_heads, ffn=args.prune_ffn, layers=args.prune_layers)
    latency = latency_ms({"before": model, "after": pruned}, next(iter(loader)), seconds=2 * args.latency_seconds)
    metrics = {
        "parameters_before": float(model.num_parameters()),
        "parameters_after": float(pruned.num_parameters()),
        "latency_ms_before": latency["before"],
        "latency_ms_after": latency["after"],
    }
    return pruned, metrics
