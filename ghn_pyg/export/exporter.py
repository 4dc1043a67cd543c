"""``to_onnx``: a CNN with given parameters as an ONNX model with integer weights and
``QuantizeLinear``/``DequantizeLinear`` activations, and ``export_quantized`` for an
already fitted fake-quant runner."""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import ExportError
from ..fileio import atomic_path, user_path
from ..graph.bits import FLOAT_BITS
from ..inits import load_params
from ..quant.quantizers import CalibrationMethod
from ..quant.runner import QuantizedModel, module_device, quantize
from ..quant.spec import QuantSpec
from ..train.protocol import EvalProtocol
from .qdq import LayerExport, qdq_module

__all__ = ["OnnxExport", "to_onnx", "export_quantized", "bn_batches_for", "DEFAULT_OPSET",
           "PREDICTED_BN_BATCHES"]

#: The opset of exports without int4 weights (ONNX Runtime >= 1.13 runs it).
DEFAULT_OPSET = 17
#: BN-statistics batches for supplied parameters (the ``calibrated`` protocol's default).
PREDICTED_BN_BATCHES = EvalProtocol.bn_batches
#: The opset int4 exports are written at before the integer pass moves them to 21.
_INT4_EXPORT_OPSET = 20
#: Messages of the deprecation warnings the TorchScript-based exporter emits; it is the
#: exporter that writes fake-quant ops as QuantizeLinear/DequantizeLinear.
_EXPORTER_WARNINGS = (r"You are using the legacy TorchScript-based ONNX export",
                      r"The feature will be removed")


@dataclass(frozen=True)
class OnnxExport:
    """The result of an export.

    Attributes:
        path: the ``.onnx`` file.
        runner: the fitted fake-quant runner the file reproduces (compare with it).
        layers: each conv/linear layer's bits, with ``storage``: the ONNX type of its
            weight integers (``"int8"``, ``"int4"``) or ``"float"``.
        opset: the model's ONNX opset.
        size_bytes: the file's size.
    """

    path: Path
    runner: QuantizedModel
    layers: list[tuple[LayerExport, str]]
    opset: int
    size_bytes: int

    def summary(self) -> str:
        """One line: layers by storage type, opset and size."""
        counts: dict[str, int] = {}
        for _, storage in self.layers:
            counts[storage] = counts.get(storage, 0) + 1
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        return (f"{self.path}: {len(self.layers)} conv/linear layers ({kinds} weights), "
                f"opset {self.opset}, {self.size_bytes / 1024:.1f} KiB")


def _writable(path: str | os.PathLike) -> Path:
    """``path`` as a file that can be written, or an :class:`ExportError` saying why not."""
    path = user_path(path)
    if path.is_dir():
        raise ExportError(f"export path {path} is a directory; give a file name like model.onnx")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ExportError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {path}: {parent} is not writable; choose another --out")
    return path


def _needs_int4(layers: Sequence[LayerExport], int4: bool) -> bool:
    return int4 and any(layer.w_bits <= 4 for layer in layers)


