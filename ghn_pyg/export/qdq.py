r"""A fitted :class:`~ghn_pyg.quant.QuantizedModel` as a plain module whose quantization
traces into ONNX ``QuantizeLinear``/``DequantizeLinear`` pairs.

Each :class:`~ghn_pyg.quant.QuantLayer` becomes a :class:`QDQLayer` that computes what
the fake-quant runner computes with its frozen ranges and running statistics:

.. math::
    y = \mathrm{op}\big(\mathrm{clip}(\mathrm{DQ}(\mathrm{Q}(x))),\;
        \mathrm{DQ}(\mathrm{Q}(\hat W)),\; b'\big),

where :math:`\hat W` is the runner's fake-quantized weight (batch norm folded in with
its running statistics), so :math:`\mathrm{Q}(\hat W)` recovers its integers exactly;
activations are quantized with the runner's scale and zero point, per tensor, to
``uint8``; below 8 bits a ``Clip`` after the ``DequantizeLinear`` keeps them on the
:math:`b`-bit grid (the same values as clipping first; ONNX Runtime's graph
optimizations drop a ``Clip`` that directly precedes a ``QuantizeLinear``, which broke
agreement at 4 bits). Batch norms that could not be folded run as
``BatchNormalization`` with their running statistics.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UnfittedModelError, UnsupportedBitsError
from ..graph.bits import FLOAT_BITS
from ..quant.fakequant import act_qparams, act_qrange, weight_scale
from ..quant.layers import BatchNormRunner, QuantLayer
from ..quant.runner import QuantizedModel

__all__ = ["QDQLayer", "LayerExport", "EXPORT_BITS", "qdq_module"]

#: Bit-widths an exported layer may have (weights or activations): integer grids that
#: fit 8-bit storage, or float.
EXPORT_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, FLOAT_BITS)


@dataclass(frozen=True)
class LayerExport:
    """What one exported conv/linear layer holds.

    Attributes:
        name: the module name in the original network.
        w_bits, a_bits: its bit-widths.
        weight_key: the name of its weight in the exported module's ``state_dict`` (the
            ONNX initializer the integer pass replaces).
    """

    name: str
    w_bits: int
    a_bits: int
    weight_key: str


class QDQLayer(nn.Module):
    """A conv or linear layer with fixed quantization parameters, for export.

    Args:
        layer: a fitted :class:`QuantLayer` (frozen activation range below 32 bits,
            folded batch norm in ``"running"`` mode).

    Shapes:
        input: the wrapped layer's input; output: its output.
    """

    def __init__(self, layer: QuantLayer) -> None:
        super().__init__()
        self._op_layer = (layer._layer[0],)  # for its hyper-parameters, not its weights
        self.w_bits = layer.weight_quant.bits
        self.a_bits = layer.act_quant.bits
        self.per_channel = layer.weight_quant.per_channel
        with torch.no_grad():
            weight, bias = layer.float_weight()
            self.register_buffer("weight", layer.weight_quant(weight).detach().clone())
            self.register_buffer("bias", bias.detach().clone() if bias is not None else None)
            if self.w_bits < FLOAT_BITS:
                self.register_buffer("weight_scale",
                                     weight_scale(weight, self.w_bits, self.per_channel))
            if self.a_bits < FLOAT_BITS:
                scale, zero_point = act_qparams(layer.act_quant.low, layer.act_quant.high,
                                                self.a_bits)
                self.act_scale = float(scale)
                self.act_zero_point = int(zero_point)
                qmin, qmax = act_qrange(self.a_bits)
                self.act_clip = None if self.a_bits == 8 else (
                    (qmin - self.act_zero_point) * self.act_scale,
                    (qmax - self.act_zero_point) * self.act_scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.a_bits < FLOAT_BITS:
            x = torch.fake_quantize_per_tensor_affine(x, self.act_scale, self.act_zero_point,
                                                      0, 255)
            if self.act_clip is not None:
                x = torch.clamp(x, *self.act_clip)
        weight = self.weight
        if self.w_bits < FLOAT_BITS:
            if self.per_channel:
                zeros = torch.zeros_like(self.weight_scale, dtype=torch.int32)
                weight = torch.fake_quantize_per_channel_affine(weight, self.weight_scale, zeros,
                                                                0, -128, 127)
            else:
                weight = torch.fake_quantize_per_tensor_affine(weight, float(self.weight_scale),
                                                               0, -128, 127)
        layer = self._op_layer[0]
        if isinstance(layer, nn.Linear):
            return F.linear(x, weight, self.bias)
        return layer._conv_forward(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{type(self._op_layer[0]).__name__}, w_bits={self.w_bits}, a_bits={self.a_bits}"


def _check_fitted(qmodel: QuantizedModel) -> None:
    """Raise if ``qmodel`` cannot be exported as it is set now."""
    unsupported = [f"{name} (W{layer.weight_quant.bits}A{layer.act_quant.bits})"
                   for name, layer in qmodel.layers.items()
                   if layer.weight_quant.bits not in EXPORT_BITS
                   or layer.act_quant.bits not in EXPORT_BITS]
    if unsupported:
        raise UnsupportedBitsError(
            f"no integer ONNX type for the bits of {', '.join(unsupported)}; export 2..8 "
            "bits or 32 (float) per layer")
    learnable = [name for name, layer in qmodel.layers.items()
                 if layer.weight_quant.learnable or layer.act_quant.learnable]
    if learnable:
        raise UnsupportedBitsError(
            f"layers {', '.join(learnable)} have learnable (LSQ) scales, whose zero points "
            "are not integers; export a runner built with learnable_scales=False")
    if qmodel.bn != "running" and qmodel.batch_norms():
        raise UnfittedModelError(
            f"batch norms are in {qmodel.bn!r} mode; an exported network needs fixed "
            "statistics: call estimate_bn(...) (or set_bn('running') for trained ones)")
    uncalibrated = [name for name, layer in qmodel.layers.items()
                    if layer.act_quant.bits < FLOAT_BITS and layer.act_quant.mode != "frozen"]
    if uncalibrated:
        raise UnfittedModelError(
            f"activation ranges of {', '.join(uncalibrated)} are not calibrated; call "
            "calibrate(...) on training images before exporting")


def qdq_module(qmodel: QuantizedModel) -> tuple[fx.GraphModule, list[LayerExport]]:
    """A copy of ``qmodel``'s network with :class:`QDQLayer` and plain (eval-mode)
    batch norms, ready for ``torch.onnx.export``.

    Args:
        qmodel: a fitted runner (batch norms in ``"running"`` mode, activation ranges
            calibrated where quantized).

    Returns:
        ``(module, layers)``: the module (its outputs equal ``qmodel``'s up to float
        rounding) and one :class:`LayerExport` per conv/linear layer.

    Raises:
        UnsupportedBitsError: a layer at bits with no integer type (e.g. 16), or
            learnable scales.
        UnfittedModelError: batch statistics or uncalibrated ranges (names the layers).
    """
    _check_fitted(qmodel)
    module = copy.deepcopy(qmodel.module)
    layers: list[LayerExport] = []
    for node in module.graph.nodes:
        if node.op != "call_module":
            continue
        sub = module.get_submodule(node.target)
        if isinstance(sub, QuantLayer):
            module.add_submodule(node.target, QDQLayer(sub))
            layers.append(LayerExport(node.target, sub.weight_quant.bits, sub.act_quant.bits,
                                      f"{node.target}.weight"))
        elif isinstance(sub, BatchNormRunner):
            module.add_submodule(node.target, copy.deepcopy(sub.norm).eval())
    module.recompile()
    return module.eval(), layers
