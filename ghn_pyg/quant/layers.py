r"""Drop-in replacements used inside a :class:`~ghn_pyg.quant.QuantizedModel`.

They register the *same* ``Parameter`` objects as the layers they stand for, under the
same names, so ``torch.func.functional_call`` with a ``{name: tensor}`` dict keyed like
``model.named_parameters()`` swaps in supplied tensors. Running statistics are read
from the original batch-norm modules and updated only in the ``"update"`` mode of
quantization-aware training.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .quantizers import ActQuantizer, WeightQuantizer
from ..graph.bits import FLOAT_BITS

__all__ = ["QuantLayer", "BatchNormRunner", "BNMode", "BN_MODES", "detach_collapsed_channels"]

BNMode = Literal["batch", "running", "update"]
#: The batch-norm modes: batch statistics, running statistics, or batch statistics that
#: also update the running ones (training).
BN_MODES: tuple[str, ...] = ("batch", "running", "update")


def _share_parameters(target: nn.Module, source: nn.Module, names: tuple[str, ...]) -> None:
    for name in names:
        target.register_parameter(name, getattr(source, name, None))


def _uses_running_stats(bn: nn.modules.batchnorm._BatchNorm, mode: BNMode) -> bool:
    """Whether ``bn`` normalises with running statistics in ``mode`` (it must have them)."""
    return mode == "running" and bn.track_running_stats and bn.running_mean is not None


def _updates_running_stats(bn: nn.modules.batchnorm._BatchNorm, mode: BNMode) -> bool:
    """Whether ``bn``'s running statistics follow the batches in ``mode``."""
    return mode == "update" and bn.track_running_stats and bn.running_mean is not None


@torch.no_grad()
def _next_momentum(bn: nn.modules.batchnorm._BatchNorm) -> float:
    """Count one more batch and return the weight of its statistics, as ``nn.BatchNorm``
    does in training: ``bn.momentum``, or ``1 / batches seen`` (a cumulative average)
    where the momentum is None."""
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    if bn.momentum is not None:
        return bn.momentum
    seen = int(bn.num_batches_tracked) if bn.num_batches_tracked is not None else 1
    return 1.0 / max(seen, 1)


@torch.no_grad()
def _update_running_stats(bn: nn.modules.batchnorm._BatchNorm, mean: Tensor, var: Tensor,
                          count: int) -> None:
    """What ``nn.BatchNorm`` does in training: exponential (or, with momentum None,
    cumulative) average, unbiased variance."""
    momentum = _next_momentum(bn)
    bn.running_mean.lerp_(mean.detach(), momentum)
    bn.running_var.lerp_(var.detach() * count / max(count - 1, 1), momentum)


def detach_collapsed_channels(x: Tensor, threshold: float,
                              variance: Tensor | None = None) -> Tensor:
    r"""``x`` with the channels whose variance is at most ``threshold`` detached.

    Batch norm scales a channel's gradient by :math:`\gamma / \sqrt{\sigma^2 + \epsilon}`.
    A channel that low-bit activation quantization collapsed to a constant
    (:math:`\sigma^2 \approx 0`) therefore multiplies its gradient by up to
    :math:`1 / \sqrt{\epsilon} \approx 316`, layer after layer, while the quantized
    network does not respond to small changes of that channel at all. Detaching such
    channels leaves the forward values unchanged and stops that gradient. A batch norm
    that normalises with running statistics divides by those instead: pass them as
    ``variance``.

    Args:
        x: [B, C, ...] batch-norm input.
        threshold: largest variance counted as collapsed.
        variance: [C] the variance the norm divides by (default: ``x``'s batch variance).

    Returns:
        A tensor equal to ``x``.
    """
    if variance is not None:
        collapsed = variance.detach() <= threshold
    else:
        dims = [d for d in range(x.dim()) if d != 1]
        with torch.no_grad():  # two passes: as accurate as Tensor.var, several times faster on CPU
            centred = x - x.mean(dims, keepdim=True)
            collapsed = centred.square_().mean(dims) <= threshold
    if x.device.type == "cpu" and not bool(collapsed.any()):
        return x  # on an accelerator, no host synchronisation: the select below is exact
    shape = [1] * x.dim()
    shape[1] = -1
    return torch.where(collapsed.view(shape), x.detach(), x)


