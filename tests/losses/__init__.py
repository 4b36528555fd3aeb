"""Losses: the registry, each loss against a float64 reference, corrections, the objective, top-k."""
