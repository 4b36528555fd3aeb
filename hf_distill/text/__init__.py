"""Text-specific parts: datasets (files, Hub, the built-in tweets) and DistilBERT-style students.

- ``data``: text datasets (Hub, local files, built-in offline data) and two-tokenizer encoding.
- ``students``: students as DistilBERT-style copies of teacher layers, or from a config.
- ``augment``: augmented copies of training texts for a transfer set.
- ``transfer``: the text recipe's training set: labelled rows, unlabelled rows and augmented copies.
"""
