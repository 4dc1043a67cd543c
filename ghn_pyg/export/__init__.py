"""Export of quantized networks: ONNX with integer weights and QuantizeLinear /
DequantizeLinear activations, checked in ONNX Runtime.

Needs the ``export`` extra (``pip install ghn_pyg[export]``: onnx and onnxruntime);
this package imports them only when a function needs them.
"""

from .exporter import (DEFAULT_OPSET, PREDICTED_BN_BATCHES, OnnxExport, bn_batches_for,
                       export_quantized, to_onnx)
from .qdq import EXPORT_BITS, LayerExport, QDQLayer, qdq_module
from .runtime import Agreement, compare_outputs, onnx_logits, onnx_session

__all__ = [
    "to_onnx", "export_quantized", "OnnxExport", "DEFAULT_OPSET", "PREDICTED_BN_BATCHES",
    "bn_batches_for", "QDQLayer", "LayerExport",
    "EXPORT_BITS", "qdq_module", "onnx_session", "onnx_logits", "Agreement", "compare_outputs",
]
