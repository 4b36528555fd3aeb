"""Intermediate-layer distillation: hidden states and attention maps of mapped student / teacher layers.

- Hidden states (``hidden_state_loss``): ``mse`` as TinyBERT (Jiao et al., "TinyBERT: Distilling BERT for Natural
  Language Understanding", 2020), through a learned linear projection of the student's states when the widths
  differ, or ``cosine`` (``1 - cos``) as DistilBERT (Sanh et al., 2019).
- Attention maps (``attention_loss="kl"``): KL divergence between the teacher's and the student's attention
  distributions (each query row is a distribution over the keys), as MiniLM (Wang et al., "MiniLM: Deep
  Self-Attention Distillation", 2020); TinyBERT matches the same maps.

Layers are 0-based transformer layers (the output of layer ``i`` is ``hidden_states[i + 1]``; the embeddings are
not distilled). ``layer_map="0:1,1:3,2:5"`` maps student layer 0 to teacher layer 1, and so on; the default is
TinyBERT's uniform map, student layer ``s`` of ``S`` to teacher layer ``ceil((s + 1) * T / S) - 1`` of
``T``. Works for any
model returning ``hidden_states`` / ``attentions`` (BERT family, ViT, DeiT); student and teacher must see the same
sequence (same tokenizer, or the same number of image patches). The teacher must run in the batch: hidden states
are far too large to precompute.

The projections are trained with the student but are not part of it: the term hands the trainer its optimizer
parameter group (:meth:`IntermediateDistillation.parameter_groups`), its checkpoint state (saved beside the optimizer
state as ``intermediate_projections.safetensors``, never into the student's weights) and its callbacks, as any
objective term may (see :class:`~hf_distill.losses.DistillationObjective`); the trainer has no branch for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback
from transformers.trainer import OPTIMIZER_NAME, OPTIMIZER_NAME_BIN
from transformers.utils import logging

from ..losses import LossParts
from ..training_args import ATTENTION_LOSSES, HIDDEN_STATE_LOSSES

logger = logging.get_logger(__name__)

PROJECTIONS_FILE = "intermediate_projections.safetensors"
# Attention probabilities are clamped here before the log: a masked key has probability 0 on both sides.
_TINY = torch.finfo(torch.float32).tiny


def uniform_layer_map(num_student_layers: int, num_teacher_layers: int) -> list[tuple[int, int]]:
    """TinyBERT's uniform map: student layer ``s`` to teacher layer ``ceil((s + 1) * T / S) - 1`` (3 of 6: 1, 3, 5)."""
    t, s_count = num_teacher_layers, num_student_layers
    return [(s, ((s + 1) * t + s_count - 1) // s_count - 1) for s in range(s_count)]


def parse_layer_map(
    layer_map: str | Sequence[tuple[int, int]] | None, num_student_layers: int, num_teacher_layers: int
) -> list[tuple[int, int]]:
    """``"0:1,1:3"`` (or pairs) as ``[(0, 1), (1, 3)]``, checked against the layer counts; ``None`` is the uniform map."""
    if layer_map is None or layer_map == "":
        return uniform_layer_map(num_student_layers, num_teacher_layers)
    if isinstance(layer_map, str):
        try:
            pairs = [tuple(int(i) for i in item.split(":")) for item in layer_map.split(",")]
        except ValueError:
            pairs = [()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(
                f"layer_map must be comma-separated student:teacher layer pairs such as '0:1,1:3,2:5', got "
                f"{layer_map!r}."
            )
    else:
        pairs = [tuple(pair) for pair in layer_map]
    students = [s for s, _ in pairs]
    if len(set(students)) != len(students):
        raise ValueError(f"layer_map maps a student layer twice: {layer_map!r}. Give each student layer one teacher.")
    for s, t in pairs:
        if not (0 <= s < num_student_layers and 0 <= t < num_teacher_layers):
            raise ValueError(
                f"layer_map pair {s}:{t} is out of range: the student has layers 0-{num_student_layers - 1} and the "
                f"teacher 0-{num_teacher_layers - 1} (0-based transformer layers, embeddings excluded)."
            )
    return [(int(s), int(t)) for s, t in pairs]


def _token_weights(mask: torch.Tensor | None, states: torch.Tensor) -> torch.Tensor:
    """(B, L) float32 weights of the real tokens (all ones without a mask)."""
    if mask is None:
        return states.new_ones(states.shape[:2], dtype=torch.float32)
    return mask.to(torch.float32)


def hidden_state_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the real tokens and the hidden units, in float32 (TinyBERT)."""
    weights = _token_weights(mask, student)
    squared = (student.float() - teacher.float()).pow(2).mean(-1)
    return (squared * weights).sum() / weights.sum().clamp(min=1)


def hidden_state_cosine(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``1 - cos(student, teacher)`` per token, averaged over the real tokens, in float32 (DistilBERT)."""
    weights = _token_weights(mask, student)
    distance = 1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)
    return (distance * weights).sum() / weights.sum().clamp(min=1)


def attention_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``KL(teacher || student)`` of attention distributions ``(B, H, L, L)``, summed over keys and averaged over
    heads and real query positions, in float32 on log-probabilities (MiniLM).

    With different head counts the maps are first averaged over heads (each average is still a distribution).
    """
    if student.shape[1] != teacher.shape[1]:
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    log_student = student.float().clamp(min=_TINY).log()
    log_teacher = teacher.float().clamp(min=_TINY).log()
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="none").sum(-1)  # (B, H, L)
    weights = _token_weights(mask, student[:, 0]).unsqueeze(1).expand_as(kl)
    return (kl * weights).sum() / weights.sum().clamp(min=1)


_HIDDEN_STATE_FNS = {"mse": hidden_state_mse, "cosine": hidden_state_cosine}


class IntermediateDistillation(nn.Module):
    """Hidden-state and attention-map losses of the mapped layers, with the learned projections they need.

    A term of :class:`~hf_distill.losses.DistillationObjective`: ``forward(student_outputs, teacher_outputs, labels,
    inputs)`` returns the parts ``loss_hidden_state`` and ``loss_attention`` (those switched on) with their weights,
    nothing where the teacher did not run (the CE phase of "KD then CE"); ``inputs["attention_mask"]`` marks the real
    tokens. One
    ``nn.Linear(student_width, teacher_width)`` per mapped layer projects the student's hidden states when the widths
    differ (TinyBERT's ``W_h``, one per layer here); with equal widths there is no projection.
    """

    def __init__(
        self,
        layer_map: list[tuple[int, int]],
        student_width: int,
        teacher_width: int,
        hidden_state_loss: str | None = None,
        attention_loss: str | None = None,
        hidden_state_weight: float = 1.0,
        attention_weight: float = 1.0,
    ):
        super().__init__()
        if hidden_state_loss not in (None, *HIDDEN_STATE_LOSSES) or attention_loss not in (None, *ATTENTION_LOSSES):
            raise ValueError(
                f"hidden_state_loss must be one of {', '.join(HIDDEN_STATE_LOSSES)} and attention_loss one of "
                f"{', '.join(ATTENTION_LOSSES)} (or unset), got {hidden_state_loss!r} and {attention_loss!r}."
            )
        if hidden_state_loss is None and attention_loss is None:
            raise ValueError("IntermediateDistillation needs hidden_state_loss and/or attention_loss.")
        self.layer_map = layer_map
        self.hidden_state_loss = hidden_state_loss
        self.attention_loss = attention_loss
        self.weights = {"loss_hidden_state": hidden_state_weight, "loss_attention": attention_weight}
        needs_projection = hidden_state_loss is not None and student_width != teacher_width
        self.projections = (
            nn.ModuleList(nn.Linear(student_width, teacher_width) for _ in layer_map) if needs_projection else None
        )

    @classmethod
    def from_models(cls, student: nn.Module, teacher: nn.Module, args: Any) -> IntermediateDistillation | None:
        """Built from ``args`` (``hidden_state_loss``, ``attention_loss``, ``layer_map``, weights) and the two
        models' configs; ``None`` when neither loss is switched on. Switches both models to eager attention when
        ``attention_loss`` needs the maps (SDPA and flash attention do not return them)."""
        if args.hidden_state_loss is None and args.attention_loss is None:
            return None
        student_config, teacher_config = student.config, teacher.config
        for role, config in (("student", student_config), ("teacher", teacher_config)):
            if not all(isinstance(getattr(config, key, None), int) for key in ("num_hidden_layers", "hidden_size")):
                raise ValueError(
                    f"hidden_state_loss / attention_loss need transformer encoders (BERT family, ViT, DeiT), but the "
                    f"{role} is a {config.model_type!r} model without num_hidden_layers / hidden_size. Use a "
                    "transformer teacher and student, or unset hidden_state_loss and attention_loss."
                )
        layer_map = parse_layer_map(args.layer_map, student_config.num_hidden_layers, teacher_config.num_hidden_layers)
        if args.attention_loss is not None:
            for role, model in (("student", student), ("teacher", teacher)):
                if model.config._attn_implementation != "eager":
                    logger.warning(
                        f"attention_loss needs attention maps, which {model.config._attn_implementation!r} attention "
                        f"does not return: switching the {role} to attn_implementation='eager' (slower; load it "
                        "with attn_implementation='eager' to silence this)."
                    )
                    model.set_attn_implementation("eager")
        return cls(
            layer_map,
            student_config.hidden_size,
            teacher_config.hidden_size,
            hidden_state_loss=args.hidden_state_loss,
            attention_loss=args.attention_loss,
            hidden_state_weight=args.hidden_state_weight,
            attention_weight=args.attention_weight,
        )

    @property
    def output_flags(self) -> dict[str, bool]:
        """The keyword arguments that make a model return what the losses read."""
        flags = {}
        if self.hidden_state_loss is not None:
            flags["output_hidden_states"] = True
        if self.attention_loss is not None:
            flags["output_attentions"] = True
        return flags

    def forward(
        self, student_outputs: Any, teacher_outputs: Any, labels: torch.Tensor | None, inputs: Mapping[str, Any]
    ) -> LossParts:
        parts: dict[str, torch.Tensor] = {}
        if teacher_outputs is None:
            return LossParts(parts)
        attention_mask = inputs.get("attention_mask")
        if self.hidden_state_loss is not None:
            student_states = _returned(student_outputs, "hidden_states", "student")
            teacher_states = _returned(teacher_outputs, "hidden_states", "teacher")
            loss_fn = _HIDDEN_STATE_FNS[self.hidden_state_loss]
            losses = []
            for i, (s, t) in enumerate(self.layer_map):
                student_state, teacher_state = student_states[s + 1], teacher_states[t + 1]
                _check_lengths(student_state, teacher_state)
                if self.projections is not None:
                    student_state = self.projections[i](student_state)
                losses.append(loss_fn(student_state, teacher_state, attention_mask))
            parts["loss_hidden_state"] = torch.stack(losses).mean()
        if self.attention_loss is not None:
            student_maps = _returned(student_outputs, "attentions", "student")
            teacher_maps = _returned(teacher_outputs, "attentions", "teacher")
            losses = []
            for s, t in self.layer_map:
                _check_lengths(student_maps[s], teacher_maps[t])
                losses.append(attention_kl(student_maps[s], teacher_maps[t], attention_mask))
            parts["loss_attention"] = torch.stack(losses).mean()
        return LossParts(parts, {name: self.weights[name] for name in parts})

    # ---- what the trainer asks of an objective term (see DistillationObjective) ----

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The optimizer group of the projections (trained with the student, never part of it); none without them."""
        params = list(self.parameters())
        return [{"params": params, "weight_decay": weight_decay}] if params else []

    def callbacks(self, accelerator: Accelerator) -> list[TrainerCallback]:
        return [ProjectionGradients(self, accelerator)] if self.projections is not None else []

    def save_state(self, folder: str) -> None:
        save_projections(self, folder)

    def load_state(self, folder: str) -> None:
        load_projections(self, folder)


class ProjectionGradients(TrainerCallback):
    """What DDP and Trainer do for the student's gradients, done for the projections (which are outside the wrapped
    model): averaged over processes before each optimizer step, cleared after it."""

    def __init__(self, module: IntermediateDistillation, accelerator: Accelerator):
        self.module, self.accelerator = module, accelerator

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.accelerator.num_processes > 1:
            for param in self.module.parameters():
                if param.grad is not None:
                    param.grad = self.accelerator.reduce(param.grad, reduction="mean")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.module.zero_grad(set_to_none=True)


def save_projections(module: IntermediateDistillation, folder: str) -> None:
    """Write the projections (if any) to ``folder/intermediate_projections.safetensors`` (a checkpoint folder)."""
    state = module.state_dict()
    if state:
        save_file(
            {name: tensor.contiguous() for name, tensor in state.items()}, os.path.join(folder, PROJECTIONS_FILE)
        )


def load_projections(module: IntermediateDistillation, folder: str) -> None:
    """Load the projections saved by :func:`save_projections` in place (the optimizer keeps its references)."""
    if not module.state_dict():
        return
    path = os.path.join(folder, PROJECTIONS_FILE)
    optimizer_saved = any(os.path.isfile(os.path.join(folder, name)) for name in (OPTIMIZER_NAME, OPTIMIZER_NAME_BIN))
    if not os.path.isfile(path) and not optimizer_saved:
        raise ValueError(
            f"Checkpoint {folder} was written with save_only_model=True: it holds the student's weights but neither "
            f"the optimizer state nor the hidden-state projections ({PROJECTIONS_FILE}), so the run cannot resume. "
            "Resume from a checkpoint written without save_only_model, or start a new run from the checkpoint's "
            "weights (as the student, without resume_from_checkpoint)."
        )
    if not os.path.isfile(path):
        raise ValueError(
            f"Checkpoint {folder} has no {PROJECTIONS_FILE}, so the hidden-state projections cannot resume. Resume "
            "from a checkpoint written with the same hidden_state_loss, or start the run afresh."
        )
    device = next(module.parameters()).device
    module.load_state_dict(load_file(path, device=str(device)))


def _returned(outputs: Any, name: str, role: str) -> tuple[torch.Tensor, ...]:
    values = getattr(outputs, name, None)
    if not values:
        hint = " Load it with attn_implementation='eager'." if name == "attentions" else ""
        raise ValueError(f"The {role} returned no {name} (its forward was asked for them).{hint}")
    return values


def _check_lengths(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape[0] != teacher.shape[0] or student.shape[-2] != teacher.shape[-2]:
        raise ValueError(
            f"Student and teacher see sequences of different shapes ({tuple(student.shape)} vs "
            f"{tuple(teacher.shape)}): intermediate distillation needs the same tokens (one tokenizer) or the same "
            "number of image patches."
        )
