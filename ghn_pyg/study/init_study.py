"""The initialization study: initializers vs quantization robustness across block families.

For each block family of the ``blocks`` space, each initializer and each seed: build
the network, initialise it, record FP32 accuracy, train it in float (SGD, momentum,
cosine schedule), record FP32 accuracy again, then quantize it post-training at
W8A8, W4A4, W2A2 and W8 weights-only, recording accuracy, accuracy drop, the
quantization MSE of weights and activations and per-layer weight ranges. Finished
runs are kept in a CSV and skipped when the study is run again.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.images import first_items
from ..graph.bits import FLOAT_BITS
from ..inits import INITIALIZERS, load_params, seeded
from ..quant.ptq import ptq_evaluate
from ..quant.runner import quantize
from ..plotting import pyplot, save_figure
from ..report import markdown_table
from ..spaces.blocks import FAMILIES, BlocksSpace
from ..train.evaluate import top1
from ..train.sgd import sgd_train
from .qat import GHN_INITS, check_start, initial_params

__all__ = ["StudyConfig", "PRESETS", "run_study", "study_table", "bn_family_table", "GHN_INITS"]

_SETTINGS: tuple[tuple[int, int], ...] = ((8, 8), (4, 4), (2, 2), (8, 32))
_FIELDS = ["family", "init", "seed", "setting", "start_fp32", "end_fp32", "accuracy", "drop",
           "qmse_w", "qmse_a", "weight_absmax", "weight_std"]
_LAYER_SETTINGS = ("W8A8", "W4A4", "W2A2")
_LAYER_FIELDS = (["family", "init", "seed", "layer", "numel", "start_absmax", "start_std", "min",
                  "max", "absmax", "std"] + [f"qmse_w_{s}" for s in _LAYER_SETTINGS])


@dataclass
class StudyConfig:
    """What the study runs.

    Attributes:
        families: block families (:data:`~ghn_pyg.spaces.blocks.FAMILIES`).
        inits: initializer names (:mod:`ghn_pyg.inits`, plus ``ghn`` and ``ghn-qat``).
        seeds: how many seeds per (family, initializer).
        depth, width: blocks per stage and base width of the networks.
        epochs: float training epochs; train_images / test_images: how many to use.
        batch_size, lr: SGD settings.
        qat_archs: unseen ``efficient`` test architectures for QAT from each start
            (0 skips that part); qat_inits: the starts; qat_bits, qat_epochs, qat_lr;
            qat_target: the accuracy (a fraction) whose epochs-to-reach are reported.
    """

    families: Sequence[str] = tuple(FAMILIES)
    inits: Sequence[str] = tuple(INITIALIZERS) + tuple(GHN_INITS)
    seeds: int = 3
    depth: int = 2
    width: int = 16
    epochs: int = 5
    train_images: int | None = None
    test_images: int | None = None
    batch_size: int = 128
    lr: float = 0.05
    qat_archs: int = 0
    qat_inits: Sequence[str] = ("ghn-qat", "ghn", "he_normal", "default")
    qat_bits: int = 4
    qat_epochs: int = 3
    qat_lr: float = 0.05
    qat_target: float = 0.8

    def validate(self) -> None:
        """Raise ``ValueError`` naming an unknown family, initializer or QAT setting."""
        bad = [f for f in self.families if f not in FAMILIES]
        if bad:
            raise ValueError(f"unknown block family {bad[0]!r}; use {', '.join(FAMILIES)}")
        bad = [i for i in self.inits if i not in INITIALIZERS and i not in GHN_INITS]
        if bad:
            raise ValueError(f"unknown initializer {bad[0]!r}; use "
                             f"{', '.join(list(INITIALIZERS) + list(GHN_INITS))}")
        for init in self.qat_inits:
            check_start(init)
        if not 2 <= self.qat_bits <= 8 or self.qat_archs < 0 or self.qat_epochs < 0:
            raise ValueError(f"QAT needs bits 2..8 and non-negative counts, got qat_bits="
                             f"{self.qat_bits}, qat_archs={self.qat_archs}, "
                             f"qat_epochs={self.qat_epochs}")


#: ``smoke`` runs in about a minute (tested); ``full`` is the study of the README, sized
#: for a 2-core CPU: 6 families x 12 starts x 3 seeds, 2 epochs on 6,000 training images,
#: 2,000 test images, then QAT of 3 unseen test architectures from 4 starts.
PRESETS: dict[str, StudyConfig] = {
    "smoke": StudyConfig(families=("plain", "dwsep"), inits=("he_normal", "orthogonal"), seeds=1,
                         depth=1, width=8, epochs=1, train_images=1024, test_images=512,
                         qat_archs=1, qat_inits=("ghn-qat", "he_normal"), qat_epochs=1),
    "full": StudyConfig(depth=1, width=16, epochs=2, train_images=6000, test_images=2000,
                        qat_archs=3, qat_epochs=3, qat_target=0.75),
}


@torch.no_grad()
def _batch_stat_accuracy(module: nn.Module, data: Dataset, in_shape: Sequence[int]) -> float:
    runner = quantize(module, None, (1, *in_shape), bn="batch")
    return top1(runner, None, DataLoader(data, batch_size=256))


def run_study(config: StudyConfig, train: Dataset, test: Dataset, out: str | Path,
              progress: bool = True) -> Path:
    """Run every (family, initializer, seed) not yet in ``out/runs.csv``.

    Also writes ``out/layers.csv``: per run and conv/linear weight, its range and
    spread at the start and after training and its quantization MSE per setting.

    Returns:
        The CSV path (one row per run and quantization setting).
    """
    config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "runs.csv"
    done = set()
    if path.is_file():
        done = {(r["family"], r["init"], int(r["seed"])) for r in csv.DictReader(path.open())}
    if config.train_images is not None:
        train = first_items(train, config.train_images)
    if config.test_images is not None:
        test = first_items(test, config.test_images)
    in_shape = tuple(train[0][0].shape)
    space = BlocksSpace()
    jobs = [(f, i, s) for f in config.families for i in config.inits for s in range(config.seeds)
            if (f, i, s) not in done]
    layers_path = _keep_finished_layer_rows(out / "layers.csv", done)
    new_file = not path.is_file()
    with path.open("a", newline="") as handle, layers_path.open("a", newline="") as layer_handle:
        writer = csv.DictWriter(handle, fieldnames=_FIELDS)
        layer_writer = csv.DictWriter(layer_handle, fieldnames=_LAYER_FIELDS)
        if new_file:
            writer.writeheader()
        if layer_handle.tell() == 0:
            layer_writer.writeheader()
        for family, init, seed in tqdm(jobs, desc="init study", disable=not progress):
            start, params, trained, results = _one_run(
                space, config, family, init, seed, train, test, in_shape)
            layer_writer.writerows(_layer_rows((family, init, seed), params, trained, results))
            layer_handle.flush()  # before the run's rows: a finished run has its layers
            writer.writerows(_run_rows((family, init, seed), start, trained, results))
            handle.flush()
    return path


def _one_run(space: BlocksSpace, config: StudyConfig, family: str, init: str, seed: int,
             train: Dataset, test: Dataset, in_shape: tuple[int, ...]
             ) -> tuple[float, dict[str, torch.Tensor], nn.Module, list]:
    """Initialise one network, record its start accuracy, train it in float and quantize
    it post-training; returns (start top-1, initial params, trained net, PTQ results)."""
    spec = space.make_spec(family, config.depth, config.width)
    with seeded(seed):
        module = space.build(spec, in_shape[0], 10)
    params = initial_params(init, module, in_shape, seed)
    load_params(module, params)
    start = _batch_stat_accuracy(module, test, in_shape)
    trained = sgd_train(module, train, config.epochs, config.batch_size, config.lr, seed,
                        reinit=False)
    results = ptq_evaluate(trained, DataLoader(test, batch_size=256),
                           bits=((FLOAT_BITS, FLOAT_BITS), *_SETTINGS), input_shape=(1, *in_shape),
                           calibration_loader=DataLoader(train, batch_size=256), progress=False)
    return start, params, trained, results


def _run_rows(run: tuple[str, str, int], start: float, trained: nn.Module,
              results: list) -> list[dict[str, str]]:
    """The ``runs.csv`` rows of one run: one per quantized setting (``results[0]`` is FP32)."""
    family, init, seed = run
    weights = [p.detach() for n, p in trained.named_parameters() if p.dim() > 1]
    absmax = statistics.fmean(float(w.abs().max()) for w in weights)
    std = statistics.fmean(float(w.std()) for w in weights)
    fp32 = results[0].accuracy
    return [{"family": family, "init": init, "seed": seed, "setting": r.label,
             "start_fp32": f"{start:.4f}", "end_fp32": f"{fp32:.4f}",
             "accuracy": f"{r.accuracy:.4f}", "drop": f"{fp32 - r.accuracy:.4f}",
             "qmse_w": f"{r.qmse_w:.3e}", "qmse_a": f"{r.qmse_a:.3e}",
             "weight_absmax": f"{absmax:.4f}", "weight_std": f"{std:.4f}"}
            for r in results[1:]]


def _keep_finished_layer_rows(path: Path, done: set[tuple[str, str, int]]) -> Path:
    """Drop layer rows of runs that did not finish (they will run again); returns ``path``."""
    if not path.is_file():
        return path
    rows = list(csv.DictReader(path.open()))
    kept = [r for r in rows if (r["family"], r["init"], int(r["seed"])) in done]
    if len(kept) < len(rows):
        from ..fileio import atomic_path

        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=_LAYER_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
    return path


def _layer_rows(run: tuple[str, str, int], initial: dict[str, torch.Tensor], trained: nn.Module,
                results: Sequence) -> list[dict[str, str]]:
    """Per conv/linear weight: its range and spread at the start and after training, and
    its quantization MSE at each setting."""
    rows = []
    for name, param in trained.named_parameters():
        if param.dim() < 2:
            continue
        start, end = initial[name], param.detach()
        layer = name.rsplit(".", 1)[0]
        row = {"family": run[0], "init": run[1], "seed": run[2], "layer": name,
               "numel": param.numel(), "start_absmax": f"{float(start.abs().max()):.4g}",
               "start_std": f"{float(start.std()):.4g}", "min": f"{float(end.min()):.4g}",
               "max": f"{float(end.max()):.4g}", "absmax": f"{float(end.abs().max()):.4g}",
               "std": f"{float(end.std()):.4g}"}
        for r in results[1:]:
            if r.label in _LAYER_SETTINGS:
                row[f"qmse_w_{r.label}"] = f"{r.layers.get(layer, (float('nan'),))[0]:.3e}"
        rows.append(row)
    return rows


def study_table(path: str | Path, setting: str = "W4A4") -> str:
    """Markdown: accuracy drop (mean ± std over seeds, points) per family x initializer."""
    rows = [r for r in csv.DictReader(Path(path).open()) if r["setting"] == setting]
    families = list(dict.fromkeys(r["family"] for r in rows))
    inits = list(dict.fromkeys(r["init"] for r in rows))
    table = []
    for init in inits:
        cells = [init]
        for family in families:
            drops = [100 * float(r["drop"]) for r in rows if r["family"] == family and r["init"] == init]
            if not drops:
                cells.append("-")
            else:
                spread = statistics.stdev(drops) if len(drops) > 1 else 0.0
                cells.append(f"{statistics.fmean(drops):.1f} ± {spread:.1f}")
        table.append(cells)
    return markdown_table(["init \\ family"] + families, table)


def init_summary_table(path: str | Path) -> str:
    """Markdown: per initializer, top-1 (%, mean ± std over families and seeds) at the
    start, after float training, and after post-training quantization per setting."""
    rows = list(csv.DictReader(Path(path).open()))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    table = []
    for init in dict.fromkeys(r["init"] for r in rows):
        mine = [r for r in rows if r["init"] == init]
        runs = {(r["family"], r["seed"]): r for r in mine}.values()
        columns = [[float(r["start_fp32"]) for r in runs], [float(r["end_fp32"]) for r in runs]]
        columns += [[float(r["accuracy"]) for r in mine if r["setting"] == s] for s in settings]
        table.append([init] + [_mean_std(c) for c in columns])
    return markdown_table(["init", "start FP32", "trained FP32"] + settings, table)


def bn_family_table(path: str | Path, setting: str = "W4A4") -> str:
    """Markdown: per initializer, the mean over the runs of the block families with batch
    norm (:data:`~ghn_pyg.spaces.blocks.FAMILIES`) of top-1 (%) at the start, after float
    training and at ``setting``, and the drop at ``setting`` (points).

    Args:
        path: ``runs.csv`` of the study.
        setting: a quantization setting of the runs (``W8A8``, ``W4A4``, ...).

    Returns:
        The table: one row per initializer, with its number of runs.

    Raises:
        ValueError: ``path`` has no run of a BN family at ``setting``.
    """
    rows = [r for r in csv.DictReader(Path(path).open())
            if r["setting"] == setting and _with_bn(r["family"])]
    if not rows:
        raise ValueError(f"{path} has no run of a block family with batch norm at {setting}")
    table = []
    for init in dict.fromkeys(r["init"] for r in rows):
        mine = [r for r in rows if r["init"] == init]
        means = [statistics.fmean(100 * float(r[key]) for r in mine)
                 for key in ("start_fp32", "end_fp32", "accuracy", "drop")]
        table.append([init, str(len(mine))] + [f"{m:.1f}" for m in means])
    return markdown_table(["init", "runs", "start", "trained FP32", setting, f"{setting} drop"],
                          table)


def _with_bn(family: str) -> bool:
    """Whether ``family`` is a block family with batch norm."""
    return family in FAMILIES and FAMILIES[family][1]


def _mean_std(values: Sequence[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * spread:.1f}"


def write_report(path: str | Path, out: str | Path, qat_path: str | Path | None = None,
                 qat_target: float = 0.8) -> list[Path]:
    """``summary.md`` (accuracy per initializer, a drop table per setting, and the QAT
    table when ``qat_path`` is given) and, with matplotlib, a heatmap of the mean
    accuracy drop (family x initializer) per setting, ``accuracy_vs_bits.png`` (one
    line per initializer) and ``qat_curves.png``.

    Returns:
        The files written.
    """
    from ..fileio import atomic_path
    from .qat_study import plot_qat_curves, qat_table

    out = Path(out)
    rows = list(csv.DictReader(Path(path).open()))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    text = ["# Initialization study", "",
            "## Top-1 per initializer (%, mean ± std over families and seeds)", "",
            init_summary_table(path), ""]
    if any(_with_bn(r["family"]) and r["setting"] == "W4A4" for r in rows):
        text += ["## Block families with batch norm (top-1 %, mean over their runs)", "",
                 bn_family_table(path, "W4A4"), ""]
    for setting in settings:
        text += [f"## Accuracy drop at {setting} (points, mean ± std over seeds)", "",
                 study_table(path, setting), ""]
    if qat_path is not None:
        text += ["## QAT from each starting point (top-1 %, mean over architectures)", "",
                 qat_table(qat_path, qat_target), ""]
    written = []
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text("\n".join(text))
    written.append(out / "summary.md")
    plt = pyplot()
    if plt is None:
        return written
    families = list(dict.fromkeys(r["family"] for r in rows))
    inits = list(dict.fromkeys(r["init"] for r in rows))
    for setting in settings:
        grid = [[statistics.fmean([100 * float(r["drop"]) for r in rows if r["setting"] == setting
                                   and r["family"] == f and r["init"] == i] or [float("nan")])
                 for f in families] for i in inits]
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(families), 0.8 + 0.4 * len(inits)))
        image = ax.imshow(grid, cmap="magma_r", aspect="auto")
        ax.set_xticks(range(len(families)), families, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(inits)), inits, fontsize=8)
        ax.set_title(f"accuracy drop at {setting} (points)", fontsize=9)
        fig.colorbar(image, ax=ax)
        written.append(save_figure(fig, out / f"drop_{setting}.png", dpi=110))
    written.append(_plot_accuracy_vs_bits(plt, rows, out / "accuracy_vs_bits.png"))
    if qat_path is not None:
        written.append(plot_qat_curves(qat_path, out / "qat_curves.png", qat_target))
    return written


def _plot_accuracy_vs_bits(plt, rows: list[dict[str, str]], target: Path) -> Path:
    """Mean top-1 over families and seeds, FP32 then each weight-and-activation setting."""
    labels = ["FP32"] + [s for s in dict.fromkeys(r["setting"] for r in rows)
                         if s.startswith("W") and s[1:].split("A")[0] == s.split("A")[-1]]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for k, init in enumerate(dict.fromkeys(r["init"] for r in rows)):
        mine = [r for r in rows if r["init"] == init]
        means = [100 * statistics.fmean(float(r["end_fp32"]) for r in mine)]
        means += [100 * statistics.fmean(float(r["accuracy"]) for r in mine if r["setting"] == s)
                  for s in labels[1:]]
        ax.plot(range(len(labels)), means, marker="o", label=init, color=plt.cm.tab20(k % 20),
                linestyle="--" if init in GHN_INITS else "-")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("top-1 after float training + PTQ (%)")
    ax.set_title("accuracy vs bit-width per initializer (mean over families)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, target, dpi=110)