class BatchNormRunner(nn.Module):
    r"""Batch norm with statistics chosen by ``mode``.

    .. math::
        y = \gamma \, \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,

    with :math:`(\mu, \sigma^2)` the batch statistics (``"batch"``, GHN-2's evaluation
    protocol for predicted parameters) or the running ones (``"running"``, for trained
    models); ``"update"`` normalises with batch statistics and updates ``bn``'s running
    statistics as ``nn.BatchNorm`` does in training (quantization-aware training).
    With ``collapse_guard`` set, channels whose variance (the batch's, or in
    ``"running"`` mode the running one) is at most ``eps`` pass no gradient to the
    input (:func:`detach_collapsed_channels`); outputs are unchanged.

    Args:
        bn: the original ``nn.BatchNorm{1,2}d``; its ``weight``/``bias`` are shared.
        mode: ``"batch"``, ``"running"`` or ``"update"``.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, mode: BNMode) -> None:
        super().__init__()
        self._bn = (bn,)  # a reference, not a submodule: its parameters live here
        _share_parameters(self, bn, ("weight", "bias"))
        self.mode = mode
        self.collapse_guard = False

    @property
    def norm(self) -> nn.modules.batchnorm._BatchNorm:
        """The original batch norm (its running statistics are read and updated)."""
        return self._bn[0]

    def source_modules(self) -> tuple[nn.Module, ...]:
        """The module this one stands for (it shares their parameters)."""
        return self._bn

    def forward(self, x: Tensor) -> Tensor:
        bn = self._bn[0]
        use_running = _uses_running_stats(bn, self.mode)
        if self.collapse_guard and x.requires_grad:
            x = detach_collapsed_channels(x, bn.eps, bn.running_var if use_running else None)
        track = use_running or _updates_running_stats(bn, self.mode)
        momentum = _next_momentum(bn) if track and not use_running else 0.0
        mean, var = (bn.running_mean, bn.running_var) if track else (None, None)
        if use_running and x.requires_grad:
            # autograd keeps them for the backward: copies, so that re-estimating the
            # statistics before it (a network used twice in a step) cannot invalidate it
            mean, var = mean.clone(), var.clone()
        return F.batch_norm(x, mean, var, self.weight, self.bias, training=not use_running,
                            momentum=momentum, eps=bn.eps)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


class QuantLayer(nn.Module):
    r"""A conv or linear layer with fake-quantized weights and input activations.

    .. math::
        y = \mathrm{op}\big(Q_a(x),\; Q_w(W'),\; b'\big)

    where :math:`Q_w` is per-channel symmetric, :math:`Q_a` per-tensor asymmetric, and
    :math:`(W', b') = (W, b)` or, with a folded batch norm,
    :math:`W' = W \gamma / \sqrt{\sigma^2 + \epsilon}`,
    :math:`b' = \beta + (b - \mu) \gamma / \sqrt{\sigma^2 + \epsilon}` (per output
    channel; batch statistics come from a float pass of the layer).

    Args:
        layer: an ``nn.Conv1d/2d/3d`` or ``nn.Linear`` (or subclass); its ``weight``
            and ``bias`` are shared.
        w_bits, a_bits: bit-widths; 32 skips that quantizer.
        per_channel: per-output-channel weight scales.
        learnable: LSQ scales.
        fold: a batch norm to fold into the weights, and its statistics mode.
    """

    def __init__(self, layer: nn.Module, w_bits: int = FLOAT_BITS, a_bits: int = FLOAT_BITS,
                 per_channel: bool = True, learnable: bool = False,
                 fold: tuple[nn.modules.batchnorm._BatchNorm, BNMode] | None = None) -> None:
        super().__init__()
        if not isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
            raise TypeError(f"QuantLayer wraps conv and linear layers, got {type(layer).__name__}")
        self._layer = (layer,)
        self._fold = fold
        _share_parameters(self, layer, ("weight", "bias"))
        self.weight_quant = WeightQuantizer(w_bits, per_channel, learnable,
                                            channels=layer.weight.shape[0])
        self.act_quant = ActQuantizer(a_bits, learnable)

    @property
    def folded_bn(self) -> nn.modules.batchnorm._BatchNorm | None:
        """The batch norm folded into this layer's weights (None: nothing folded)."""
        return self._fold[0] if self._fold is not None else None

    def source_modules(self) -> tuple[nn.Module, ...]:
        """The modules this one stands for (it shares their parameters): the layer and
        the folded batch norm, if any."""
        return self._layer + ((self._fold[0],) if self._fold is not None else ())

    def set_fold_mode(self, mode: BNMode) -> None:
        """The statistics mode of the folded batch norm (nothing to do without one)."""
        if self._fold is not None:
            self._fold = (self._fold[0], mode)

    def set_bits(self, w_bits: int, a_bits: int) -> None:
        """Change the bit-widths in place."""
        self.weight_quant.bits = w_bits
        self.act_quant.bits = a_bits

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        layer = self._layer[0]
        if isinstance(layer, nn.Linear):
            return F.linear(x, weight, bias)
        return layer._conv_forward(x, weight, bias)

    def float_weight(self, x: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The weight and bias before weight quantization (after BN folding).

        Args:
            x: the layer's (quantized) input; needed to fold batch statistics.
        """
        weight, bias = self.weight, self.bias
        if self._fold is None:
            return weight, bias
        bn, mode = self._fold
        if _uses_running_stats(bn, mode):
            mean, var = bn.running_mean, bn.running_var
        elif x is None:
            raise ValueError("folding batch statistics needs the layer input")
        else:
            y = self._op(x, weight, bias)
            dims = [d for d in range(y.dim()) if d != 1]
            mean, var = y.mean(dims), y.var(dims, unbiased=False)
            if _updates_running_stats(bn, mode):
                _update_running_stats(bn, mean, var, y.numel() // y.shape[1])
        gamma = bn.weight if bn.weight is not None else torch.ones_like(mean)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(mean)
        inv = gamma * torch.rsqrt(var + bn.eps)
        folded_w = weight * inv.view(-1, *([1] * (weight.dim() - 1)))
        folded_b = beta + ((bias if bias is not None else 0.0) - mean) * inv
        return folded_w, folded_b

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_quant(x)
        weight, bias = self.float_weight(x)
        return self._op(x, self.weight_quant(weight), bias)

    def extra_repr(self) -> str:
        folded = f", folded_bn={self._fold[1]}" if self._fold else ""
        return f"{type(self._layer[0]).__name__}{folded}"
