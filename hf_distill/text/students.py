"""Building students: DistilBERT-style copies of teacher layers, or random initialisation from a config."""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel

from ..data.labels import label_config
from ..methods.pruning import load_pruned_model, pruned_heads

STUDENT_INITS = ("teacher_layers", "random", "pretrained")
# The options of `create_student` that each init uses; the others have no effect.
STUDENT_INIT_OPTIONS = {
    "teacher_layers": ("layers", "num_layers"),
    "random": ("num_layers", "hidden_size", "num_attention_heads", "intermediate_size"),
    "pretrained": ("name_or_path", "layers", "num_layers"),
}

# Deploy-sized students: random init from the teacher's config (so they share its tokenizer), with these sizes.
# `tiny`: 1 layer, 128 wide, 2 heads, 512 feed-forward; about 4.2M parameters with a 30k-token vocabulary (most
# of them the embedding table). One layer, not two: at batch 1 on a CPU thread a layer this small costs mostly fixed
# per-call work, so a second one made the student 1.6x slower (15x against 9.6x the speed of the MiniLM-L6 teacher)
# for no accuracy on the demo's transfer set. Random-init students this small need a larger learning rate than a
# fine-tuned encoder: lr 1e-3 with warmup, 3 to 4 epochs over a 20k-row transfer set (both measured in
# docs/transfer.md).
STUDENT_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"num_layers": 1, "hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 512},
}

# A layer of a BERT-family encoder stack: bert/roberta/electra/xlm-roberta/mpnet `*.encoder.layer.N.*`,
# distilbert `distilbert.transformer.layer.N.*`.
_LAYER_KEY = re.compile(r"^(?P<stack>(?:.+\.)?(?:encoder|transformer)\.layer)\.(?P<index>\d+)\.(?P<rest>.+)$")
_LAYER_COUNT_ATTRS = ("num_hidden_layers", "n_layers")


def spread_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Evenly spaced teacher layers, first and last included: 6 of 12 gives DistilBERT's [0, 2, 4, 7, 9, 11]."""
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"A student needs 1 to {num_teacher_layers} layers of this teacher, got {num_student_layers}."
        )
    if num_student_layers == 1:
        return [num_teacher_layers - 1]
    step = (num_teacher_layers - 1) / (num_student_layers - 1)
    return [int(i * step + 0.5) for i in range(num_student_layers)]


