"""Moved to :mod:`hf_distill.methods.pruning`; this import path stays because the docs named it for reloading a
pruned model (``load_pruned_model``)."""

from .methods.pruning import *  # noqa: F403
