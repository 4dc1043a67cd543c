"""Evaluation protocols: how BN statistics and activation ranges are set before counting.

Two protocols, applied alike to every method (GHN predictions, random initializations,
SGD-trained networks):

- ``ghn2``: BN normalises with the statistics of each test batch and activation ranges
  are re-measured on each test batch (dynamic quantization). This is GHN-2's protocol
  for predicted parameters, kept to compare with published numbers; results depend on
  the test batch size and order, and low-bit ranges are set by test images.
- ``calibrated``: BN running statistics and activation ranges are fixed from training
  batches with the parameters being evaluated (weights quantized at the evaluated
  bits), then frozen; test images are only read to count correct answers, so accuracy
  does not depend on how they are batched. ``calib_order`` sets the order:

  - ``"float-first"`` (the default since 2026-12-05; the usual post-training order):
    BN statistics are re-estimated from ``bn_batches`` training batches with the
    activations float (a cumulative average from reset statistics), the activation
    ranges are calibrated on the first ``calib_batches`` of the same batches
    (``calib_method``) on that consistent float network and frozen, then the BN
    statistics are re-estimated under the frozen ranges, so BN normalises what the
    quantized network computes at test time.
  - ``"quantized-bn"`` (the default before, and the order of every table computed
    before 2026-12-05 that does not name one): BN statistics estimated with the
    activations on per-batch ranges, then the ranges observed with the activations
    float. BN then normalises statistics it was not estimated on, and a channel that
    quantization flattened (near-zero variance) produces huge float values that
    stretch a range far beyond what the quantized network computes (README,
    "The calibration order"). With ``bn_after_calib`` the BN statistics are
    re-estimated once more under the frozen ranges.

  At FP32 both orders are the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data.images import image_tensors
from ..quant.quantizers import CALIBRATION_METHODS, CalibrationMethod
from ..quant.runner import QuantizedModel
from ..graph.bits import FLOAT_BITS

__all__ = ["CALIB_ORDERS", "EvalProtocol", "PROTOCOLS", "resolve_protocol"]

#: The protocol names.
PROTOCOLS: tuple[str, ...] = ("ghn2", "calibrated")

#: How ``calibrated`` orders BN estimation and range calibration (see the module doc).
CALIB_ORDERS: tuple[str, ...] = ("quantized-bn", "float-first")


@dataclass(frozen=True)
class EvalProtocol:
    """How a network's BN statistics and activation ranges are set before evaluation.

    Args:
        name: ``"ghn2"`` (per-test-batch BN statistics and activation ranges) or
            ``"calibrated"`` (both fixed from training images, then frozen).
        bn_batches: training batches the BN statistics are averaged over (calibrated).
        calib_batches: training batches the activation ranges are calibrated on
            (calibrated; the first ones of the BN batches).
        calib_method: ``"minmax"``, ``"percentile"`` or ``"mse"``.
        batch_size: images per calibration batch.
        seed: seed of the choice of training images.
        bn_after_calib: with ``"quantized-bn"``, re-estimate the BN statistics once
            more after the activation ranges are frozen (quantized activations only).
        calib_order: ``"float-first"`` (default: BN with float activations, ranges
            observed on that network, then BN under the frozen ranges) or
            ``"quantized-bn"`` (BN under per-batch ranges, then the ranges observed
            float; the earlier default); calibrated only.

    Raises:
        ValueError: an unknown name, method or order, a non-positive count, or
            ``bn_after_calib`` with ``"float-first"`` (which always re-estimates).
    """

    name: str = "calibrated"
    bn_batches: int = 20
    calib_batches: int = 8
    calib_method: CalibrationMethod = "minmax"
    batch_size: int = 256
    seed: int = 0
    bn_after_calib: bool = False
    calib_order: str = "float-first"

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise ValueError(f"unknown evaluation protocol {self.name!r}; use one of "
                             f"{', '.join(PROTOCOLS)}")
        if self.calib_method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {self.calib_method!r}; use one of "
                             f"{', '.join(CALIBRATION_METHODS)}")
        if self.calib_order not in CALIB_ORDERS:
            raise ValueError(f"unknown calibration order {self.calib_order!r}; use one of "
                             f"{', '.join(CALIB_ORDERS)}")
        if self.calib_order == "float-first" and self.bn_after_calib:
            raise ValueError("calib_order='float-first' (the default) already re-estimates "
                             "BN under the frozen ranges; drop bn_after_calib, or pass "
                             "calib_order='quantized-bn' with it")
        for field in ("bn_batches", "calib_batches", "batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"EvalProtocol.{field} must be >= 1, got {getattr(self, field)}")

    @property
    def needs_training_images(self) -> bool:
        """Whether :meth:`apply` reads training batches."""
        return self.name == "calibrated"

    def key(self) -> str:
        """A short string that identifies every setting (for caches and tables)."""
        if self.name == "ghn2":
            return "ghn2"
        return (f"calibrated-bn{self.bn_batches}-{self.calib_method}{self.calib_batches}"
                f"-b{self.batch_size}-s{self.seed}" + ("-bnafter" if self.bn_after_calib else "")
                + ("-floatfirst" if self.calib_order == "float-first" else ""))

    def describe(self) -> str:
        """One sentence for table captions."""
        if self.name == "ghn2":
            return ("protocol ghn2: BN on each test batch's statistics, activation ranges "
                    "measured on each test batch")
        float_first = self.calib_order == "float-first"
        return (f"protocol calibrated: BN statistics re-estimated on {self.bn_batches} "
                f"training batches of {self.batch_size}"
                + (" with float activations" if float_first
                   else " with activations on per-batch ranges (order quantized-bn)")
                + f", activation ranges calibrated ({self.calib_method}) on "
                f"{self.calib_batches} of them, then frozen"
                + (", then BN statistics re-estimated under the frozen ranges"
                   if self.bn_after_calib or float_first else ""))

    def calibration_batches(self, train_images: Dataset | None) -> list[Tensor]:
        """The training image batches :meth:`apply` reads (empty for ``ghn2``).

        The first ``max(bn_batches, calib_batches) * batch_size`` images of a
        permutation of ``train_images`` drawn with ``seed``: the same images for every
        network and method.

        Raises:
            ValueError: ``calibrated`` without training images.
        """
        if not self.needs_training_images:
            return []
        if train_images is None or len(train_images) == 0:
            raise ValueError("the calibrated protocol needs training images (pass "
                             "train_images=load_images(name, 'train')), or use protocol='ghn2'")
        count = min(len(train_images), max(self.bn_batches, self.calib_batches) * self.batch_size)
        order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(self.seed))
        images, _ = image_tensors(train_images, order[:count])
        return list(images.split(self.batch_size))

    def apply(self, runner: QuantizedModel, params: Mapping[str, Tensor] | None,
              batches: Sequence[Tensor]) -> QuantizedModel:
        """Set ``runner``'s BN mode and activation ranges for ``params`` at its current bits.

        Args:
            runner: the quantized network, its bits already set.
            params: the parameters to evaluate (None: the model's own).
            batches: :meth:`calibration_batches`.

        Returns:
            ``runner``, ready to count correct answers.
        """
        runner.reset_calibration()
        if self.name == "ghn2":
            return runner.set_bn("batch")
        quantized = any(layer.act_quant.bits < FLOAT_BITS for layer in runner.layers.values())
        float_first = quantized and self.calib_order == "float-first"
        runner.estimate_bn(batches, self.bn_batches, params, float_activations=float_first)
        if quantized:
            runner.calibrate(batches, self.calib_batches, self.calib_method, params=params)
            if self.bn_after_calib or float_first:
                runner.estimate_bn(batches, self.bn_batches, params)
        return runner

    def replace(self, **changes) -> "EvalProtocol":
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


def resolve_protocol(protocol: str | EvalProtocol) -> EvalProtocol:
    """An :class:`EvalProtocol` from a name (default settings) or itself."""
    return protocol if isinstance(protocol, EvalProtocol) else EvalProtocol(name=protocol)
