"""The trainer: arguments, the training step, teacher metrics in evaluation, streamed and multi-process runs."""
