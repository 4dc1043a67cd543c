"""Quantization: bit-width specs (and, later, fake-quant execution and PTQ)."""

from .spec import FLOAT_BITS, VALID_BITS, QuantSpec, annotate

__all__ = ["QuantSpec", "annotate", "VALID_BITS", "FLOAT_BITS"]