def export_quantized(qmodel: QuantizedModel, path: str | os.PathLike,
                     input_shape: Sequence[int], *, int4: bool = True,
                     opset: int = DEFAULT_OPSET) -> OnnxExport:
    """Write a fitted fake-quant runner as an ONNX model.

    Weights are stored as integers (per output channel scales on axis 0, or one per
    tensor, zero point 0): ``int8``, or ``int4`` for layers of at most 4 bits when
    ``int4`` (the file is then at opset 21). Activations are quantized per tensor to
    ``uint8`` with the runner's scale and zero point; below 8 bits a ``Clip`` after
    the ``DequantizeLinear`` keeps them on the ``b``-bit grid. Batch norms folded by the
    runner are in the weights; others run with their running statistics. The file has a dynamic batch dimension
    (input ``"images"``, output ``"logits"``) and is written atomically.

    Args:
        qmodel: a runner with batch norms in ``"running"`` mode and calibrated
            activation ranges where quantized (see :func:`to_onnx`).
        path: the ``.onnx`` file to write.
        input_shape: an input shape the model accepts (the batch size is free).
        int4: int4 storage for weights of at most 4 bits.
        opset: the opset of exports without int4 weights.

    Returns:
        An :class:`OnnxExport`.

    Raises:
        UnfittedModelError: batch-statistics mode or uncalibrated ranges.
        UnsupportedBitsError: bits with no integer type (e.g. 16) or learnable scales.
        ExportError: an unwritable path, or the network does not export.
        ImportError: the ``export`` extra (onnx) is not installed.
    """
    import onnx

    from .integer_weights import default_opset, store_integer_weights

    path = _writable(path)
    module, layers = qdq_module(qmodel)
    with_int4 = _needs_int4(layers, int4)
    example = torch.zeros(tuple(input_shape), device=module_device(qmodel.module))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            for message in _EXPORTER_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
            torch.onnx.export(module, (example,), buffer, dynamo=False,
                              opset_version=_INT4_EXPORT_OPSET if with_int4 else opset,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as err:  # the exporter raises many types; name the network
        raise ExportError(f"torch.onnx.export failed for {type(qmodel.module).__name__}: "
                          f"{err}") from err
    proto = onnx.load_from_string(buffer.getvalue())
    bits = {layer.weight_key: layer.w_bits for layer in layers if layer.w_bits < FLOAT_BITS}
    proto, storage = store_integer_weights(proto, bits, int4=with_int4)
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    described = [(layer, storage.get(layer.weight_key, "float")) for layer in layers]
    return OnnxExport(path, qmodel, described, default_opset(proto), path.stat().st_size)


def to_onnx(model: nn.Module, params: Mapping[str, Tensor] | None, spec: QuantSpec,
            input_shape: Sequence[int], calibration: Iterable[Tensor | Sequence[Tensor]],
            path: str | os.PathLike, *, bn_batches: int | None = None,
            calib_batches: int = 8, calib_method: CalibrationMethod = "minmax",
            calib_order: str = EvalProtocol.calib_order, fold_bn: bool = True,
            int4: bool = True, opset: int = DEFAULT_OPSET) -> OnnxExport:
    """Export ``model`` with ``params`` quantized by ``spec`` as an ONNX QDQ model.

    The network is copied (``model`` is not modified), ``params`` loaded into the copy,
    and run by the project's fake-quant runner, by default with every batch norm that
    follows a conv/linear layer folded into its weights before they are quantized
    (``spec`` with ``fold_bn=True``), as integer runtimes do. Networks trained
    quantized without folding (``ghn_pyg.study.qat``, the GHNs) keep their accuracy
    below 8 bits only unfolded (``fold_bn=False``: batch norms run in float after the
    integer convolution; README, "ONNX export"). Batch-norm running statistics and
    activation ranges are set as the ``calibrated`` evaluation protocol sets them
    (:meth:`~ghn_pyg.train.protocol.EvalProtocol.apply` in ``calib_order``; by default
    BN statistics from ``bn_batches`` calibration batches with float activations, ranges
    calibrated on the first ``calib_batches`` and frozen, then BN re-estimated under
    them); with ``bn_batches=0`` the model keeps its own statistics and only the ranges
    are calibrated. :func:`export_quantized` writes the result.

    Args:
        model: the CNN.
        params: ``{name: tensor}`` for every parameter (e.g. a GHN's prediction), or
            None for the model's own (e.g. a QAT-trained state dict loaded into it).
        spec: bit-widths per layer; 2..8 or 32 bits.
        input_shape: ``(1, C, H, W)`` the network takes.
        calibration: training images: an iterable of batches or ``(images, labels)``.
        path: the ``.onnx`` file.
        bn_batches: batches for the BN statistics; default :func:`bn_batches_for`
            (:data:`PREDICTED_BN_BATCHES` when ``params`` are given, since predicted
            parameters come without statistics, else 0: keep the model's own).
        calib_batches: batches for the activation ranges.
        calib_method: ``"minmax"``, ``"percentile"`` or ``"mse"``.
        calib_order: ``"float-first"`` or ``"quantized-bn"``
            (:attr:`EvalProtocol.calib_order`), when BN statistics are re-estimated.
        fold_bn: fold batch norms into the preceding weights before quantizing them.
        int4: int4 storage for weights of at most 4 bits (opset 21).
        opset: the opset of exports without int4 weights.

    Returns:
        An :class:`OnnxExport`; its ``runner`` is the calibrated fake-quant runner.

    Raises:
        ExportError: an unwritable path, an empty calibration set, or the network does
            not export; :class:`~ghn_pyg.errors.UnsupportedBitsError` for bits with no
            integer type (e.g. 16).
        ParamsMismatchError: ``params`` do not match ``model``.
        ValueError: an unknown ``calib_order`` or ``calib_method``.
    """
    _writable(path)
    network = copy.deepcopy(model).eval()
    runner = quantize(network, dataclasses.replace(spec, fold_bn=fold_bn), input_shape,
                      bn="running")
    if params is not None:
        runner.check_params(params)
        load_params(network, dict(params))  # the runner shares these parameters
    bn_steps = bn_batches_for(params, bn_batches)
    protocol = EvalProtocol("calibrated", max(bn_steps, 1), calib_batches, calib_method,
                            calib_order=calib_order)
    batches = list(itertools.islice(calibration, max(bn_steps, calib_batches)))
    if not batches:
        raise ExportError("to_onnx needs calibration images (training batches); got none")
    if bn_steps > 0 and runner.batch_norms():
        protocol.apply(runner, None, batches)
    elif any(layer.act_quant.bits < FLOAT_BITS for layer in runner.layers.values()):
        runner.calibrate(batches, calib_batches, calib_method)
    return export_quantized(runner, path, input_shape, int4=int4, opset=opset)


def bn_batches_for(params: Mapping[str, Tensor] | None, bn_batches: int | None = None) -> int:
    """The BN-statistics batches of an export: ``bn_batches`` if given, else
    :data:`PREDICTED_BN_BATCHES` for supplied (e.g. predicted) parameters and 0 for a
    model's own (trained) ones."""
    if bn_batches is not None:
        return bn_batches
    return PREDICTED_BN_BATCHES if params is not None else 0
