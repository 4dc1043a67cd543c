"""Evaluation: accuracy of GHN-predicted vs randomly initialised networks per bit-width."""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data.archgraph_dataset import ArchGraphDataset, split_models
from ..data.images import tensor_batches
from ..graph.bits import EVAL_BITS
from ..graph.tracer import trace
from ..inits import init_params
from ..nn.ghn import GHN
from ..quant.ptq import count_correct
from ..quant.runner import QuantizedModel, quantize
from ..quant.spec import QuantSpec, annotate
from .protocol import EvalProtocol, resolve_protocol
from .sgd import sgd_train

__all__ = ["EvalRow", "EvalSetup", "ModuleArchs", "evaluate_split", "evaluate_architecture",
           "trained_accuracy", "bits_spec", "setting_label", "setup_key", "regression_accuracy",
           "top1"]


class ModuleArchs:
    """Explicit networks, evaluable like an :class:`ArchGraphDataset`.

    Args:
        models: ``(name, module)`` pairs.
        in_shape: their input (C, H, W).
        s_max: virtual-edge cutoff of their graphs.
    """

    def __init__(self, models: Sequence[tuple[str, torch.nn.Module]],
                 in_shape: Sequence[int], s_max: int = 50) -> None:
        self.in_shape = tuple(in_shape)
        self.modules = [m for _, m in models]
        self.graphs = [trace(m, (1, *self.in_shape), s_max=s_max, name=n) for n, m in models]

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int):
        return self.graphs[i]

    def build_module(self, i: int) -> torch.nn.Module:
        """The ``i``-th network."""
        return self.modules[i]


@dataclass
class EvalRow:
    """Top-1 accuracy of one architecture, method and bit-width."""

    arch: str
    method: str
    bits: int
    accuracy: float


