"""Evaluation: accuracy of GHN-predicted vs randomly initialised networks per bit-width."""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..data.archgraph_dataset import ArchGraphDataset
from ..fileio import atomic_path
from ..inits import init_params
from ..nn.ghn import GHN
from ..plotting import pyplot, save_figure
from ..quant.runner import QuantizedModel, quantize
from ..quant.spec import QuantSpec, annotate
from ..report import markdown_table

__all__ = ["EvalRow", "ModuleArchs", "evaluate_split", "sgd_train", "regression_accuracy",
           "summarize", "markdown_summary", "write_results", "bits_label", "top1"]


class ModuleArchs:
    """Explicit networks, evaluable like an :class:`ArchGraphDataset`.

    Args:
        models: ``(name, module)`` pairs.
        in_shape: their input (C, H, W).
        s_max: virtual-edge cutoff of their graphs.
    """

    def __init__(self, models: Sequence[tuple[str, torch.nn.Module]],
                 in_shape: Sequence[int], s_max: int = 50) -> None:
        from ..graph.tracer import trace

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


def bits_label(bits: int) -> str:
    """``"FP32"`` or ``"W4A4"``."""
    return "FP32" if bits >= 32 else f"W{bits}A{bits}"


@torch.no_grad()
def top1(runner: QuantizedModel, params: dict[str, torch.Tensor] | None, loader: DataLoader,
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
    import copy

    device = torch.device(device)
    torch.manual_seed(seed)
    model = copy.deepcopy(module).to(device)
    for sub in model.modules() if reinit else ():
        if hasattr(sub, "reset_parameters") and sub is not model:
            sub.reset_parameters()
    loader = DataLoader(images, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs * len(loader), 1))
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device)).backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def evaluate_split(archs: ArchGraphDataset | ModuleArchs, images: Dataset, ghns: dict[str, GHN],
                   bits: Sequence[int] = (32, 8, 4, 2),
                   baselines: Sequence[str] = ("default", "he", "xavier"),
                   max_archs: int | None = None, max_images: int | None = None,
                   batch_size: int = 256, seed: int = 0, device: str | torch.device = "cpu",
                   progress: bool = True, sgd_epochs: int = 0,
                   train_images: Dataset | None = None) -> list[EvalRow]:
    """Accuracy of every architecture of a split, per method and bit-width.

    BN uses batch statistics for predicted and random parameters alike (GHN-2's
    protocol). Each GHN predicts with the graph annotated at the evaluated bits;
    random baselines draw the same parameters for every bit-width (seeded per
    architecture).

    Args:
        archs: the architecture split.
        images: the test images.
        ghns: GHNs by method name, e.g. ``{"GHN": ghn, "GHN-QAT": ghn_qat}``.
        bits: bit-widths (weights and activations alike; 32 is float).
        baselines: initializer names (:mod:`ghn_pyg.inits`).
        max_archs: evaluate the first N architectures only.
        max_images: evaluate the first N images only.
        batch_size: images per forward pass.
        seed: seed of the random baselines.
        device: where to run.
        progress: show a progress bar.
        sgd_epochs: also train each network with SGD for this many epochs on
            ``train_images`` (method ``"SGD N ep"``), then quantize it post-training
            (running BN statistics, min/max calibration on 4 training batches).
        train_images: the training images for ``sgd_epochs``.

    Returns:
        One :class:`EvalRow` per architecture, method and bit-width.
    """
    device = torch.device(device)
    if max_images is not None:
        images = Subset(images, range(min(max_images, len(images))))
    loader = DataLoader(images, batch_size=batch_size)
    n = len(archs) if max_archs is None else min(max_archs, len(archs))
    for ghn in ghns.values():
        ghn.to(device).eval()
    rows: list[EvalRow] = []
    for i in tqdm(range(n), desc="evaluating architectures", disable=not progress):
        graph = archs[i]
        module = archs.build_module(i).to(device)
        runner = quantize(module, None, (1, *archs.in_shape), bn="batch")
        random_params = {name: init_params(name, module, seed + i) for name in baselines}
        for b in bits:
            annotated = annotate(graph, QuantSpec.uniform(b))
            runner.set_bits(annotated)
            for method, ghn in ghns.items():
                params = ghn(annotated.to(device))[0]
                rows.append(EvalRow(graph.name, method, b, top1(runner, params, loader, device)))
            for name, params in random_params.items():
                rows.append(EvalRow(graph.name, name, b, top1(runner, params, loader, device)))
        if sgd_epochs > 0:
            rows += _sgd_rows(graph, module, archs.in_shape, train_images, sgd_epochs, bits,
                              loader, seed + i, device)
    return rows


def _sgd_rows(graph, module: torch.nn.Module, in_shape: Sequence[int],
              train_images: Dataset | None, epochs: int, bits: Sequence[int],
              loader: DataLoader, seed: int, device: torch.device) -> list[EvalRow]:
    if train_images is None:
        raise ValueError("sgd_epochs needs train_images")
    trained = sgd_train(module, train_images, epochs, seed=seed, device=device)
    runner = quantize(trained, None, (1, *in_shape), bn="running")
    calibration = DataLoader(train_images, batch_size=256)
    rows = []
    for b in bits:
        runner.set_bits(annotate(runner.graph, QuantSpec.uniform(b))).reset_calibration()
        if b < 32:
            runner.calibrate(calibration, num_batches=4)
        rows.append(EvalRow(graph.name, f"SGD {epochs} ep", b,
                            top1(runner, None, loader, device)))
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


def markdown_summary(rows: Sequence[EvalRow]) -> str:
    """A table of mean +- standard error (in %), methods as rows, bit-widths as columns."""
    summary = summarize(rows)
    methods = list(dict.fromkeys(r.method for r in rows))
    bits = sorted({r.bits for r in rows}, reverse=True)
    table = [[m] + [f"{100 * summary[m, b][0]:.1f} ± {100 * summary[m, b][1]:.1f}" for b in bits]
             for m in methods]
    return markdown_table(["method"] + [bits_label(b) for b in bits], table)


def write_results(rows: Sequence[EvalRow], folder: str | Path, title: str = "") -> dict[str, Path]:
    """Write ``results.csv``, ``summary.md`` and ``accuracy_vs_bits.png`` (if matplotlib).

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
    plot = _plot(rows, folder / "accuracy_vs_bits.png", title)
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
    ax.set_title(title or "accuracy vs bit-width", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def regression_accuracy(ghn: GHN, images: Dataset, bits: int, archs: int = 5, seed: int = 0,
                        max_images: int = 1000, batch_size: int = 250) -> float:
    """Mean top-1 of ``ghn``'s predictions for ``archs`` fixed unseen test architectures
    of the efficient space, on the first ``max_images`` images (deterministic)."""
    from ..data.archgraph_dataset import sample_specs
    from ..spaces import get_space

    space = get_space("efficient")
    specs = sample_specs(space, "test", archs, seed)
    shape = tuple(images[0][0].shape)
    models = [(f"efficient-test-{i:02d}", space.build(s, shape[0], 10)) for i, s in enumerate(specs)]
    rows = evaluate_split(ModuleArchs(models, shape), images, {"GHN": ghn}, (bits,), (),
                          max_images=max_images, batch_size=batch_size, progress=False)
    return statistics.fmean(r.accuracy for r in rows)
