"""`--push_to_hub` that never loses a finished run: the Hub is checked before any work, and everything is on disk
before the upload starts."""

from __future__ import annotations

from pathlib import Path

from transformers import Trainer, TrainingArguments
from transformers.utils.hub import hf_api


def check_hub_access(args: TrainingArguments) -> None:
    """With ``--push_to_hub``, create (or find) the Hub repo now, before tokenizing, precomputing or training.

    Sets ``args.hub_model_id`` to the repo's full id. Raises a `ConnectionError` naming the fix when the Hub cannot be
    reached (no network, ``HF_HUB_OFFLINE=1``, a missing or read-only token).
    """
    if not args.push_to_hub or not args.should_save:
        return
    name = args.hub_model_id or Path(args.output_dir).absolute().name
    try:
        repo = hf_api().create_repo(name, token=args.hub_token, private=args.hub_private_repo, exist_ok=True)
    except Exception as error:
        raise ConnectionError(
            f"--push_to_hub: cannot create or reach the Hub repo {name!r} ({type(error).__name__}: {error}). Nothing "
            "has been computed yet. Log in with `hf auth login` (a write token), unset HF_HUB_OFFLINE, or drop "
            "--push_to_hub and upload the output folder later with `hf upload`."
        ) from error
    args.hub_model_id = repo.repo_id


def push_or_explain(trainer: Trainer, **card_kwargs) -> None:
    """``trainer.push_to_hub(**card_kwargs)``; on failure, say what is on disk and how to retry, then re-raise.

    Call it after metrics, state and card are written: the upload is the last step, so a failure loses nothing.
    """
    try:
        trainer.push_to_hub(**card_kwargs)
    except Exception as error:
        output_dir = trainer.args.output_dir
        repo = trainer.hub_model_id or trainer.args.hub_model_id or Path(output_dir).absolute().name
        raise RuntimeError(
            f"Upload to the Hub repo {repo!r} failed ({type(error).__name__}: {error}). The model, metrics, "
            f"trainer_state.json and README.md are saved in {output_dir}. Retry with `hf upload {repo} {output_dir}` "
            "(or `huggingface-cli upload`), or call `trainer.push_to_hub()` again."
        ) from error
