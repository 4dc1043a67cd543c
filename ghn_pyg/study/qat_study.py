"""QAT from each starting point for a set of unseen architectures.

For each of ``archs`` architectures of a split of the ``efficient`` space (the GHNs'
own space: ``val`` to choose a recipe, ``test`` for the final tables, or an
out-of-distribution split) and each starting point: QAT at
``bits`` for ``epochs`` (:func:`~ghn_pyg.study.qat.qat_train`), top-1 per epoch in
``qat.csv``. Finished (architecture, start) pairs are skipped on a rerun.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Sequence

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data.archgraph_dataset import sample_specs, split_arch_name
from ..plotting import pyplot, save_figure
from ..report import markdown_table
from ..spaces import get_space
from ..train.tables import format_difference
from .qat import check_start, qat_train

__all__ = ["run_qat_study", "qat_table", "qat_differences", "epochs_to_reference",
           "plot_qat_curves"]

_FIELDS = ["arch", "init", "bits", "epoch", "accuracy", "final_running_bn"]


def run_qat_study(archs: int, inits: Sequence[str], train: Dataset, test: Dataset,
                  out: str | Path, bits: int = 4, epochs: int = 3, lr: float = 0.05,
                  batch_size: int = 128, seed: int = 0, progress: bool = True,
                  split: str = "test") -> Path:
    """QAT of ``archs`` efficient architectures of ``split`` from every start in ``inits``.

    Args:
        archs: how many architectures (the first ``archs`` of ``split``, seed 0).
        inits: starting points (:func:`~ghn_pyg.study.qat.start_names`).
        train, test: image datasets; the input shape comes from ``train``.
        out: folder of ``qat.csv``.
        bits, epochs, lr, batch_size, seed: as in :func:`~ghn_pyg.study.qat.qat_train`.
        progress: show a progress bar.
        split: the architectures' split of the ``efficient`` space (``val``, ``test``,
            ``wide``, ``deep``, ``nobn``); rows name it (``efficient-val-03``). The
            images are the caller's: pair ``val`` architectures with validation images.

    Returns:
        The CSV path (one row per architecture, start and epoch).

    Raises:
        ValueError: an unknown starting point or split, or bad counts or bits.
    """
    for init in inits:
        check_start(init)
    if archs < 1 or epochs < 0 or not 2 <= bits <= 8:
        raise ValueError(f"QAT study needs archs >= 1, epochs >= 0 and bits 2..8; got "
                         f"archs={archs}, epochs={epochs}, bits={bits}")
    space = get_space("efficient")
    if split not in space.splits() or split == "train":
        raise ValueError(f"unknown QAT split {split!r}; use one of "
                         f"{', '.join(s for s in space.splits() if s != 'train')}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "qat.csv"
    done = set()
    if path.is_file():
        done = {(r["arch"], r["init"]) for r in csv.DictReader(path.open())}
    in_shape = tuple(train[0][0].shape)
    specs = sample_specs(space, split, archs, seed=0)
    names = [split_arch_name(i, split) for i in range(len(specs))]
    jobs = [(i, init) for i in range(len(specs)) for init in inits
            if (names[i], init) not in done]
    new_file = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_FIELDS)
        if new_file:
            writer.writeheader()
        for i, init in tqdm(jobs, desc="QAT study", disable=not progress):
            module = space.build(specs[i], in_shape[0], 10)
            _, history = qat_train(module, init, train, test, bits, epochs, batch_size, lr,
                                   seed, progress=False)
            final = "" if history.final_running_bn is None else f"{history.final_running_bn:.4f}"
            writer.writerows({"arch": names[i], "init": init, "bits": bits,
                              "epoch": epoch, "accuracy": f"{acc:.4f}", "final_running_bn": final}
                             for epoch, acc in enumerate(history.accuracy))
            handle.flush()
    return path


def _curves(path: str | Path) -> dict[str, dict[str, list[float]]]:
    """``{init: {arch: [accuracy per epoch]}}`` from ``qat.csv``."""
    curves: dict[str, dict[str, list[float]]] = {}
    for row in csv.DictReader(Path(path).open()):
        curves.setdefault(row["init"], {}).setdefault(row["arch"], []).append(float(row["accuracy"]))
    return curves


def epochs_to_reference(path: str | Path, reference: str) -> dict[str, tuple[list[int], int]]:
    """Per start, the epochs it needs to reach the final accuracy of QAT from
    ``reference`` on the same architecture (the issue's measure of a head start).

    Args:
        path: ``qat.csv``.
        reference: the start whose last-epoch accuracy is the bar (e.g. ``"he_normal"``).

    Returns:
        ``init -> (first epoch reaching the bar, per architecture that reaches it;
        the number of architectures shared with the reference)``; empty when
        ``reference`` is not in the file.
    """
    return _epochs_to_reference(_curves(path), reference)


def _epochs_to_reference(curves: dict[str, dict[str, list[float]]],
                         reference: str) -> dict[str, tuple[list[int], int]]:
    """:func:`epochs_to_reference` of curves already read."""
    bars = {arch: c[-1] for arch, c in curves.get(reference, {}).items()}
    out = {}
    for init, arch_curves in curves.items() if bars else ():
        shared = [arch for arch in arch_curves if arch in bars]
        out[init] = ([next(e for e, a in enumerate(arch_curves[arch]) if a >= bars[arch])
                      for arch in shared if max(arch_curves[arch]) >= bars[arch]], len(shared))
    return out


def _mean_epochs(reached: Sequence[int], total: int) -> str:
    """``"1.5 (2/3)"``: the mean epoch over the architectures that reach, and how many."""
    return f"{statistics.fmean(reached):.1f} ({len(reached)}/{total})" if reached \
        else f"- (0/{total})"


def qat_table(path: str | Path, target: float, reference: str = "he_normal") -> str:
    """Markdown: per start, mean top-1 (%) per epoch, the epochs to reach ``target`` and
    the epochs to reach ``reference``'s final accuracy.

    The last columns are mean first epochs over the architectures that reach the bar,
    and how many do: ``target`` is a fraction; ``reference``'s bar is its own last-epoch
    accuracy on each architecture (:func:`epochs_to_reference`). The last column is the
    head-start count: on how many architectures a start reaches ``reference``'s final
    accuracy within half of ``reference``'s training epochs (epoch 0 is the start, so
    with 3 epochs: by the end of epoch 1). Both ``reference`` columns are left out when
    ``reference`` did not run.
    """
    curves = _curves(path)
    to_reference = _epochs_to_reference(curves, reference)
    epochs = max((len(c) for arch_curves in curves.values() for c in arch_curves.values()),
                 default=0)
    half = (max(len(c) for c in curves[reference].values()) - 1) / 2 if to_reference else 0.0
    rows = []
    for init, arch_curves in curves.items():
        means = [statistics.fmean(c[e] for c in arch_curves.values() if len(c) > e) * 100
                 for e in range(epochs)]
        reached = [next(e for e, a in enumerate(c) if a >= target)
                   for c in arch_curves.values() if max(c) >= target]
        row = [init] + [f"{m:.1f}" for m in means] + [_mean_epochs(reached, len(arch_curves))]
        if to_reference:
            to_bar, shared = to_reference[init]
            row += [_mean_epochs(to_bar, shared),
                    f"{sum(e <= half for e in to_bar)}/{shared}"]
        rows.append(row)
    header = ["start"] + [f"epoch {e}" for e in range(epochs)] + [f"epochs to {100 * target:.0f}%"]
    if to_reference:
        header += [f"epochs to {reference}'s final",
                   f"{reference}'s final within {half:g} epochs"]
    return markdown_table(header, rows)


def qat_differences(path: str | Path, baseline: str) -> str:
    """Markdown: per start, its paired difference to ``baseline`` at every epoch.

    Each cell is the mean ± standard error over the architectures both starts ran of
    (start's top-1 - baseline's top-1) in points, and on how many of them the start is
    strictly higher: ``+2.5 ± 0.2 (19/20)``. This is how an A/B of two starts is read:
    the architectures are shared, so their spread between architectures cancels.

    Raises:
        ValueError: ``baseline`` is not in the file.
    """
    curves = _curves(path)
    if baseline not in curves:
        raise ValueError(f"baseline start {baseline!r} is not in {path}; it has "
                         f"{', '.join(curves) or 'no rows'}")
    base = curves[baseline]
    epochs = max(len(c) for c in base.values())
    rows = []
    for init, arch_curves in curves.items():
        if init == baseline:
            continue
        cells = []
        for e in range(epochs):
            deltas = [100 * (c[e] - base[arch][e]) for arch, c in arch_curves.items()
                      if arch in base and len(c) > e and len(base[arch]) > e]
            cells.append(format_difference(deltas) if deltas else "-")
        rows.append([init] + cells)
    return markdown_table([f"start - {baseline}"] + [f"epoch {e}" for e in range(epochs)], rows)


def plot_qat_curves(path: str | Path, target_path: str | Path, target: float) -> Path | None:
    """Mean top-1 vs epoch per start (with the target as a line); None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for init, arch_curves in _curves(path).items():
        epochs = max(len(c) for c in arch_curves.values())
        means = [statistics.fmean(c[e] for c in arch_curves.values() if len(c) > e) * 100
                 for e in range(epochs)]
        ax.plot(range(epochs), means, marker="o", label=init)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.axhline(100 * target, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("QAT epoch (0 = the starting point)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("QAT from each starting point (mean over architectures)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, target_path)
