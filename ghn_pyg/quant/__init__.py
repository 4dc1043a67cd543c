"""Quantization: bit-width specs, fake-quant ops (STE), the fake-quant runner and PTQ."""

from .fakequant import fake_quant_act, fake_quant_weight
from .layers import BatchNormRunner, QuantLayer
from .ptq import PTQResult, ptq_evaluate, weight_qmse
from .quantizers import ActQuantizer, WeightQuantizer
from .runner import ParamsMismatchError, QuantizedModel, quantize
from .spec import FLOAT_BITS, VALID_BITS, QuantSpec, annotate

__all__ = [
    "QuantSpec", "annotate", "VALID_BITS", "FLOAT_BITS", "quantize", "QuantizedModel",
    "ParamsMismatchError", "QuantLayer", "BatchNormRunner", "WeightQuantizer", "ActQuantizer",
    "fake_quant_weight", "fake_quant_act", "ptq_evaluate", "PTQResult", "weight_qmse",
]