@torch.no_grad()
def top1(runner: QuantizedModel, params: dict[str, torch.Tensor] | None, loader: Iterable,
         device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy (a fraction) of ``runner`` with ``params`` (None: its own) on
    ``loader``'s ``(images, labels)`` batches."""
    correct, total = count_correct(lambda images: runner(images, params), loader, device)
    return correct / total


def bits_spec(bits: int, per_channel: bool = True, first_last_8bit: bool = False) -> QuantSpec:
    """The uniform spec of one evaluated bit-width (first/last layers at 8 bits only when
    ``bits`` is below 8: FP32 stays float everywhere)."""
    return QuantSpec.uniform(bits, per_channel=per_channel,
                             first_last_8bit=first_last_8bit and bits < 8)


def setting_label(per_channel: bool = True, first_last_8bit: bool = False) -> str:
    """``"per-channel"``, ``"per-tensor"``, ``"per-channel+first-last-8bit"``, ..."""
    return ("per-channel" if per_channel else "per-tensor") + \
        ("+first-last-8bit" if first_last_8bit else "")


def setup_key(protocol: EvalProtocol, per_channel: bool, first_last_8bit: bool,
              num_images: int) -> str:
    """:meth:`EvalSetup.key` from its parts (without loading any image)."""
    return f"{protocol.key()}/{setting_label(per_channel, first_last_8bit)}/{num_images}img"


@dataclass
class EvalSetup:
    """What every network of an evaluation shares: the protocol, its training batches,
    the test batches and the weight-quantization setting.

    Build it with :meth:`create`.

    Attributes:
        protocol: how BN statistics and activation ranges are set.
        calibration: the protocol's training image batches, on ``device``.
        test: ``(images, labels)`` test batches, on ``device``.
        device: where networks run.
        per_channel: per-output-channel weight scales (False: one per tensor).
        first_last_8bit: first and last layers at 8 bits below 8 bits.
    """

    protocol: EvalProtocol
    calibration: list[torch.Tensor]
    test: list[tuple[torch.Tensor, torch.Tensor]]
    device: torch.device
    per_channel: bool = True
    first_last_8bit: bool = False

    @classmethod
    def create(cls, test_images: Dataset, train_images: Dataset | None = None,
               protocol: str | EvalProtocol = "calibrated", max_images: int | None = None,
               batch_size: int = 256, device: str | torch.device = "cpu",
               per_channel: bool = True, first_last_8bit: bool = False) -> "EvalSetup":
        """Load the batches once.

        Args:
            test_images: the test split (only read to count correct answers under
                ``calibrated``).
            train_images: the training split (needed by ``calibrated``).
            protocol: ``"calibrated"``, ``"ghn2"`` or an :class:`EvalProtocol`.
            max_images: the first N test images only.
            batch_size: test images per forward pass.
            device, per_channel, first_last_8bit: see the attributes.

        Raises:
            ValueError: an unknown protocol, ``calibrated`` without training images, or
                ``max_images`` / ``batch_size`` below 1.
        """
        if max_images is not None and max_images < 1 or batch_size < 1:
            raise ValueError(f"max_images and batch_size must be >= 1, got {max_images} and "
                             f"{batch_size}")
        device = torch.device(device)
        protocol = resolve_protocol(protocol)
        calibration = [x.to(device) for x in protocol.calibration_batches(train_images)]
        test = [(x.to(device), y.to(device))
                for x, y in tensor_batches(test_images, batch_size, max_images)]
        return cls(protocol, calibration, test, device, per_channel, first_last_8bit)

    @property
    def num_images(self) -> int:
        """Test images counted."""
        return sum(len(y) for _, y in self.test)

    def spec(self, bits: int) -> QuantSpec:
        """The spec of one bit-width under this setting."""
        return bits_spec(bits, self.per_channel, self.first_last_8bit)

    def key(self) -> str:
        """A string naming the protocol, the setting and the test images (cache keys)."""
        return setup_key(self.protocol, self.per_channel, self.first_last_8bit, self.num_images)

    def runner(self, module: torch.nn.Module, in_shape: Sequence[int]) -> QuantizedModel:
        """A quantized runner of ``module`` (on this device) with this weight setting."""
        return quantize(module.to(self.device), QuantSpec(per_channel=self.per_channel),
                        (1, *in_shape), bn="batch")

    def top1(self, runner: QuantizedModel, params: dict[str, torch.Tensor] | None) -> float:
        """Top-1 (a fraction) of ``runner`` at its current bits with ``params`` (None: its
        own) under the protocol."""
        self.protocol.apply(runner, params, self.calibration)
        return top1(runner, params, self.test, self.device)


def evaluate_architecture(graph, module: torch.nn.Module, in_shape: Sequence[int],
                          ghns: dict[str, GHN], bits: Sequence[int], baselines: Sequence[str],
                          setup: EvalSetup, seed: int = 0) -> list[EvalRow]:
    """Accuracy of one architecture per method (each GHN, each initializer) and bit-width.

    Args:
        graph: its :class:`~ghn_pyg.graph.ArchGraph`.
        module: the network (not modified: a copy is evaluated, since the calibrated
            protocol writes BN statistics).
        in_shape: its input (C, H, W).
        ghns: GHNs by method name (on ``setup.device``, in eval mode).
        bits: bit-widths.
        baselines: initializer names (:mod:`ghn_pyg.inits`), drawn once with ``seed``
            for every bit-width.
        setup: the shared evaluation setup.
        seed: seed of the random baselines.

    Returns:
        One :class:`EvalRow` per method and bit-width.
    """
    module = copy.deepcopy(module)
    runner = setup.runner(module, in_shape)
    random_params = {name: init_params(name, module, seed) for name in baselines}
    rows = []
    for b in bits:
        annotated = annotate(graph, setup.spec(b))
        runner.set_bits(annotated)
        for method, ghn in ghns.items():
            with torch.no_grad():
                params = ghn(annotated.to(setup.device))[0]
            rows.append(EvalRow(graph.name, method, b, setup.top1(runner, params)))
        for name, params in random_params.items():
            rows.append(EvalRow(graph.name, name, b, setup.top1(runner, params)))
    return rows


def trained_accuracy(model: torch.nn.Module, in_shape: Sequence[int], bits: Sequence[int],
                     setup: EvalSetup) -> dict[int, float]:
    """Top-1 of a trained network quantized post-training at each of ``bits``.

    Args:
        model: the trained network (not modified: a copy is evaluated).
        in_shape: its input (C, H, W).
        bits: bit-widths.
        setup: the shared evaluation setup.

    Returns:
        ``{bits: top-1 fraction}``.
    """
    runner = setup.runner(copy.deepcopy(model), in_shape)
    out = {}
    for b in bits:
        runner.set_bits(setup.spec(b))
        out[b] = setup.top1(runner, None)
    return out


def evaluate_split(archs: ArchGraphDataset | ModuleArchs, images: Dataset, ghns: dict[str, GHN],
                   bits: Sequence[int] = EVAL_BITS,
                   baselines: Sequence[str] = ("default", "he", "xavier"),
                   max_archs: int | None = None, max_images: int | None = None,
                   batch_size: int = 256, seed: int = 0, device: str | torch.device = "cpu",
                   progress: bool = True, sgd_epochs: int = 0,
                   train_images: Dataset | None = None,
                   protocol: str | EvalProtocol = "calibrated", per_channel: bool = True,
                   first_last_8bit: bool = False) -> list[EvalRow]:
    """Accuracy of every architecture of a split, per method and bit-width.

    Every method is measured under the same ``protocol`` (see
    :mod:`ghn_pyg.train.protocol`): ``"calibrated"`` re-estimates BN statistics and
    calibrates activation ranges on training images with the parameters being
    evaluated, then freezes them; ``"ghn2"`` uses each test batch's statistics and
    ranges (GHN-2's protocol). Each GHN predicts with the graph annotated at the
    evaluated bits; random baselines draw the same parameters for every bit-width
    (seeded per architecture). The architectures' own modules are not modified.

    Args:
        archs: the architecture split.
        images: the test images (only read to count correct answers under
            ``calibrated``).
        ghns: GHNs by method name, e.g. ``{"GHN": ghn, "GHN-QAT": ghn_qat}``.
        bits: bit-widths (weights and activations alike; 32 is float).
        baselines: initializer names (:mod:`ghn_pyg.inits`).
        max_archs: evaluate the first N architectures only.
        max_images: evaluate the first N images only.
        batch_size: test images per forward pass.
        seed: seed of the random baselines (architecture i uses ``seed + i``).
        device: where to run.
        progress: show a progress bar.
        sgd_epochs: also train each network with SGD for this many epochs on
            ``train_images`` (method ``"SGD N ep"``), then quantize it post-training
            under the same protocol.
        train_images: training images (calibration under ``calibrated``, and SGD).
        protocol: ``"calibrated"``, ``"ghn2"`` or an :class:`EvalProtocol`.
        per_channel: per-output-channel weight scales (False: one per tensor).
        first_last_8bit: keep the first and last layers at 8 bits below 8 bits.

    Returns:
        One :class:`EvalRow` per architecture, method and bit-width.

    Raises:
        ValueError: an unknown protocol, or ``calibrated`` / ``sgd_epochs`` without
            ``train_images``.
    """
    if sgd_epochs > 0 and train_images is None:
        raise ValueError("sgd_epochs needs train_images")
    setup = EvalSetup.create(images, train_images, protocol, max_images, batch_size, device,
                             per_channel, first_last_8bit)
    n = len(archs) if max_archs is None else min(max_archs, len(archs))
    for ghn in ghns.values():
        ghn.to(setup.device).eval()
    rows: list[EvalRow] = []
    for i in tqdm(range(n), desc=f"evaluating architectures ({setup.protocol.name})",
                  disable=not progress):
        graph, module = archs[i], archs.build_module(i)
        rows += evaluate_architecture(graph, module, archs.in_shape, ghns, bits, baselines,
                                      setup, seed + i)
        if sgd_epochs > 0:
            trained = sgd_train(module, train_images, sgd_epochs, seed=seed + i,
                                device=setup.device)
            rows += [EvalRow(graph.name, f"SGD {sgd_epochs} ep", b, accuracy) for b, accuracy in
                     trained_accuracy(trained, archs.in_shape, bits, setup).items()]
    return rows


def regression_accuracy(ghn: GHN, images: Dataset, bits: int, archs: int = 5, seed: int = 0,
                        max_images: int = 1000, batch_size: int = 250) -> float:
    """Mean top-1 of ``ghn``'s predictions for ``archs`` fixed unseen test architectures
    of the efficient space, on the first ``max_images`` images (deterministic)."""
    shape = tuple(images[0][0].shape)
    models = split_models(archs, shape[0], 10, seed)
    rows = evaluate_split(ModuleArchs(models, shape), images, {"GHN": ghn}, (bits,), (),
                          max_images=max_images, batch_size=batch_size, progress=False,
                          protocol="ghn2")
    return statistics.fmean(r.accuracy for r in rows)
