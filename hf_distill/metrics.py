"""Moved to :mod:`hf_distill.evaluation.metrics`; this import path stays because the README's quickstart used it."""

from .evaluation.metrics import *  # noqa: F403
