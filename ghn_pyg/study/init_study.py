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
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..inits import INITIALIZERS, init_params
from ..quant.ptq import ptq_evaluate
from ..quant.runner import quantize
from ..report import markdown_table
from ..spaces.blocks import FAMILIES, BlocksSpace
from ..train.evaluate import sgd_train

__all__ = ["StudyConfig", "PRESETS", "run_study", "study_table", "GHN_INITS"]

#: Initializers that come from a shipped GHN instead of a random draw.
GHN_INITS = {"ghn": "ghn-fmnist", "ghn-qat": "ghn-qat-fmnist"}
_SETTINGS: tuple[tuple[int, int], ...] = ((8, 8), (4, 4), (2, 2), (8, 32))
_FIELDS = ["family", "init", "seed", "setting", "start_fp32", "end_fp32", "accuracy", "drop",
           "qmse_w", "qmse_a", "weight_absmax", "weight_std"]


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

    def validate(self) -> None:
        """Raise ``ValueError`` naming an unknown family or initializer."""
        bad = [f for f in self.families if f not in FAMILIES]
        if bad:
            raise ValueError(f"unknown block family {bad[0]!r}; use {', '.join(FAMILIES)}")
        bad = [i for i in self.inits if i not in INITIALIZERS and i not in GHN_INITS]
        if bad:
            raise ValueError(f"unknown initializer {bad[0]!r}; use "
                             f"{', '.join(list(INITIALIZERS) + list(GHN_INITS))}")


#: ``smoke`` runs in about a minute (tested); ``full`` is the study of the README.
PRESETS: dict[str, StudyConfig] = {
    "smoke": StudyConfig(families=("plain", "dwsep"), inits=("he_normal", "orthogonal"), seeds=1,
                         depth=1, width=8, epochs=1, train_images=1024, test_images=512),
    "full": StudyConfig(),
}


def _initial_params(name: str, module: nn.Module, seed: int,
                    in_shape: Sequence[int]) -> dict[str, torch.Tensor]:
    if name in GHN_INITS:
        from ..nn.ghn import GHN

        return GHN.from_pretrained(GHN_INITS[name]).predict(module, (1, *in_shape))
    return init_params(name, module, seed)


@torch.no_grad()
def _batch_stat_accuracy(module: nn.Module, data: Dataset, in_shape: Sequence[int]) -> float:
    runner = quantize(module, None, (1, *in_shape), bn="batch")
    correct = total = 0
    for x, y in DataLoader(data, batch_size=256):
        correct += int((runner(x).argmax(1) == y).sum())
        total += y.numel()
    return correct / total


def run_study(config: StudyConfig, train: Dataset, test: Dataset, out: str | Path,
              progress: bool = True) -> Path:
    """Run every (family, initializer, seed) not yet in ``out/runs.csv``.

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
        train = Subset(train, range(min(config.train_images, len(train))))
    if config.test_images is not None:
        test = Subset(test, range(min(config.test_images, len(test))))
    in_shape = tuple(train[0][0].shape)
    space = BlocksSpace()
    jobs = [(f, i, s) for f in config.families for i in config.inits for s in range(config.seeds)
            if (f, i, s) not in done]
    new_file = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_FIELDS)
        if new_file:
            writer.writeheader()
        for family, init, seed in tqdm(jobs, desc="init study", disable=not progress):
            spec = space.make_spec(family, config.depth, config.width)
            torch.manual_seed(seed)
            module = space.build(spec, in_shape[0], 10)
            params = _initial_params(init, module, seed, in_shape)
            with torch.no_grad():
                for name, param in module.named_parameters():
                    param.copy_(params[name])
            start = _batch_stat_accuracy(module, test, in_shape)
            trained = sgd_train(module, train, config.epochs, config.batch_size, config.lr, seed,
                                reinit=False)
            loader = DataLoader(test, batch_size=256)
            results = ptq_evaluate(trained, loader, bits=((32, 32), *_SETTINGS),
                                   input_shape=(1, *in_shape), calibration_loader=DataLoader(
                                       train, batch_size=256), progress=False)
            weights = [p.detach() for n, p in trained.named_parameters() if p.dim() > 1]
            absmax = statistics.fmean(float(w.abs().max()) for w in weights)
            std = statistics.fmean(float(w.std()) for w in weights)
            fp32 = results[0].accuracy
            for r in results[1:]:
                writer.writerow({"family": family, "init": init, "seed": seed, "setting": r.label,
                                 "start_fp32": f"{start:.4f}", "end_fp32": f"{fp32:.4f}",
                                 "accuracy": f"{r.accuracy:.4f}", "drop": f"{fp32 - r.accuracy:.4f}",
                                 "qmse_w": f"{r.qmse_w:.3e}", "qmse_a": f"{r.qmse_a:.3e}",
                                 "weight_absmax": f"{absmax:.4f}", "weight_std": f"{std:.4f}"})
            handle.flush()
    return path


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


def write_report(path: str | Path, out: str | Path) -> list[Path]:
    """``summary.md`` (a drop table per setting) and, with matplotlib, one heatmap of the
    mean accuracy drop (family x initializer) per setting and an accuracy-vs-bits plot.

    Returns:
        The files written.
    """
    from ..fileio import atomic_path

    out = Path(out)
    rows = list(csv.DictReader(Path(path).open()))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    text = ["# Initialization study", ""]
    for setting in settings:
        text += [f"## Accuracy drop at {setting} (points, mean ± std over seeds)", "",
                 study_table(path, setting), ""]
    written = []
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text("\n".join(text))
    written.append(out / "summary.md")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
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
        fig.tight_layout()
        target = out / f"drop_{setting}.png"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        written.append(target)
    return written
