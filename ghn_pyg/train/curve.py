"""The learning curve: a GHN's accuracy on fixed validation architectures during training."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ..data.archgraph_dataset import sample_specs
from ..nn.ghn import GHN
from ..plotting import pyplot, save_figure
from ..spaces import get_space
from .evaluate import ModuleArchs, evaluate_split
from .protocol import EvalProtocol

__all__ = ["LearningCurve", "curve_columns", "plot_curve", "CURVE_PROTOCOL"]

#: The curve's protocol: BN statistics from 4 and activation ranges from 2 batches of
#: 256 training images (the A/B trials' setting), cheap enough to run during training;
#: the default calibration order (``float-first``; curves logged before 2026-12-05 used
#: ``quantized-bn``).
CURVE_PROTOCOL = EvalProtocol("calibrated", bn_batches=4, calib_batches=2)


def curve_columns(spaces: Sequence[str], bits: Sequence[int]) -> list[str]:
    """The metrics columns of a curve: ``val_acc_{b}bit`` (mean over every validation
    architecture), and ``val_{space}_{b}bit`` per space when there are several."""
    columns = [f"val_acc_{b}bit" for b in bits]
    if len(spaces) > 1:
        columns += [f"val_{space}_{b}bit" for space in spaces for b in bits]
    return columns


class LearningCurve:
    """Top-1 of a GHN's predictions on the first validation architectures of each
    training space, at fixed bit-widths, on validation images, under
    :data:`CURVE_PROTOCOL`.

    The architectures are each space's ``val`` split (seed 0), never trained on; the
    images are the image dataset's validation split. Evaluating does not touch the
    global random state, so a run trains the same with or without a curve.

    Args:
        spaces: the training spaces (each must have a ``val`` split).
        archs_per_space: validation architectures per space.
        in_shape, num_classes: the networks' input (C, H, W) and classes.
        val_images: validation images (the first ``max_images`` are counted).
        train_images: training images for the protocol's BN statistics and ranges.
        bits: bit-widths (32 is float).
        max_images: validation images counted.
        device: where to evaluate.
        protocol: how BN statistics and ranges are set (default :data:`CURVE_PROTOCOL`).

    Raises:
        ValueError: a space without a ``val`` split or with fewer validation
            architectures than asked for, or a count below 1.
    """

    def __init__(self, spaces: Sequence[str], archs_per_space: int, in_shape: Sequence[int],
                 num_classes: int, val_images: Dataset, train_images: Dataset,
                 bits: Sequence[int] = (32, 4), max_images: int = 500,
                 device: str | torch.device = "cpu", protocol: EvalProtocol | None = None) -> None:
        if archs_per_space < 1 or max_images < 1:
            raise ValueError(f"archs_per_space and max_images must be >= 1, got "
                             f"{archs_per_space} and {max_images}")
        self.spaces, self.bits = list(dict.fromkeys(spaces)), tuple(bits)
        models, self._space_of = [], {}
        for name in self.spaces:
            space = get_space(name)
            if "val" not in space.splits():
                raise ValueError(f"space {name!r} has no val split for a learning curve")
            try:
                specs = sample_specs(space, "val", archs_per_space, 0)
            except RuntimeError as err:  # a small space runs out of distinct architectures
                raise ValueError(f"space {name!r} cannot give {archs_per_space} validation "
                                 f"architectures ({err}); lower eval_archs") from None
            for i, spec in enumerate(specs):
                arch = f"val-{name}-{i:02d}"
                models.append((arch, space.build(spec, in_shape[0], num_classes)))
                self._space_of[arch] = name
        self.archs = ModuleArchs(models, in_shape)
        self.val_images, self.train_images = val_images, train_images
        self.max_images, self.device = max_images, device
        self.protocol = protocol or CURVE_PROTOCOL
        self.columns = curve_columns(self.spaces, self.bits)

    def evaluate(self, ghn: GHN) -> dict[str, float]:
        """``{column: accuracy in %}`` of ``ghn`` (left in training mode afterwards)."""
        devices = [torch.device(self.device)] if torch.device(self.device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            rows = evaluate_split(self.archs, self.val_images, {"GHN": ghn}, self.bits,
                                  baselines=(), max_images=self.max_images, device=self.device,
                                  progress=False, train_images=self.train_images,
                                  protocol=self.protocol)
        ghn.train()
        overall, per_space = defaultdict(list), defaultdict(list)
        for row in rows:
            overall[row.bits].append(100 * row.accuracy)
            per_space[self._space_of[row.arch], row.bits].append(100 * row.accuracy)
        out = {f"val_acc_{b}bit": _mean(overall[b]) for b in self.bits}
        if len(self.spaces) > 1:
            out.update({f"val_{s}_{b}bit": _mean(per_space[s, b])
                        for s in self.spaces for b in self.bits})
        return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def plot_curve(metrics_csv: str | Path, path: str | Path) -> Path | None:
    """Draw the ``val_*`` columns of a run's ``metrics.csv`` against the step.

    Returns:
        ``path``, or None when matplotlib is missing or no step has a curve value yet.
    """
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in (rows[0] if rows else {}) if c.startswith("val_")]
    points = {c: [(int(r["step"]), float(r[c])) for r in rows if r.get(c) not in ("", None)]
              for c in columns}
    points = {c: p for c, p in points.items() if p}
    plt = pyplot()
    if plt is None or not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for column, values in points.items():
        steps, accuracy = zip(*values)
        ax.plot(steps, accuracy, marker="o", markersize=3, label=column[len("val_"):],
                linestyle="-" if column.startswith("val_acc_") else "--")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
