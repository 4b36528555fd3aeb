"""Structured channel pruning of transformers' ResNet classifiers, into a smaller model a plain `ResNetConfig` describes.

Channels are scored by the magnitude of their BatchNorm scale (gamma), as in Network Slimming (Liu et al., "Learning
Efficient Convolutional Networks through Network Slimming", ICCV 2017): a channel whose gamma is near zero contributes
little after normalisation. The config fixes one width per stage (``hidden_sizes[i]``) and the embedder's
(``embedding_size``), so pruning removes the same share everywhere:

* the residual stream of a stage (every block's output, shortcut projection and the next consumers' inputs) keeps
  one channel subset, scored by ``|gamma|`` summed over every BatchNorm that writes to that stream (the last
  BatchNorm of each block's branch and of each shortcut projection); the embedder's output is a stream of its own,
  or the first stage's when its first block has an identity shortcut;
* the channels inside a block (the first convolution's outputs; both inner ones of a bottleneck) are chosen per
  block by their own BatchNorm's ``|gamma|``.

Weights are copied into a fresh `ResNetForImageClassification` built from the smaller config, so the result saves
and reloads with ``AutoModelForImageClassification`` and runs in ``pipeline()``. Recovery is ordinary training of the
pruned model, with the unpruned model as the teacher (KD) or with labels alone (CE).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import ResNetForImageClassification


def prune_resnet_channels(model: ResNetForImageClassification, share: float) -> ResNetForImageClassification:
    """A copy of ``model`` with the least important ``share`` of the channels of every stage and of the embedder
    removed (Network Slimming's ``|gamma|`` score; at least one channel stays). ``share=0`` gives an exact copy."""
    if not isinstance(model, ResNetForImageClassification):
        raise ValueError(
            f"Channel pruning supports transformers' ResNetForImageClassification, got {type(model).__name__}; "
            "BERT-family text classifiers are pruned by hf_distill.methods.pruning (--prune_heads / --prune_ffn)."
        )
    if not 0.0 <= share < 1.0:
        raise ValueError(f"The share of channels to remove must be in [0, 1), got {share}.")
    stages = model.resnet.encoder.stages
    # streams[0]: the embedder's output; streams[i + 1]: stage i's residual stream (the same list when merged).
    embedder_bn = model.resnet.embedder.embedder.normalization
    streams: list[list[nn.BatchNorm2d]] = [[embedder_bn]]
    for stage in stages:
        writers = [bn for block in stage.layers for bn in _stream_writers(block)]
        if isinstance(stage.layers[0].shortcut, nn.Identity):  # the stage continues its input's stream
            streams[-1].extend(writers)
            streams.append(streams[-1])
        else:
            streams.append(writers)
    keep = _stream_channels(streams, share)

    config = copy.deepcopy(model.config)
    config.embedding_size = len(keep[0])
    config.hidden_sizes = [len(kept) for kept in keep[1:]]
    pruned = ResNetForImageClassification(config).to(dtype=embedder_bn.weight.dtype, device=embedder_bn.weight.device)
    _check_same_layout(model, pruned)

    with torch.no_grad():
        everything = torch.arange(model.config.num_channels)
        _copy_conv_layer(model.resnet.embedder.embedder, pruned.resnet.embedder.embedder, everything, keep[0])
        for i, (stage, new_stage) in enumerate(zip(stages, pruned.resnet.encoder.stages, strict=True)):
            inputs = keep[i]
            for block, new_block in zip(stage.layers, new_stage.layers, strict=True):
                _copy_block(block, new_block, inputs, keep[i + 1])
                inputs = keep[i + 1]
        old_head, new_head = model.classifier[-1], pruned.classifier[-1]
        new_head.weight.copy_(old_head.weight[:, keep[-1]])
        new_head.bias.copy_(old_head.bias)
    return pruned.train(model.training)


def _stream_writers(block: nn.Module) -> list[nn.BatchNorm2d]:
    """The BatchNorms whose outputs are added into a block's output: its branch's last, and its shortcut's."""
    writers = [block.layer[-1].normalization]
    if not isinstance(block.shortcut, nn.Identity):
        writers.append(block.shortcut.normalization)
    return writers


def _top_channels(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``n_keep`` highest-scoring channels (the first ones on ties)."""
    return scores.argsort(descending=True, stable=True)[:n_keep].sort().values


def _stream_channels(streams: list[list[nn.BatchNorm2d]], share: float) -> list[torch.Tensor]:
    """The kept channels of each stream, scored by ``|gamma|`` summed over the BatchNorms that write to it."""
    kept: dict[int, torch.Tensor] = {}
    for writers in streams:
        if id(writers) not in kept:
            scores = torch.stack([bn.weight.detach().abs().float().cpu() for bn in writers]).sum(0)
            kept[id(writers)] = _top_channels(scores, max(1, round(len(scores) * (1 - share))))
    return [kept[id(writers)] for writers in streams]


def _check_same_layout(model: ResNetForImageClassification, pruned: ResNetForImageClassification) -> None:
    """ResNet decides from the widths whether a block has a shortcut projection; rounding can make two different
    widths equal (and the projection vanish), which no config can describe."""
    for old, new in zip(model.resnet.encoder.modules(), pruned.resnet.encoder.modules(), strict=False):
        if type(old) is not type(new):
            raise ValueError(
                f"Pruning to embedding_size {pruned.config.embedding_size} and hidden_sizes "
                f"{pruned.config.hidden_sizes} makes widths that differed equal, so a shortcut projection would "
                "vanish; choose another share."
            )


def _copy_block(block: nn.Module, new_block: nn.Module, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
    """Copy a basic or bottleneck block reading the ``inputs`` channels and writing the ``outputs`` channels; its
    inner channels are chosen by their own BatchNorm's ``|gamma|``, as many as the new block has."""
    if not isinstance(block.shortcut, nn.Identity):
        _copy_conv_layer(block.shortcut, new_block.shortcut, inputs, outputs)
    *inner, last = zip(block.layer, new_block.layer, strict=True)
    for old, new in inner:
        kept = _top_channels(old.normalization.weight.detach().abs().cpu(), new.convolution.out_channels)
        _copy_conv_layer(old, new, inputs, kept)
        inputs = kept
    _copy_conv_layer(*last, inputs, outputs)


def _copy_conv_layer(old: nn.Module, new: nn.Module, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
    """Copy a convolution + BatchNorm (`ResNetConvLayer` or `ResNetShortCut`) restricted to the ``inputs`` and
    ``outputs`` channels."""
    new.convolution.weight.copy_(old.convolution.weight[outputs][:, inputs])
    old_bn, new_bn = old.normalization, new.normalization
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new_bn, name).copy_(getattr(old_bn, name)[outputs])
    new_bn.num_batches_tracked.copy_(old_bn.num_batches_tracked)
