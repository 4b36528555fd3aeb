"""Rerunning a recipe on an ``output_dir`` that already holds a run, as transformers' example scripts do."""

from __future__ import annotations

import logging
import os

from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

logger = logging.getLogger(__name__)

_TRUE = ("true", "True", "1")


def resolve_checkpoint(args: TrainingArguments) -> None:
    """Set ``args.resume_from_checkpoint`` for a rerun, or refuse before anything is written.

    With ``--do_train`` and an ``output_dir`` holding ``checkpoint-*`` folders, training resumes from the last one (a
    crashed run goes on; nothing it saved is deleted). ``--resume_from_checkpoint True`` asks for exactly that and
    refuses when there is no checkpoint. A non-empty ``output_dir`` without checkpoints (the results of a finished
    run) is refused. ``--overwrite_output_dir`` trains from scratch instead (later checkpoints then replace the old
    ones of the same step, and ``save_total_limit`` may rotate the old ones out).
    """
    resume = args.resume_from_checkpoint
    if isinstance(resume, str) and resume in _TRUE:
        resume = True
    if resume is not None and not isinstance(resume, bool) and not os.path.isdir(resume):
        raise ValueError(f"--resume_from_checkpoint {resume!r} is not a folder; give a checkpoint-* folder or True.")
    overwrite = getattr(args, "overwrite_output_dir", False)
    if not args.do_train or (overwrite and resume is None) or not os.path.isdir(args.output_dir):
        if resume is True:
            raise ValueError(f"--resume_from_checkpoint True, but {args.output_dir} holds no checkpoint-* folder.")
        args.resume_from_checkpoint = resume or None
        return
    last = get_last_checkpoint(args.output_dir)
    if resume is True or resume is None:
        if last is None and resume is True:
            raise ValueError(f"--resume_from_checkpoint True, but {args.output_dir} holds no checkpoint-* folder.")
        if last is None and os.listdir(args.output_dir):
            raise ValueError(
                f"Output directory {args.output_dir} already exists, is not empty and holds no checkpoint to resume "
                "from. Pass --overwrite_output_dir to train there from scratch (its files may be overwritten), or "
                "choose another --output_dir."
            )
        if last is not None:
            logger.info(
                f"Checkpoint detected, resuming training at {last}. To start from scratch, pass "
                "--overwrite_output_dir or choose another --output_dir."
            )
        resume = last
    args.resume_from_checkpoint = resume
