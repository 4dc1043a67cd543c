"""An ONNX graph pass: weights stored as integers instead of float + ``QuantizeLinear``.

``torch.onnx.export`` writes a quantized weight as a float initializer followed by
``QuantizeLinear`` and ``DequantizeLinear``. This pass computes the integers once
(ONNX's rounding: half to even, saturated), stores them as an ``int8`` initializer, or
``int4`` for layers of at most 4 bits when asked (ONNX opset 21: a model exported at
opset 20 is moved to 21, which changed no operator's meaning, only added types), and
feeds them straight to the ``DequantizeLinear``. The float
weights and the weight ``QuantizeLinear`` nodes disappear; what the graph computes does
not change.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["store_integer_weights", "default_opset", "INT4_OPSET"]

#: The first ONNX opset with 4-bit integer types.
INT4_OPSET = 21
#: The first IR version that knows them.
_INT4_IR_VERSION = 10


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Values of the graph's initializers and ``Constant`` node outputs, by name."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _integers(weight: np.ndarray, scale: np.ndarray, zero_point: np.ndarray,
              axis: int) -> np.ndarray:
    """``QuantizeLinear``'s int8 output for a constant input."""
    if scale.size > 1:
        shape = [1] * weight.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    q = np.round(weight.astype(np.float32) / scale.astype(np.float32)) + zero_point.astype(np.int32)
    return np.clip(q, -128, 127).astype(np.int8)


def _axis(node: onnx.NodeProto) -> int:
    return next((attr.i for attr in node.attribute if attr.name == "axis"), 1)


def store_integer_weights(model: onnx.ModelProto, weight_bits: Mapping[str, int],
                          int4: bool = True) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Replace every ``float initializer -> QuantizeLinear`` by an integer initializer.

    Args:
        model: an exported model (changed in place and returned).
        weight_bits: the bit-width of each quantized weight initializer, by name; others
            are stored as int8.
        int4: store weights of at most 4 bits as ``int4`` (the model must be at opset 20
            or 21; it ends at 21).

    Returns:
        ``(model, storage)``: ``storage`` maps each weight initializer's name to the
        ONNX type its integers are stored in (``"int8"`` or ``"int4"``).

    Raises:
        ValueError: a weight ``QuantizeLinear`` does not feed exactly one
            ``DequantizeLinear`` (not what ``torch.onnx.export`` writes), or ``int4``
            with a model below opset 20.
    """
    opset = default_opset(model)
    if int4 and any(w <= 4 for w in weight_bits.values()) and opset < INT4_OPSET - 1:
        raise ValueError(f"int4 weights need a model exported at opset {INT4_OPSET - 1} or "
                         f"{INT4_OPSET}, got {opset}")
    graph = model.graph
    constants = _constants(graph)
    initializers = {init.name for init in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    storage: dict[str, str] = {}
    removed: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in initializers:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "DequantizeLinear":
            raise ValueError(f"weight QuantizeLinear {node.name!r} must feed one "
                             "DequantizeLinear")
        name = node.input[0]
        zero_point = constants[node.input[2]] if len(node.input) > 2 else np.zeros(1, np.int8)
        q = _integers(constants[name], constants[node.input[1]], zero_point, _axis(node))
        use_int4 = int4 and weight_bits.get(name, 8) <= 4 and q.min() >= -8 and q.max() <= 7
        dtype = _int4_dtype() if use_int4 else np.int8
        graph.initializer.append(numpy_helper.from_array(q.astype(dtype), f"{name}_quantized"))
        graph.initializer.append(numpy_helper.from_array(
            np.zeros(zero_point.shape, dtype), f"{name}_zero_point"))
        dequantize = users[0]
        dequantize.input[0] = f"{name}_quantized"
        if len(dequantize.input) > 2:
            dequantize.input[2] = f"{name}_zero_point"
        else:
            dequantize.input.append(f"{name}_zero_point")
        removed.append(node)
        storage[name] = "int4" if use_int4 else "int8"
    for node in removed:
        graph.node.remove(node)
    _drop_unused_constants(graph)
    if "int4" in storage.values():
        _raise_opset(model, INT4_OPSET)
    return model, storage


def _drop_unused_constants(graph: onnx.GraphProto) -> None:
    """Remove initializers and ``Constant`` nodes nothing reads any more."""
    used = {name for node in graph.node for name in node.input}
    used |= {output.name for output in graph.output}
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)


def _int4_dtype():
    import ml_dtypes  # installed with onnx >= 1.16

    return ml_dtypes.int4


def default_opset(model: onnx.ModelProto) -> int:
    """The model's version of the default ONNX domain."""
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def _raise_opset(model: onnx.ModelProto, opset: int) -> None:
    """Move the default domain from ``opset - 1`` to ``opset`` (20 -> 21 only added
    types) and the IR version with it."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = max(entry.version, opset)
    model.ir_version = max(model.ir_version, _INT4_IR_VERSION)