def copied_layers(
    config: PretrainedConfig, layers: list[int] | None = None, num_layers: int | None = None
) -> list[int]:
    """The layers of a model with ``config`` that :func:`student_from_teacher` copies: ``layers``, else
    ``spread_layers(N, num_layers or N // 2)``."""
    if layers is not None:
        return list(layers)
    num_teacher_layers = getattr(config, _layer_count_attr(config))
    return spread_layers(num_teacher_layers, num_layers or max(1, num_teacher_layers // 2))


def unused_student_options(init: str, options: dict[str, object]) -> list[str]:
    """The names in ``options`` (set, i.e. not None) that ``init`` does not use (see ``STUDENT_INIT_OPTIONS``)."""
    used = STUDENT_INIT_OPTIONS.get(init, ())
    return [name for name, value in options.items() if value is not None and name not in used]


def _layer_count_attr(config: PretrainedConfig) -> str:
    for attr in _LAYER_COUNT_ATTRS:
        if hasattr(config, attr):
            return attr
    raise ValueError(f"Cannot find the layer count of {type(config).__name__}; expected one of {_LAYER_COUNT_ATTRS}.")


def student_from_teacher(
    teacher: PreTrainedModel, layers: list[int] | None = None, num_layers: int | None = None
) -> PreTrainedModel:
    """A shallower copy of ``teacher`` that keeps its embeddings, the chosen encoder ``layers``, pooler and head.

    Sanh et al., "DistilBERT, a distilled version of BERT" (2019): initialising the student from every other
    teacher layer is crucial. ``layers`` defaults to ``spread_layers(N, num_layers or N // 2)``. Works for the BERT
    family (BERT, RoBERTa, XLM-R, ELECTRA, MPNet, MiniLM-style BERT, DistilBERT); other layouts raise ``ValueError``.
    """
    config = teacher.config
    attr = _layer_count_attr(config)
    num_teacher_layers = getattr(config, attr)
    layers = copied_layers(config, layers, num_layers)
    if not layers or any(not 0 <= i < num_teacher_layers for i in layers):
        raise ValueError(f"Student layers must index the teacher's {num_teacher_layers} layers, got {layers}.")

    teacher_state = teacher.state_dict()
    layer_keys = [k for k in teacher_state if _LAYER_KEY.match(k)]
    if not layer_keys or getattr(config, "num_hidden_groups", 1) != 1:
        raise ValueError(
            f"student_from_teacher copies layers of BERT-family encoders (`encoder.layer.N`); "
            f"{type(teacher).__name__} ({config.model_type}) has another layout. Build a random student with "
            "student_from_config instead."
        )
    student_config = copy.deepcopy(config)
    setattr(student_config, attr, len(layers))
    student = type(teacher)(student_config)

    student_state = {}
    for key, value in teacher_state.items():
        match = _LAYER_KEY.match(key)
        if match is None:
            student_state[key] = value
    for target, source in enumerate(layers):
        for key in layer_keys:
            match = _LAYER_KEY.match(key)
            if int(match["index"]) == source:
                student_state[f"{match['stack']}.{target}.{match['rest']}"] = teacher_state[key]
    missing, unexpected = student.load_state_dict(student_state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise ValueError(
            f"Could not map teacher weights onto the student: missing {missing}, unexpected {unexpected}."
        )
    return student.to(next(teacher.parameters()).dtype)


def student_from_config(
    config: PretrainedConfig,
    *,
    num_layers: int | None = None,
    hidden_size: int | None = None,
    num_attention_heads: int | None = None,
    intermediate_size: int | None = None,
    seed: int | None = None,
) -> PreTrainedModel:
    """A randomly initialised sequence classifier from ``config`` (typically the teacher's) with size overrides.

    Random-initialised students are where distillation helps most (Turc et al., "Well-Read Students Learn Better",
    2019). When ``hidden_size`` changes and ``intermediate_size`` is not given, it is set to ``4 * hidden_size``.
    """
    config = copy.deepcopy(config)
    if num_layers is not None:
        setattr(config, _layer_count_attr(config), num_layers)
    if hidden_size is not None:
        config.hidden_size = hidden_size
        config.intermediate_size = intermediate_size or 4 * hidden_size
    elif intermediate_size is not None:
        config.intermediate_size = intermediate_size
    if num_attention_heads is not None:
        config.num_attention_heads = num_attention_heads
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"hidden_size ({config.hidden_size}) must be divisible by num_attention_heads "
            f"({config.num_attention_heads})."
        )
    if seed is not None:
        torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config)


def preset_sizes(preset: str) -> dict[str, int]:
    """The sizes of a :data:`STUDENT_PRESETS` entry (a random-init student of the teacher's config)."""
    if preset not in STUDENT_PRESETS:
        raise ValueError(f"student_preset must be one of {', '.join(STUDENT_PRESETS)}, got {preset!r}.")
    return dict(STUDENT_PRESETS[preset])


def create_student(
    init: str,
    teacher: PreTrainedModel,
    *,
    name_or_path: str | None = None,
    layers: list[int] | None = None,
    num_layers: int | None = None,
    hidden_size: int | None = None,
    num_attention_heads: int | None = None,
    intermediate_size: int | None = None,
    labels: list[str] | None = None,
    seed: int | None = None,
    **from_pretrained_kwargs: Any,
) -> PreTrainedModel:
    """A student by ``init``: ``teacher_layers`` (copy of chosen teacher layers), ``random`` (teacher's config with
    size overrides) or ``pretrained`` (``name_or_path`` with a fresh head for ``labels``, loaded with
    ``from_pretrained_kwargs`` such as ``revision`` or ``cache_dir``, and truncated to ``layers`` / ``num_layers`` of
    its own layers when given, as for ``teacher_layers``)."""
    if init == "teacher_layers":
        return student_from_teacher(teacher, layers=layers, num_layers=num_layers)
    if init == "random":
        return student_from_config(
            teacher.config,
            num_layers=num_layers,
            hidden_size=hidden_size,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            seed=seed,
        )
    if init == "pretrained":
        if name_or_path is None:
            raise ValueError("student_init='pretrained' needs --student_model_name_or_path.")
        labels = labels or [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
        if pruned_heads(AutoConfig.from_pretrained(name_or_path, **from_pretrained_kwargs)):
            return _pruned_student(name_or_path, labels, layers, num_layers, **from_pretrained_kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path,
            **label_config(labels),
            ignore_mismatched_sizes=True,
            **from_pretrained_kwargs,
        )
        if layers is None and num_layers is None:
            return model
        return student_from_teacher(model, layers=layers, num_layers=num_layers)
    raise ValueError(f"student_init must be one of {STUDENT_INITS}, got {init!r}.")


def _pruned_student(
    name_or_path: str, labels: list[str], layers: list[int] | None, num_layers: int | None, **from_pretrained_kwargs
) -> PreTrainedModel:
    """A head-pruned classifier as the student (:func:`~hf_distill.methods.pruning.load_pruned_model`; ``from_pretrained``
    with ``ignore_mismatched_sizes`` would re-initialise its pruned attention). It keeps its trained head, so its
    labels must be the task's, and its layers are its own."""
    model = load_pruned_model(name_or_path, **from_pretrained_kwargs)
    own = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if own != list(labels):
        raise ValueError(
            f"{name_or_path!r} is head-pruned and keeps its trained classifier, whose labels {own} are not the "
            f"task's {list(labels)}. Prune a model trained on these labels."
        )
    if layers is not None or num_layers is not None:
        raise ValueError(
            f"{name_or_path!r} is head-pruned: it cannot be cut to other layers. Drop --student_layers / "
            "--student_num_layers, or prune whole layers with --prune_layers."
        )
    return model
