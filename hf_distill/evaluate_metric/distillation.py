"""Teacher-student metrics as an `evaluate` module, loaded by path (works offline):

import evaluate
import hf_distill.evaluate_metric

metric = evaluate.load(hf_distill.evaluate_metric.PATH)
metric.compute(predictions=student_logits, references=teacher_logits, labels=labels)
"""

import datasets
import evaluate

from hf_distill.evaluation.metrics import classification_metrics, expected_calibration_error, teacher_student_metrics

_DESCRIPTION = """Top-1 agreement and mean KL(teacher || student) of a student's logits against its teacher's
(Hinton et al., 2015); with labels, also the student's accuracy, macro-F1 and expected calibration error
(Guo et al., 2017)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: the student's logits, one list of class scores per example.
    references: the teacher's logits, in the same label order.
    labels (optional): gold class ids; rows labelled -100 are skipped for accuracy, macro-F1 and ECE.
    temperature (optional, default 1.0): softmax temperature of the KL.
    num_bins (optional, default 15): confidence bins of the ECE.
Returns:
    agreement, mean_kl, and with labels accuracy, macro_f1 and ece.
"""

_CITATION = """@article{hinton2015distilling, title={Distilling the Knowledge in a Neural Network},
author={Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff}, journal={arXiv:1503.02531}, year={2015}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Distillation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references, labels=None, temperature=1.0, num_bins=15):
        results = teacher_student_metrics(predictions, references, temperature)
        if labels is not None:
            results.update(classification_metrics(predictions, labels))
            results["ece"] = expected_calibration_error(predictions, labels, num_bins)
        return results
