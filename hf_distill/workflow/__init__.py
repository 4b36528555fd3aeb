"""What the recipe scripts and ``hf-distill`` share. Not part of the core API (the trainer and losses do not import it).

- ``arguments``: parsing recipe arguments and logging the way transformers' examples do.
- ``checkpoints``: rerunning a recipe on an ``output_dir`` that already holds a run.
- ``console``: a user's mistake reported as one line naming the problem and its fix.
- ``curves``: a sweep's learning curves (validation metric per epoch), to justify a study's budget.
- ``hub``: ``--push_to_hub`` that never loses a finished run.
- ``peft``: LoRA students from the recipes.
- ``publish``: the train / evaluate / predict / publish tail that every recipe shares.
- ``snapshots``: per-epoch teacher checkpoints and their scores, to pick an early-stopped teacher.
- ``sweep``: sweeps over recipe flags (``hf-distill sweep``, ``hf-distill sweep-table``).
"""
