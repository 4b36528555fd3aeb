"""What the recipe scripts share: argument parsing and logging, the train / evaluate / publish tail, and teacher
snapshots. Not part of the core API (the trainer and losses do not import it)."""
