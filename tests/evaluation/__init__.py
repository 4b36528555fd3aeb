"""Evaluation: hf-distill compare, plots, metrics, model cards."""
