"""The recipes and the hf-distill command end to end, the README's quickstart, the benchmark scripts."""
