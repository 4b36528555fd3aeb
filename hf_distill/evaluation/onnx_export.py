"""Students as deployed: exported with `torch.onnx` (the `torch.export`-based exporter), run with ONNX Runtime, and
optionally quantised to int8 with ONNX Runtime's dynamic quantisation (weights int8, activations quantised on the
fly). Needs the ``onnx`` extra: ``pip install hf_distill[onnx]``."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

QUANTIZATION_MODES = ("dynamic",)
_SEQUENCE_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"The onnxruntime backend needs onnx, onnxscript and onnxruntime ({error.name} is missing): "
            "pip install 'hf_distill[onnx]'"
        ) from error


def export_onnx(model: torch.nn.Module, example_inputs: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Export a classifier to ONNX with dynamic batch (and sequence) axes; its first output is the logits.

    ``example_inputs`` are keyword inputs of ``model`` with at least 2 rows (a batch of one would fix the batch
    size in the graph). Uses ``torch.onnx.export(..., dynamo=True)``, the exporter PyTorch maintains since 2.9.
    """
    _require_onnx()
    if any(value.shape[0] < 2 for value in example_inputs.values()):
        raise ValueError("Export with an example batch of at least 2 rows, so the batch axis stays dynamic.")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic_shapes = {
        name: {0: batch, 1: sequence} if name in _SEQUENCE_INPUTS and value.dim() == 2 else {0: batch}
        for name, value in example_inputs.items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    exporter_logger = logging.getLogger("torch.onnx")
    level = exporter_logger.level
    exporter_logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="# The axis name")  # batch/sequence named once, used twice
            warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)", category=FutureWarning)
            torch.onnx.export(
                model,
                (),
                f=str(path),
                kwargs=example_inputs,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
    finally:
        exporter_logger.setLevel(level)
    return path


def quantize_dynamic_int8(path: str | os.PathLike, output: str | os.PathLike) -> Path:
    """``onnxruntime.quantization.quantize_dynamic`` with int8 weights.

    ONNX Runtime's optional pre-processing (``quant_pre_process``) is skipped: on the dynamo export of a BERT it
    fails (incomplete symbolic shape inference; without it, an external-data check) and leaves temporary files in
    the working directory. Its "consider pre-processing" log line is silenced for the same reason."""
    _require_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(path), str(output), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return Path(output)


class OnnxRunner:
    """Logits from an ONNX model through an ONNX Runtime CPU session with ``num_threads`` intra-op threads."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None) -> None:
        _require_onnx()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]

    def __call__(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        feed = {name: inputs[name].detach().cpu().numpy() for name in self.input_names}
        return self.session.run(None, feed)[0]

    @property
    def size_bytes(self) -> int:
        """Bytes of the model file and of any external data files beside it."""
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))
