"""Sweeps: hf-distill sweep and the study configs."""
