"""Distillation methods beyond the logit loss of ``losses``.

- ``intermediate``: intermediate-layer distillation (hidden states, attention maps) as an objective term.
- ``schedules``: alpha and temperature schedules of the objective over training.
- ``pruning``: structured pruning of BERT-family classifiers (heads, FFN neurons, layers).
"""
