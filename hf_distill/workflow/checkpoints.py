"""Rerunning a recipe on an ``output_dir`` that already holds a run, as transformers' example scripts do."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

logger = logging.getLogger(__name__)

_TRUE = ("true", "True", "1")
# Written by `train_evaluate_publish` once training has finished.
FINISHED_MARKER = "train_results.json"


@dataclass
class TeacherTrainingArguments(TrainingArguments):
    """`TrainingArguments` of the teacher recipes: a checkpoint and an evaluation per epoch (the early-stopped
    snapshots), all kept, and ``--overwrite_output_dir`` for reruns (see :func:`resolve_checkpoint`)."""

    save_strategy: str = field(default="epoch", metadata={"help": "Checkpoint every epoch (a snapshot per epoch)."})
    eval_strategy: str = field(default="epoch", metadata={"help": "Evaluate every epoch."})
    save_total_limit: int | None = field(default=None, metadata={"help": "Keep all snapshots by default."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train from scratch in an output_dir that already holds a run, instead of resuming."},
    )


def resolve_checkpoint(args: TrainingArguments) -> None:
    """Set ``args.resume_from_checkpoint`` for a rerun, or refuse before anything is written.

    With ``--do_train`` and an ``output_dir`` holding ``checkpoint-*`` folders of an unfinished run, training
    resumes from the last one (a crashed run goes on; nothing it saved is deleted). ``--resume_from_checkpoint True``
    asks for exactly that (also to train a finished run further) and refuses when there is no checkpoint. A finished
    run (``train_results.json``) or a non-empty ``output_dir`` without checkpoints is refused, so that its results
    are not overwritten. ``--overwrite_output_dir`` trains from scratch instead (later checkpoints then replace the
    old ones of the same step, and ``save_total_limit`` may rotate the old ones out).
    """
    resume = args.resume_from_checkpoint
    if resume in _TRUE:
        resume = True
    elif isinstance(resume, str) and not os.path.isdir(resume):
        raise ValueError(f"--resume_from_checkpoint {resume!r} is not a folder; give a checkpoint-* folder or True.")
    if not args.do_train:
        return
    output_dir = args.output_dir
    last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if resume is True:
        if last is None:
            raise ValueError(f"--resume_from_checkpoint True, but {output_dir} holds no checkpoint-* folder.")
        args.resume_from_checkpoint = last
        return
    if resume is not None or getattr(args, "overwrite_output_dir", False) or not os.path.isdir(output_dir):
        return
    if os.path.exists(os.path.join(output_dir, FINISHED_MARKER)):
        raise ValueError(
            f"Output directory {output_dir} holds a finished run ({FINISHED_MARKER}). Pass --overwrite_output_dir "
            "to train there from scratch (its files may be overwritten), --resume_from_checkpoint True to train it "
            "further from its last checkpoint, or choose another --output_dir."
        )
    if last is None and os.listdir(output_dir):
        raise ValueError(
            f"Output directory {output_dir} already exists, is not empty and holds no checkpoint to resume from. Pass "
            "--overwrite_output_dir to train there from scratch (its files may be overwritten), or choose another "
            "--output_dir."
        )
    if last is not None:
        logger.info(
            f"Checkpoint detected, resuming training at {last}. To start from scratch, pass --overwrite_output_dir or "
            "choose another --output_dir."
        )
        args.resume_from_checkpoint = last
