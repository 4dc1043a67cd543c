"""Result tables and plots of evaluation rows: mean ± standard error over architectures."""

from __future__ import annotations

import csv
import math
import statistics
import textwrap
from pathlib import Path
from typing import Sequence

from ..fileio import atomic_path
from ..graph.bits import bits_label
from ..plotting import pyplot, save_figure
from ..report import markdown_table
from .evaluate import EvalRow

__all__ = ["summarize", "format_accuracy", "mean_se", "format_difference", "markdown_summary",
           "write_results"]


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean of ``values`` (a standard error of 0 for one
    value).

    Raises:
        statistics.StatisticsError: ``values`` is empty.
    """
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return statistics.fmean(values), se


def format_difference(deltas: Sequence[float]) -> str:
    """A paired difference in points: ``"+2.5 ± 0.4 (15/20)"``, the mean ± standard error
    of ``deltas`` (one per architecture, already in points) and on how many of them it
    is strictly positive."""
    mean, se = mean_se(deltas)
    return f"{mean:+.1f} ± {se:.1f} ({sum(d > 0 for d in deltas)}/{len(deltas)})"


def summarize(rows: Sequence[EvalRow]) -> dict[tuple[str, int], tuple[float, float, int]]:
    """``{(method, bits): (mean, standard error, count)}`` over architectures."""
    groups: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        groups.setdefault((row.method, row.bits), []).append(row.accuracy)
    return {key: (*mean_se(values), len(values)) for key, values in groups.items()}


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
