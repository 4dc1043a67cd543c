"""Evaluation: accuracy of GHN-predicted vs randomly initialised networks per bit-width."""

from __future__ import annotations

import copy
import csv
import math
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.archgraph_dataset import ArchGraphDataset, split_models
from ..data.images import tensor_batches
from ..fileio import atomic_path
from ..graph.bits import EVAL_BITS, bits_label
from ..graph.tracer import trace
from ..inits import default_init, init_params, seeded
from ..nn.ghn import GHN
from ..plotting import pyplot, save_figure
from ..quant.runner import QuantizedModel, quantize
from ..quant.spec import QuantSpec, annotate
from ..report import markdown_table
from .protocol import EvalProtocol, resolve_protocol

__all__ = ["EvalRow", "EvalSetup", "ModuleArchs", "evaluate_split", "evaluate_architecture",
           "trained_accuracy", "bits_spec", "setting_label", "setup_key", "format_accuracy",
           "sgd_train", "regression_accuracy",
           "summarize", "markdown_summary", "write_results", "top1"]


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
    device = torch.device(device)
    correct = total = 0
    for images, labels in loader:
        logits = runner(images.to(device), params)
        correct += int((logits.argmax(1) == labels.to(device)).sum())
        total += labels.numel()
    return correct / total


def sgd_train(module: torch.nn.Module, images: Dataset, epochs: int, batch_size: int = 128,
              lr: float = 0.05, seed: int = 0, device: str | torch.device = "cpu",
              reinit: bool = True) -> torch.nn.Module:
    """A copy of ``module`` trained with SGD (momentum 0.9, weight decay 5e-4, cosine).

    Args:
        module: the network (not modified).
        reinit: start from PyTorch's default initialisation (seeded) instead of the
            module's current parameters.
        images: ``(image, label)`` training items.
        epochs: passes over ``images``.
        batch_size, lr: the usual.
        seed: seed of the initialisation and the shuffling.
        device: where to train.

    Returns:
        The trained copy, in eval mode (BN with running statistics).
    """
    device = torch.device(device)
    with seeded(seed):  # initialisation and dropout draw from seed; the caller's RNG is kept
        model = copy.deepcopy(module).to(device)
        if reinit:
            default_init(model)
        loader = DataLoader(images, batch_size=batch_size, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(seed))
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                              max(epochs * len(loader), 1))
        model.train()
        for _ in range(epochs):
            for x, y in loader:
                optimizer.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device)).backward()
                optimizer.step()
                schedule.step()
    return model.eval()


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


def summarize(rows: Sequence[EvalRow]) -> dict[tuple[str, int], tuple[float, float, int]]:
    """``{(method, bits): (mean, standard error, count)}`` over architectures."""
    groups: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        groups.setdefault((row.method, row.bits), []).append(row.accuracy)
    out = {}
    for key, values in groups.items():
        se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
        out[key] = (statistics.fmean(values), se, len(values))
    return out


def format_accuracy(mean: float, se: float, count: int) -> str:
    """``"47.5 ± 1.2"`` (in %) over several architectures, ``"47.5"`` for one."""
    return f"{100 * mean:.1f} ± {100 * se:.1f}" if count > 1 else f"{100 * mean:.1f}"


def markdown_summary(rows: Sequence[EvalRow]) -> str:
    """A table of mean ± standard error (in %), methods as rows, bit-widths as columns
    (the mean alone for a single architecture)."""
    summary = summarize(rows)
    methods = list(dict.fromkeys(r.method for r in rows))
    bits = sorted({r.bits for r in rows}, reverse=True)
    table = [[m] + [format_accuracy(*summary[m, b]) for b in bits] for m in methods]
    return markdown_table(["method"] + [bits_label(b) for b in bits], table)


def write_results(rows: Sequence[EvalRow], folder: str | Path, title: str = "",
                  plot_title: str | None = None) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.md`` and ``accuracy_vs_bits.png`` (if matplotlib).

    Args:
        rows: the accuracies.
        folder: where to write.
        title: the heading of ``summary.md`` (and of the plot by default).
        plot_title: a shorter title for the plot.

    Returns:
        The paths written, by kind.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / "results.csv", "markdown": folder / "summary.md"}
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "method", "bits", "accuracy"])
        writer.writerows([r.arch, r.method, r.bits, f"{r.accuracy:.5f}"] for r in rows)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text((f"{title}\n\n" if title else "") + markdown_summary(rows) + "\n")
    plot = _plot(rows, folder / "accuracy_vs_bits.png", title if plot_title is None else plot_title)
    if plot is not None:
        paths["plot"] = plot
    return paths


def _plot(rows: Sequence[EvalRow], path: Path, title: str) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    summary = summarize(rows)
    bits = sorted({r.bits for r in rows}, reverse=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method in dict.fromkeys(r.method for r in rows):
        means = [100 * summary[method, b][0] for b in bits]
        errors = [100 * summary[method, b][1] for b in bits]
        ax.errorbar(range(len(bits)), means, yerr=errors, marker="o", capsize=3, label=method)
    ax.set_xticks(range(len(bits)), [bits_label(b) for b in bits])
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_xlabel("bit-width")
    ax.set_title(textwrap.fill(title or "accuracy vs bit-width", 60), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


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
