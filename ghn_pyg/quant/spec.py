"""``QuantSpec``: which bit-widths each layer of a network gets, and ``annotate``."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Union

import torch

from ..graph.archgraph import ArchGraph
from ..graph.bits import FLOAT_BITS, VALID_BITS, bit_width
from ..graph.ops import QUANTIZABLE_OPS

__all__ = ["QuantSpec", "annotate", "VALID_BITS", "FLOAT_BITS"]

Bits = Union[int, tuple[int, int]]


def _check_bits(value: Any, what: str) -> tuple[int, int]:
    """Normalise ``value`` (bits, or (w_bits, a_bits)) and validate it."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"{what}: expected bits or a (w_bits, a_bits) pair, got {value!r}")
    return bit_width(pair[0], what), bit_width(pair[1], what)


@dataclass
class QuantSpec:
    """Bit-widths for the weights and input activations of every conv and linear layer.

    Rules, first match wins:

    1. ``layers``: exact module names (as in ``model.named_modules()``).
    2. ``patterns``: regular expressions, matched with ``re.fullmatch`` against the
       module name, in insertion order.
    3. ``first_last_8bit``: the first and last quantizable layers get 8 bits.
    4. ``ops``: by primitive (``"conv"``, ``"dw_conv"``, ``"group_conv"``, ``"linear"``).
    5. the defaults ``w_bits`` and ``a_bits``.

    Each override value is an int (weights and activations alike) or a
    ``(w_bits, a_bits)`` pair. Bits must be 2..8, 16 or 32 (float).

    Args:
        w_bits: default weight bit-width.
        a_bits: default bit-width of a layer's input activations.
        layers: exact-name overrides.
        patterns: regex overrides.
        ops: per-primitive overrides.
        first_last_8bit: keep the first and last layers at 8 bits (common practice).
        strict: raise if a pattern matches no layer of an annotated graph.
        per_channel: per-output-channel (True) or per-tensor weight scales.
        fold_bn: fold batch norm into the preceding conv before quantizing weights.

    Raises:
        ValueError: invalid bits (naming the layer or field) or unknown op names.

    Example::

        spec = QuantSpec(w_bits=4, a_bits=4, first_last_8bit=True,
                         ops={"dw_conv": 8}, layers={"classifier.1": (8, 8)})
    """

    w_bits: int = FLOAT_BITS
    a_bits: int = FLOAT_BITS
    layers: Mapping[str, Bits] = field(default_factory=dict)
    patterns: Mapping[str, Bits] = field(default_factory=dict)
    ops: Mapping[str, Bits] = field(default_factory=dict)
    first_last_8bit: bool = False
    strict: bool = False
    per_channel: bool = True
    fold_bn: bool = False

    def __post_init__(self) -> None:
        self.w_bits = bit_width(self.w_bits, "QuantSpec.w_bits (one bit-width; per-layer "
                                "pairs go in layers=)")
        self.a_bits = bit_width(self.a_bits, "QuantSpec.a_bits")
        self.layers = {name: _check_bits(b, f"layer {name!r}") for name, b in self.layers.items()}
        self.patterns = {p: _check_bits(b, f"pattern {p!r}") for p, b in self.patterns.items()}
        self.ops = {op: _check_bits(b, f"op {op!r}") for op, b in self.ops.items()}
        unknown = [op for op in self.ops if op not in QUANTIZABLE_OPS]
        if unknown:
            raise ValueError(
                f"QuantSpec.ops: {', '.join(map(repr, unknown))} are not quantizable "
                f"primitives; use one of {', '.join(sorted(QUANTIZABLE_OPS))}")
        self._compiled = []
        for pattern in self.patterns:
            try:
                self._compiled.append(re.compile(pattern))
            except re.error as err:
                raise ValueError(f"QuantSpec.patterns: invalid regex {pattern!r}: {err}") from None

    @classmethod
    def uniform(cls, bits: int, **kwargs: Any) -> "QuantSpec":
        """A spec with ``bits`` for weights and activations of every layer."""
        return cls(w_bits=bits, a_bits=bits, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; :meth:`from_dict` inverts it."""
        out = asdict(self)
        for key in ("layers", "patterns", "ops"):
            out[key] = {k: list(v) for k, v in out[key].items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "QuantSpec":
        """Rebuild a spec from :meth:`to_dict`'s output."""
        return cls(**{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()})

    def bits_for(self, module_name: str | None, primitive: str,
                 first_or_last: bool = False) -> tuple[int, int]:
        """The ``(w_bits, a_bits)`` of one layer.

        Args:
            module_name: qualified module name, or None when unknown.
            primitive: the node's primitive name; non-quantizable ones get float.
            first_or_last: whether it is the first or last quantizable layer.
        """
        if primitive not in QUANTIZABLE_OPS:
            return FLOAT_BITS, FLOAT_BITS
        if module_name is not None:
            if module_name in self.layers:
                return self.layers[module_name]
            for regex, bits in zip(self._compiled, self.patterns.values()):
                if regex.fullmatch(module_name):
                    return bits
        if first_or_last and self.first_last_8bit:
            return 8, 8
        if primitive in self.ops:
            return self.ops[primitive]
        return self.w_bits, self.a_bits

    def annotate(self, graph: ArchGraph) -> ArchGraph:
        """A copy of ``graph`` with ``w_bits``/``a_bits`` set from this spec.

        Only the two bit fields are new; all other fields are shared with ``graph``,
        which is left unchanged. No tracing happens.

        Raises:
            ValueError: an exact layer name in ``layers`` is not a conv/linear layer of
                this graph, or (``strict``) a pattern matches none of its layers.
        """
        ops = graph.op_names()
        names = graph.module_names()
        layer_names = {names[v] for v in graph.quantizable_nodes() if names[v] is not None}
        unknown = [name for name in self.layers if name not in layer_names]
        if unknown:
            raise ValueError(
                f"QuantSpec.layers names no conv/linear layer of graph {graph.name!r}: "
                f"{', '.join(map(repr, unknown))}")
        if self.strict:
            unmatched = [p for p, regex in zip(self.patterns, self._compiled)
                         if not any(regex.fullmatch(n) for n in layer_names)]
            if unmatched:
                raise ValueError(
                    f"QuantSpec.patterns match no layer of graph {graph.name!r}: "
                    f"{', '.join(map(repr, unmatched))}")
        ends = graph.first_last()
        bits = [self.bits_for(names[v], ops[v], v in ends) for v in range(len(ops))]
        return graph.with_bits(torch.tensor([b[0] for b in bits], dtype=torch.long),
                               torch.tensor([b[1] for b in bits], dtype=torch.long))


def annotate(graph: ArchGraph, spec: QuantSpec) -> ArchGraph:
    """``spec.annotate(graph)``: a copy of ``graph`` with bit-widths from ``spec``."""
    return spec.annotate(graph)
