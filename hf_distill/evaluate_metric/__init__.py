"""An `evaluate` module for teacher-student metrics: ``evaluate.load(hf_distill.evaluate_metric.PATH)``."""

from pathlib import Path

PATH = str(Path(__file__).parent / "distillation.py")
