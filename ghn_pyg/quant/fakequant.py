r"""Fake-quantization primitives with straight-through gradients.

Weights: symmetric, signed, per output channel (or per tensor),

.. math::
    s_c = \max(|W_c|) / \tfrac{q_{max} - q_{min}}{2}, \qquad
    \hat W_c = s_c \cdot \mathrm{clamp}(\mathrm{round}(W_c / s_c), q_{min}, q_{max}),

with :math:`[q_{min}, q_{max}] = [-2^{b-1}, 2^{b-1} - 1]` (PyTorch's ``qint8`` at 8 bits).

Activations: asymmetric, unsigned, per tensor, over a range :math:`[l, h] \ni 0`,

.. math::
    s = (h - l) / (2^b - 1), \quad z = \mathrm{clamp}(-\mathrm{round}(l / s), 0, 2^b - 1),
    \quad \hat x = s \cdot (\mathrm{clamp}(\mathrm{round}(x / s) + z, 0, 2^b - 1) - z).

Scales come from the detached tensor range and are clamped away from zero, so a
constant tensor quantizes without NaN. The fixed-scale paths compute exactly what
PyTorch's ``fake_quantize_per_*_affine`` kernels compute (``round(x * (1 / s)) + z``,
half to even, clamped), with the same gradient w.r.t. the input: 1 where the rounded
value is representable and 0 elsewhere (straight-through estimator). On the CPU they
are written as five vectorised tensor ops because the native CPU kernels are several
times slower; on accelerators the fused kernels run instead (:data:`FUSED_KERNELS`),
one launch per tensor instead of five. The learnable
(LSQ) paths use the same rounding with a straight-through ``round`` and let gradients
reach the scale, scaled by :math:`1/\sqrt{n \cdot q_{max}}` as in LSQ.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..graph.bits import FLOAT_BITS

__all__ = [
    "EPS", "weight_qrange", "act_qrange", "weight_scale", "act_qparams", "fake_quant_weight",
    "fake_quant_act", "lsq_fake_quant", "quant_noise_share",
]

#: Smallest scale; keeps zero-range tensors finite.
EPS = 1e-8


class _FakeQuantSTE(torch.autograd.Function):
    """``(clamp(round(x * inv_scale), lo, hi)) * scale`` with a straight-through mask.

    ``lo = qmin - z`` and ``hi = qmax - z`` fold the zero point in (numbers, or tensors
    like ``scale``); ``scale`` and ``inv_scale`` broadcast against ``x``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, inv_scale: Tensor, lo: Tensor | float,
                hi: Tensor | float) -> Tensor:
        rounded = torch.mul(x, inv_scale).round_()
        clamped = torch.clamp(rounded, lo, hi)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(torch.eq(clamped, rounded))
        return clamped.mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


#: Where PyTorch's fused fake-quant kernels replace the five-op path: ``"accelerator"``
#: (the default: on GPUs, where each op is a kernel launch, not on the CPU, where the
#: native kernels are slower), ``"always"`` or ``"never"`` (the tests compare the two).
FUSED_KERNELS: str = "accelerator"


def _use_fused(x: Tensor) -> bool:
    return FUSED_KERNELS == "always" or (FUSED_KERNELS == "accelerator" and x.device.type != "cpu")


