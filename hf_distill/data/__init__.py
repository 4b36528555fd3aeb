"""Data for distillation: batches, stored teacher logits and labels.

- ``data_collator``: collation of batches that carry teacher inputs beside the student's.
- ``dataset_checks``: checks of a training or evaluation dataset against the student, which return what they found.
- ``labels``: the teacher's label order aligned with the student's, and the one encoder of raw label cells.
- ``logit_columns``: teacher-logit columns read from Arrow a batch at a time, as contiguous arrays.
- ``precompute``: teacher logits computed once and stored as a `datasets` column.
- ``provenance``: where precomputed teacher logits came from, stored with the dataset.
- ``streaming``: streamed data (`datasets.IterableDataset`).
- ``top_k``: top-k storage of teacher logits for many-class problems.
- ``unlabeled``: unlabelled rows in a training set (a transfer set), labelled by the teacher.
"""
