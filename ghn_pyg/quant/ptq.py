"""Post-training quantization: accuracy and quantization MSE per bit-width."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence, Union

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..graph.bits import EVAL_BITS, bits_label
from .layers import BNMode
from .quantizers import CalibrationMethod
from .runner import QuantizedModel, module_device, quantize
from .spec import FLOAT_BITS, QuantSpec

__all__ = ["PTQResult", "ptq_evaluate", "weight_qmse", "count_correct"]

BitsSetting = Union[int, tuple[int, int]]


@dataclass
class PTQResult:
    """The outcome of evaluating one bit-width setting.

    Attributes:
        w_bits, a_bits: the setting (32 = float).
        accuracy: top-1 accuracy in [0, 1].
        qmse_w, qmse_a: mean over layers of the weight / input-activation MSE between
            float and fake-quantized values (0 at 32 bits).
        layers: ``{layer name: (qmse_w, qmse_a)}``.
        num_samples: images evaluated.
    """

    w_bits: int
    a_bits: int
    accuracy: float
    qmse_w: float
    qmse_a: float
    layers: dict[str, tuple[float, float]] = field(default_factory=dict)
    num_samples: int = 0

    @property
    def label(self) -> str:
        """``"FP32"``, ``"W8A8"``, ``"W8A32"`` (weights only), ..."""
        return bits_label(self.w_bits, self.a_bits)


def weight_qmse(qmodel: QuantizedModel, x: Tensor,
                params: Mapping[str, Tensor] | None = None) -> dict[str, float]:
    """Per-layer MSE between float and fake-quantized weights, BN folding included.

    Runs one forward pass on ``x`` (folded batch statistics depend on the input).

    Args:
        qmodel: the quantized runner.
        x: an input batch.
        params: the parameters to measure (default: the model's own).
    """
    saved = [layer.act_quant.track_error for layer in qmodel.layers.values()]
    for layer in qmodel.layers.values():
        layer.weight_quant.track_error = True
        layer.act_quant.track_error = False
    try:
        with torch.no_grad():
            qmodel(x, params)
        return {name: float(layer.weight_quant.last_mse) for name, layer in qmodel.layers.items()}
    finally:
        for layer, track in zip(qmodel.layers.values(), saved):
            layer.weight_quant.track_error = False
            layer.act_quant.track_error = track


def ptq_evaluate(model: nn.Module, loader: Iterable[Sequence[Tensor]],
                 bits: Sequence[BitsSetting] = EVAL_BITS, *,
                 input_shape: Sequence[int] | None = None, bn: BNMode = "running",
                 fold_bn: bool = False, first_last_8bit: bool = False,
                 calibration: CalibrationMethod | None = "minmax", calibration_batches: int = 4,
                 calibration_loader: Iterable[Sequence[Tensor]] | None = None,
                 max_batches: int | None = None, device: torch.device | str | None = None,
                 progress: bool = True) -> list[PTQResult]:
    """Quantize a trained model at several bit-widths and measure accuracy and QMSE.

    Args:
        model: the float model (not modified).
        loader: ``(images, labels)`` batches to evaluate on.
        bits: settings: an int for weights and activations alike, or ``(w_bits,
            a_bits)`` (e.g. ``(8, 32)`` for weights only).
        input_shape: the model's input shape; default: from the first batch.
        bn: batch-norm statistics (``"running"`` for trained models).
        fold_bn: fold BN into conv weights before quantizing them.
        first_last_8bit: keep the first and last layers at 8 bits.
        calibration: activation range method (``"minmax"``, ``"percentile"``,
            ``"mse"``) fixed on ``calibration_batches`` batches of ``calibration_loader``
            (default: ``loader``), or None for per-batch dynamic ranges.
        max_batches: evaluate at most this many batches.
        device: where to run (default: the model's device).
        progress: show progress bars.

    Returns:
        One :class:`PTQResult` per setting, in order.

    Raises:
        ValueError: invalid bits or an empty loader.
    """
    settings = [b if isinstance(b, tuple) else (b, b) for b in bits]
    for w_bits, a_bits in settings:  # validate everything before any long work
        QuantSpec(w_bits=w_bits, a_bits=a_bits)
    device = torch.device(device) if device is not None else module_device(model)
    if input_shape is None:
        first = next(iter(loader), None)
        if first is None:
            raise ValueError("ptq_evaluate: the loader is empty")
        input_shape = (1, *first[0].shape[1:])
    model = model.to(device)
    qmodel = quantize(model, QuantSpec(), input_shape, bn=bn, fold_bn=fold_bn)
    results = []
    for w_bits, a_bits in settings:
        spec = QuantSpec(w_bits=w_bits, a_bits=a_bits, first_last_8bit=first_last_8bit,
                         fold_bn=fold_bn)
        qmodel.set_bits(spec).reset_calibration()
        if calibration is not None and a_bits < FLOAT_BITS:
            qmodel.calibrate(calibration_loader or loader, calibration_batches, calibration)
        results.append(_evaluate(qmodel, loader, w_bits, a_bits, max_batches, device, progress))
    return results


def count_correct(forward: Callable[[Tensor], Tensor], batches: Iterable[Sequence[Tensor]],
                  device: torch.device | str = "cpu") -> tuple[int, int]:
    """Top-1 hits and the number of images over ``(images, labels)`` batches.

    Args:
        forward: images [B, ...] on ``device`` -> logits [B, classes].
        batches: ``(images, labels)`` pairs.
        device: where images and labels go.

    Returns:
        ``(correct, total)``.
    """
    device = torch.device(device)
    correct = total = 0
    for images, labels in batches:
        logits = forward(images.to(device))
        correct += int((logits.argmax(dim=1) == labels.to(device)).sum())
        total += labels.numel()
    return correct, total


@torch.no_grad()
def _evaluate(qmodel: QuantizedModel, loader: Iterable[Sequence[Tensor]], w_bits: int,
              a_bits: int, max_batches: int | None, device: torch.device,
              progress: bool) -> PTQResult:
    for layer in qmodel.layers.values():
        layer.act_quant.track_error = True
        layer.act_quant.reset_error()
    w_mse: dict[str, float] = {}
    seen_first = False

    def forward(images: Tensor) -> Tensor:
        nonlocal w_mse, seen_first
        if not seen_first:  # weight errors once, on the first batch
            w_mse, seen_first = weight_qmse(qmodel, images), True
        return qmodel(images)

    batches = tqdm(itertools.islice(loader, max_batches), desc=f"PTQ {bits_label(w_bits, a_bits)}",
                   disable=not progress, leave=False)
    try:
        correct, total = count_correct(forward, batches, device)
    finally:
        for layer in qmodel.layers.values():
            layer.act_quant.track_error = False
    if total == 0:
        raise ValueError("ptq_evaluate: the loader gave no batches")
    layers = {name: (w_mse.get(name, 0.0), layer.act_quant.mse)
              for name, layer in qmodel.layers.items()}
    n = max(len(layers), 1)
    return PTQResult(w_bits, a_bits, correct / total,
                     sum(v[0] for v in layers.values()) / n,
                     sum(v[1] for v in layers.values()) / n, layers, total)