def _fused_fake_quant(x: Tensor, scale: Tensor, zero_point: Tensor | None, qmin: int,
                      qmax: int) -> Tensor:
    """:func:`_fake_quant` with one fused PyTorch kernel (same rounding, clamping and
    straight-through gradient; tensor scales, so no host synchronisation)."""
    if scale.numel() > 1:  # per output channel (dim 0), zero point 0
        channels = scale.reshape(-1)
        zeros = torch.zeros_like(channels, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(x, channels, zeros, 0, qmin, qmax)
    zp = torch.zeros(1, dtype=torch.int32, device=x.device) if zero_point is None \
        else zero_point.reshape(1).to(torch.int32)
    return torch.fake_quantize_per_tensor_affine(x, scale.reshape(1), zp, qmin, qmax)


def _fake_quant(x: Tensor, scale: Tensor, zero_point: Tensor | None, qmin: int,
                qmax: int) -> Tensor:
    """Fake quantization of float32 ``x``; ``scale`` broadcasts, ``zero_point`` is a
    float tensor of shape [1] or None for 0."""
    if _use_fused(x):
        return _fused_fake_quant(x, scale, zero_point, qmin, qmax)
    inv_scale = 1.0 / scale
    if zero_point is None:
        return _FakeQuantSTE.apply(x, scale, inv_scale, float(qmin), float(qmax))
    return _FakeQuantSTE.apply(x, scale, inv_scale, qmin - zero_point, qmax - zero_point)


def weight_qrange(bits: int) -> tuple[int, int]:
    """Signed integer range of ``bits``-bit weights: ``(-2^(b-1), 2^(b-1) - 1)``."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def act_qrange(bits: int) -> tuple[int, int]:
    """Unsigned integer range of ``bits``-bit activations: ``(0, 2^b - 1)``."""
    return 0, 2 ** bits - 1


def weight_scale(weight: Tensor, bits: int, per_channel: bool = True) -> Tensor:
    """Symmetric scale of ``weight`` (detached).

    Returns:
        [C_out] float32 when ``per_channel`` (dim 0 is the output channel), else [1].
    """
    qmin, qmax = weight_qrange(bits)
    w = weight.detach()
    amax = w.abs().flatten(1).amax(dim=1) if per_channel and w.dim() > 1 else w.abs().amax().view(1)
    return (amax.float() / ((qmax - qmin) / 2)).clamp_min(EPS)


def act_qparams(low: Tensor, high: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """Scale and zero point of an asymmetric range ``[low, high]`` widened to hold 0.

    Args:
        low, high: 0-d tensors (detached by the caller when needed).

    Returns:
        ``(scale [1] float32, zero_point [1] int32)``.
    """
    scale, zero_point = _act_qparams_float(low, high, bits)
    return scale, zero_point.to(torch.int32)


def _act_qparams_float(low: Tensor, high: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """:func:`act_qparams` with the zero point as a float tensor."""
    qmin, qmax = act_qrange(bits)
    low = low.float().clamp(max=0).view(1)
    high = high.float().clamp(min=0).view(1)
    scale = ((high - low) / (qmax - qmin)).clamp_min(EPS)
    zero_point = (qmin - torch.round(low / scale)).clamp_(qmin, qmax)
    return scale, zero_point


def fake_quant_weight(weight: Tensor, bits: int, per_channel: bool = True,
                      scale: Tensor | None = None) -> Tensor:
    """Fake-quantize a weight tensor; ``bits >= 32`` returns it unchanged.

    Args:
        weight: [C_out, ...].
        bits: bit-width (2..8, 16, 32).
        per_channel: one scale per output channel (dim 0) or one per tensor.
        scale: precomputed scale ([C_out] or [1]); by default from the weight's range.

    Returns:
        A tensor of the same shape and dtype; gradients pass straight through.
    """
    if bits >= FLOAT_BITS:
        return weight
    if scale is None:
        scale = weight_scale(weight, bits, per_channel)
    qmin, qmax = weight_qrange(bits)
    w = weight.float()
    scale = scale.view(-1, *([1] * (w.dim() - 1))) if scale.numel() > 1 else scale
    out = _fake_quant(w, scale, None, qmin, qmax)
    return out.to(weight.dtype)


def fake_quant_act(x: Tensor, bits: int, low: Tensor | None = None,
                   high: Tensor | None = None) -> Tensor:
    """Fake-quantize activations per tensor; ``bits >= 32`` returns ``x`` unchanged.

    Args:
        x: any shape.
        bits: bit-width.
        low, high: a calibrated range; by default the detached min and max of ``x``.
    """
    if bits >= FLOAT_BITS:
        return x
    if low is None or high is None:
        low, high = torch.aminmax(x.detach())
    scale, zero_point = _act_qparams_float(low, high, bits)
    qmin, qmax = act_qrange(bits)
    return _fake_quant(x.float(), scale, zero_point, qmin, qmax).to(x.dtype)


def quant_noise_share(x: Tensor, bits: int) -> Tensor:
    r"""Mean share of uniform quantization noise in the power of each channel of ``x``,
    differentiable in ``x`` (through its range and its channels' variances).

    With the per-tensor range of ``x`` widened to hold 0, its quantization step
    :math:`\Delta` and the noise :math:`\Delta^2/12` of rounding to that grid,

    .. math::
        \Delta = \frac{\max(x, 0) - \min(x, 0)}{2^b - 1}, \qquad
        \text{share} = \frac{1}{C} \sum_{c=1}^{C}
        \frac{\Delta^2 / 12}{\Delta^2 / 12 + \operatorname{Var}(x_c)},

    between 0 (every channel resolved finely) and 1 (every channel below one step, so
    rounded to a constant). One large value stretches :math:`\Delta` for every channel
    and a weak channel has little variance: both raise the share, which a penalty on it
    pushes down.

    Args:
        x: [B, C, ...] activations (channels on dim 1; [B] is one channel).
        bits: bit-width of the unsigned activation grid.

    Returns:
        A 0-d float32 tensor in [0, 1).
    """
    x = x.float()
    step = (x.amax().clamp(min=0) - x.amin().clamp(max=0)) / (2 ** bits - 1)
    noise = step.pow(2) / 12
    channels = x.unsqueeze(0) if x.dim() == 1 else x.transpose(0, 1).flatten(1)
    variance = channels.var(dim=1, unbiased=False)
    return (noise / (noise + variance).clamp_min(EPS)).mean()


def lsq_fake_quant(x: Tensor, scale: Tensor, zero_point: Tensor | float, qmin: int,
                   qmax: int, channel_dim: int | None = None) -> Tensor:
    """Fake quantization with a learnable scale (LSQ, Esser et al. 2020).

    Args:
        x: input tensor.
        scale: positive scale, [1] or [C] (one per slice along ``channel_dim``).
        zero_point: float zero point (0 for symmetric weights), same shape as ``scale``.
        qmin, qmax: integer range.
        channel_dim: the dimension ``scale`` runs along, or None for per tensor.

    Returns:
        ``scale * (round_ste(clamp(x / scale + z)) - z)``; gradients reach ``x``
        (straight-through inside the range) and ``scale`` (scaled by
        ``1 / sqrt(numel * qmax)``).
    """
    grad_factor = 1.0 / math.sqrt(x.numel() * max(qmax, 1))
    s = scale * grad_factor + (scale - scale * grad_factor).detach()
    if channel_dim is not None:
        view = [1] * x.dim()
        view[channel_dim] = -1
        s = s.view(view)
        if isinstance(zero_point, Tensor):
            zero_point = zero_point.view(view)
    v = torch.clamp(x / s + zero_point, qmin, qmax)
    v = v + (torch.round(v) - v).detach()
    return (v - zero_point) * s
