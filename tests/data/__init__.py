"""Data: precomputed logits, logit columns, transfer sets, image datasets."""
