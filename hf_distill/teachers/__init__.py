"""Teachers: loading them, combining several, placing them on devices, and the source of a batch's teacher logits.

- ``loading``: loading, freezing and feeding a teacher model (and the model helpers the students share).
- ``ensemble``: several teachers (an ensemble), and self-distillation.
- ``distributed``: sharded dataset computations and teacher placement under DeepSpeed / FSDP.
- ``sources``: where a batch's teacher logits come from (stored columns or a teacher in the loop), in the student's
  label order.
"""
