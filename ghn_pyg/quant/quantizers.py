"""Weight and activation quantizer modules: dynamic, calibrated or learnable (LSQ)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .fakequant import (EPS, act_qparams, act_qrange, fake_quant_act, fake_quant_weight,
                        lsq_fake_quant, quant_noise_share, weight_qrange, weight_scale)
from ..graph.bits import FLOAT_BITS

__all__ = ["WeightQuantizer", "ActQuantizer", "CALIBRATION_METHODS", "clip_range"]

CalibrationMethod = Literal["minmax", "percentile", "mse"]
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "percentile", "mse")
#: Values kept per observed batch for percentile / MSE calibration.
_SAMPLES_PER_BATCH = 1 << 15


class WeightQuantizer(nn.Module):
    """Symmetric per-channel (or per-tensor) weight fake quantization.

    Args:
        bits: bit-width; 32 disables it.
        per_channel: one scale per output channel.
        learnable: learn the scales (LSQ); they are initialised from the first weight
            seen. Otherwise scales follow the weight's range at every call.
        channels: output channels of the weights (learnable per-channel scales are then
            allocated here, so a fresh quantizer loads a trained one's ``state_dict``;
            without it they take the first weight's channel count, and loading a state
            resizes them).
    """

    def __init__(self, bits: int = FLOAT_BITS, per_channel: bool = True,
                 learnable: bool = False, channels: int | None = None) -> None:
        super().__init__()
        self.bits = bits
        self.per_channel = per_channel
        self.learnable = learnable
        self.track_error = False
        self.last_mse: Tensor | None = None
        if learnable:
            size = channels if per_channel and channels else 1
            self.scale = nn.Parameter(torch.ones(size))
            self.register_buffer("initialized", torch.tensor(False))
            self._register_load_state_dict_pre_hook(self._fit_scale_to_state)

    def _fit_scale_to_state(self, state_dict: dict[str, Tensor], prefix: str,
                            *args: object) -> None:
        """Give ``scale`` the shape of the one being loaded."""
        saved = state_dict.get(prefix + "scale")
        if saved is not None and saved.shape != self.scale.shape:
            self.scale.data = torch.empty(saved.shape, dtype=self.scale.dtype,
                                          device=self.scale.device)

    def forward(self, weight: Tensor) -> Tensor:
        """Return the fake-quantized ``weight`` (unchanged at 32 bits)."""
        if self.bits >= FLOAT_BITS:
            out = weight
        elif self.learnable:
            if not bool(self.initialized):
                with torch.no_grad():
                    init = weight_scale(weight, self.bits, self.per_channel)
                    self.scale.data = init.to(self.scale.device)
                    self.initialized.fill_(True)
            qmin, qmax = weight_qrange(self.bits)
            channel_dim = 0 if self.scale.numel() > 1 else None
            out = lsq_fake_quant(weight, self.scale.abs().clamp_min(EPS), 0.0, qmin, qmax, channel_dim)
        else:
            out = fake_quant_weight(weight, self.bits, self.per_channel)
        if self.track_error:
            self.last_mse = (weight.detach() - out.detach()).pow(2).mean()
        return out

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel={self.per_channel}, learnable={self.learnable}"


class ActQuantizer(nn.Module):
    """Per-tensor asymmetric fake quantization of a layer's input activations.

    Modes: ``dynamic`` (range of each batch, the default), ``observe`` (collects
    statistics during :meth:`observe`, passes values through unchanged) and ``frozen``
    (a calibrated range, see :meth:`freeze`). With ``learnable`` the scale and zero
    point are parameters (LSQ), initialised from the first batch or the calibration.

    With ``track_error`` it accumulates the squared error between float and
    fake-quantized inputs (:attr:`mse`). With ``record_noise`` each quantizing forward
    pass keeps :func:`~ghn_pyg.quant.fakequant.quant_noise_share` of its input, with its
    autograd graph, in :attr:`noise_share` (None until then), for a training penalty.
    """

    def __init__(self, bits: int = FLOAT_BITS, learnable: bool = False) -> None:
        super().__init__()
        self.bits = bits
        self.learnable = learnable
        self.mode = "dynamic"
        self.method: CalibrationMethod = "minmax"
        self.percentile = 99.99
        self.track_error = False
        self.record_noise = False
        self.noise_share: Tensor | None = None
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self._samples: list[Tensor] = []
        self._observed = False
        self._err_sum: Tensor | None = None
        self._err_count = 0
        if learnable:
            self.scale = nn.Parameter(torch.ones(1))
            self.zero_point = nn.Parameter(torch.zeros(1))
            self.register_buffer("initialized", torch.tensor(False))

    # ------------------------------------------------------------ calibration
    def observe(self, method: CalibrationMethod = "minmax", percentile: float = 99.99) -> None:
        """Start collecting statistics; forward passes return their input unchanged."""
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {method!r}; use one of "
                             f"{', '.join(CALIBRATION_METHODS)}")
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.mode, self.method, self.percentile = "observe", method, percentile
        self._samples = []
        self._observed = False
        self.low.fill_(float("inf"))
        self.high.fill_(float("-inf"))

    def freeze(self) -> None:
        """End observation: fix the range by the chosen method.

        Raises:
            RuntimeError: nothing was observed.
        """
        if self.mode != "observe" or not self._observed:  # a Python flag: no device sync
            raise RuntimeError("freeze() needs observe() and at least one forward pass first")
        if self.method != "minmax" and self.bits < FLOAT_BITS:
            samples = torch.cat(self._samples)
            low, high = clip_range(samples, self.bits, self.method, self.percentile)
            self.low.fill_(float(low))
            self.high.fill_(float(high))
        self._samples = []
        self.mode = "frozen"
        if self.learnable:
            self._init_learnable(self.low, self.high)

    def reset(self) -> None:
        """Back to dynamic ranges."""
        self.mode = "dynamic"
        self._samples = []

    # ------------------------------------------------------------ error tracking
    def reset_error(self) -> None:
        """Zero the accumulated squared error."""
        self._err_sum, self._err_count = None, 0

    @property
    def mse(self) -> float:
        """Mean squared fake-quantization error over everything seen since the reset."""
        if self._err_sum is None or self._err_count == 0:
            return 0.0
        return float(self._err_sum) / self._err_count

    # ------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        """Return the fake-quantized ``x`` (or ``x`` itself at 32 bits / observing)."""
        if self.mode == "observe":
            self._observe(x.detach())
            return x
        if self.bits >= FLOAT_BITS:
            return x
        if self.learnable:
            if not bool(self.initialized):
                low, high = torch.aminmax(x.detach())
                self._init_learnable(low, high)
            qmin, qmax = act_qrange(self.bits)
            out = lsq_fake_quant(x, self.scale.abs().clamp_min(EPS), self.zero_point, qmin, qmax)
        elif self.mode == "frozen":
            out = fake_quant_act(x, self.bits, self.low, self.high)
        else:
            out = fake_quant_act(x, self.bits)
        if self.record_noise:
            self.noise_share = quant_noise_share(x, self.bits)
        if self.track_error:
            err = (x.detach() - out.detach()).float().pow(2).sum()
            self._err_sum = err if self._err_sum is None else self._err_sum + err
            self._err_count += x.numel()
        return out

    def _observe(self, x: Tensor) -> None:
        self._observed = True
        low, high = torch.aminmax(x)
        torch.minimum(self.low, low, out=self.low)
        torch.maximum(self.high, high, out=self.high)
        if self.method != "minmax":
            flat = x.flatten().float()
            if flat.numel() > _SAMPLES_PER_BATCH:
                idx = torch.randint(flat.numel(), (_SAMPLES_PER_BATCH,), device=flat.device,
                                    generator=_sampler(flat.device))
                flat = flat[idx]
            self._samples.append(flat)

    def _init_learnable(self, low: Tensor, high: Tensor) -> None:
        with torch.no_grad():
            scale, zero_point = act_qparams(low, high, self.bits)
            self.scale.copy_(scale)
            self.zero_point.copy_(zero_point.float())
            self.initialized.fill_(True)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, mode={self.mode}, learnable={self.learnable}"


def _sampler(device: torch.device) -> torch.Generator:
    """A fixed-seed generator so calibration subsampling is reproducible."""
    return torch.Generator(device=device).manual_seed(0)


def clip_range(samples: Tensor, bits: int, method: CalibrationMethod,
               percentile: float = 99.99) -> tuple[float, float]:
    """Activation clipping range from observed values.

    Args:
        samples: 1-D values seen during calibration.
        bits: target bit-width.
        method: ``"minmax"`` (full range), ``"percentile"`` (the ``percentile`` and
            ``100 - percentile`` quantiles) or ``"mse"`` (the shrink factor of the
            min/max range, from 1.0 down to 0.2, that minimises the fake-quantization MSE).

    Returns:
        ``(low, high)``.
    """
    low, high = torch.aminmax(samples)
    if method == "minmax":
        return float(low), float(high)
    if method == "percentile":
        q = torch.tensor([1 - percentile / 100, percentile / 100], device=samples.device)
        low, high = torch.quantile(samples, q)
        return float(low), float(high)
    if method == "mse":
        best = (float("inf"), float(low), float(high))
        for factor in torch.linspace(1.0, 0.2, 41).tolist():
            lo, hi = low * factor, high * factor
            err = (fake_quant_act(samples, bits, lo, hi) - samples).pow(2).mean().item()
            if err < best[0]:
                best = (err, float(lo), float(hi))
        return best[1], best[2]
    raise ValueError(f"unknown calibration method {method!r}; use one of "
                     f"{', '.join(CALIBRATION_METHODS)}")
