"""Bit-width constants and labels shared by graphs, quantization, training and reports."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["VALID_BITS", "FLOAT_BITS", "EVAL_BITS", "bit_width", "parse_bits", "bits_label"]

#: Allowed bit-widths; 32 means float (no fake quantization).
VALID_BITS: frozenset[int] = frozenset({2, 3, 4, 5, 6, 7, 8, 16, 32})
#: The bit-width that means "not quantized".
FLOAT_BITS = 32
#: The bit-widths results are reported at by default: float, then W8A8, W4A4, W2A2.
EVAL_BITS: tuple[int, ...] = (32, 8, 4, 2)


def bit_width(bits: Any, what: str) -> int:
    """One bit-width as a plain int (any integer type is accepted).

    Args:
        bits: the value to check.
        what: names the setting in the error.

    Raises:
        ValueError: not an integer of :data:`VALID_BITS` (bools are refused).
    """
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or int(bits) not in VALID_BITS:
        raise ValueError(
            f"{what}: invalid bit-width {bits!r}; allowed are 2..8, 16 and 32 (float)")
    return int(bits)


def parse_bits(text: str, what: str) -> tuple[int, ...]:
    """Comma-separated bit-widths (a command-line value) as checked ints.

    Args:
        text: e.g. ``"32,4"``.
        what: names the setting in the error (e.g. ``"--bits"``).

    Returns:
        The bit-widths in the given order, e.g. ``(32, 4)``.

    Raises:
        ValueError: a value that is not an integer or not a valid bit-width.
    """
    return tuple(bit_width(int(b), what) for b in text.split(","))


def bits_label(w_bits: int, a_bits: int | None = None) -> str:
    """``"FP32"`` when nothing is quantized, else ``"W{w}A{a}"`` (e.g. ``"W4A4"``,
    ``"W8A32"`` for weights only); ``a_bits`` defaults to ``w_bits``."""
    a_bits = w_bits if a_bits is None else a_bits
    if w_bits >= FLOAT_BITS and a_bits >= FLOAT_BITS:
        return "FP32"
    return f"W{w_bits}A{a_bits}"
