"""Evaluation and reporting of distilled students.

- ``compare``: teacher-vs-student comparison: quality, agreement, calibration, size and speed.
- ``compare_command``: the ``hf-distill compare`` command.
- ``metrics``: classification and teacher-student metrics computed locally (scikit-learn, numpy).
- ``model_result``: one model's row of a comparison (shared by ``compare`` and ``plots``).
- ``model_card``: model cards for distilled students, rendered from data.
- ``onnx_export``: students as deployed: ONNX export, ONNX Runtime, int8 quantisation.
- ``plots``: bootstrap intervals and the comparison figure.
- ``teacher_metrics``: the teacher's own metrics on each evaluation set, from the logits the loss computed.
- ``timing``: the one latency timer.
"""
