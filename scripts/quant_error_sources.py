"""Where a GHN's 4-bit accuracy goes: weights, activations, or the range calibration.

For each GHN and each of the first ``--archs`` validation architectures of the
``efficient`` space, the parameters predicted for the W4A4 graph are run

- at FP32 (the parameters predicted for the float graph, the FP32 column of the tables),
- with only the weights at 4 bits (activations float: ``W4 only``),
- with only the activations at 4 bits (weights float: ``A4 only``),
- at W4A4 under the calibrated protocol with min/max ranges (the tables' W4A4), with
  ranges from the ``percentile`` (99.99) and ``mse`` calibrations instead, and with the
  BN statistics re-estimated under the frozen min/max ranges (``bn after``),
- with only the activations, and at W4A4, under the ``float-first`` calibration order
  (BN statistics and ranges from the network with float activations, then BN under the
  frozen ranges; ``EvalProtocol.calib_order``),

on ``--images`` validation images (Fashion-MNIST's held-out training images, never the
test split), BN statistics from ``--bn-batches`` and activation ranges from
``--calib-batches`` training batches of 256. The same predicted parameters enter every
quantized column, so the differences between columns are the error of each source alone.

With ``--cumulative I`` (repeatable) it also follows validation architecture ``I`` layer
by layer: the activations of its first k quantizable layers at 4 bits (weights and the
other activations float, the same W4A4 prediction, ranges calibrated anew for each k),
for every k, so the layer where the accuracy collapses shows even when no single layer
costs much alone (``OUT/cumulative-val-II.md``, with the step of the largest drop per
GHN). ``--cumulative-only`` skips the table of sources.

Prints and writes ``OUT/sources.md`` (mean ± standard error over architectures, and the
mean paired loss of each column to FP32) and ``OUT/sources.csv`` (one row per GHN,
architecture and column)::

    python scripts/quant_error_sources.py --ghn ghn-fmnist --ghn ghn-qat-fmnist \\
        --archs 16 --images 2000 --out docs/results/quant-error-sources
"""

from __future__ import annotations

import argparse
import csv
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ghn_pyg.data import load_images, sample_specs  # noqa: E402
from ghn_pyg.fileio import atomic_path  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.quant import QuantSpec, annotate  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.spaces import get_space  # noqa: E402
from ghn_pyg.train.evaluate import EvalSetup, ModuleArchs  # noqa: E402
from ghn_pyg.train.protocol import EvalProtocol  # noqa: E402
from ghn_pyg.train.tables import format_accuracy, mean_se  # noqa: E402

#: Each column: (weight bits, activation bits, calibration method, BN after calibration,
#: calibration order).
COLUMNS: dict[str, tuple[int, int, str, bool, str]] = {
    "FP32": (32, 32, "minmax", False, "quantized-bn"),
    "W4 only": (4, 32, "minmax", False, "quantized-bn"),
    "A4 only": (32, 4, "minmax", False, "quantized-bn"),
    "W4A4": (4, 4, "minmax", False, "quantized-bn"),
    "W4A4 percentile": (4, 4, "percentile", False, "quantized-bn"),
    "W4A4 mse": (4, 4, "mse", False, "quantized-bn"),
    "W4A4 bn after": (4, 4, "minmax", True, "quantized-bn"),
    "A4 float-first": (32, 4, "minmax", False, "float-first"),
    "W4A4 float-first": (4, 4, "minmax", False, "float-first"),
}


def column_accuracies(ghn: GHN, archs: ModuleArchs, index: int,
                      setups: dict[str, EvalSetup]) -> dict[str, float]:
    """``{column: top-1 fraction}`` of ``ghn``'s predictions for architecture ``index``.

    Args:
        ghn: the GHN (eval mode).
        archs: the validation networks.
        index: which one.
        setups: one :class:`EvalSetup` per column (their protocols differ).

    Returns:
        The accuracy of each column of :data:`COLUMNS`.
    """
    graph, module = archs[index], archs.build_module(index)
    runner = next(iter(setups.values())).runner(module, archs.in_shape)
    with torch.no_grad():
        float_params = ghn(graph)[0]
        w4a4_params = ghn(annotate(graph, QuantSpec.uniform(4)))[0]
    out = {}
    for column, (w_bits, a_bits, *_) in COLUMNS.items():
        runner.set_bits(QuantSpec(w_bits=w_bits, a_bits=a_bits))
        params = float_params if column == "FP32" else w4a4_params
        out[column] = setups[column].top1(runner, params)
    return out


def cumulative_activation_accuracies(ghn: GHN, archs: ModuleArchs, index: int,
                                     setup: EvalSetup) -> list[tuple[str, float]]:
    """``[(layer, top-1 fraction)]``: architecture ``index`` run with the W4A4 prediction
    of ``ghn``, float weights and the input activations of the layers up to and
    including ``layer`` (in execution order) at 4 bits, the others float; the first
    entry, ``("(none)", ...)``, runs everything float."""
    graph, module = archs[index], archs.build_module(index)
    runner = setup.runner(module, archs.in_shape)
    with torch.no_grad():
        params = ghn(annotate(graph, QuantSpec.uniform(4)))[0]
    names = list(runner.layers)
    runner.set_bits(QuantSpec())
    out = [("(none)", setup.top1(runner, params))]
    for k, name in enumerate(names, 1):
        runner.set_bits(QuantSpec(layers={n: (32, 4) for n in names[:k]}))
        out.append((name, setup.top1(runner, params)))
    return out


def paired_loss(table: dict[str, list[float]], column: str) -> tuple[float, float]:
    """Mean and standard error (in points) of FP32 minus ``column`` over architectures."""
    return mean_se([100 * (a - b) for a, b in zip(table["FP32"], table[column])])


def sources_table(results: dict[str, dict[str, list[float]]]) -> str:
    """Markdown: each GHN's mean accuracy per column, then its loss to FP32 per column."""
    header = ["GHN", *COLUMNS]
    accuracy_rows, loss_rows = [], []
    for name, table in results.items():
        accuracy_rows.append([name] + [format_accuracy(*mean_se(table[c]), len(table[c]))
                                       for c in COLUMNS])
        loss_rows.append([name, ""] + ["%.1f ± %.1f" % paired_loss(table, c)
                                       for c in list(COLUMNS)[1:]])
    return (markdown_table(header, accuracy_rows)
            + "\n\nLoss to FP32 (points, mean ± standard error of the paired difference):\n\n"
            + markdown_table(header, loss_rows))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ghn", action="append", default=None,
                        help="a shipped GHN name or a checkpoint (repeatable; default: "
                             "ghn-fmnist and ghn-qat-fmnist)")
    parser.add_argument("--archs", type=int, default=16, help="validation architectures")
    parser.add_argument("--images", type=int, default=2000, help="validation images")
    parser.add_argument("--bn-batches", type=int, default=4)
    parser.add_argument("--calib-batches", type=int, default=2)
    parser.add_argument("--val-seed", type=int, default=3,
                        help="seed of the train/validation image split")
    parser.add_argument("--data", default="fashion-mnist",
                        help="image data (fashion-mnist; synthetic for a smoke test)")
    parser.add_argument("--data-root", default=None, help="the image data's folder")
    parser.add_argument("--cumulative", type=int, action="append", default=[], metavar="I",
                        help="also quantize validation architecture I's activations layer "
                             "by layer, cumulatively (OUT/cumulative-val-II.md; repeatable)")
    parser.add_argument("--cumulative-only", action="store_true",
                        help="only the --cumulative runs, not the table of sources")
    parser.add_argument("--out", type=Path, default=Path("docs/results/quant-error-sources"))
    args = parser.parse_args(argv)
    for key in ("archs", "images", "bn_batches", "calib_batches"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    for index in args.cumulative:
        if not 0 <= index < args.archs:
            parser.error(f"--cumulative must name one of the {args.archs} validation "
                         f"architectures (0..{args.archs - 1}), got {index}")
    if args.cumulative_only and not args.cumulative:
        parser.error("--cumulative-only needs at least one --cumulative I")
    args.ghn = args.ghn or ["ghn-fmnist", "ghn-qat-fmnist"]
    return args


def cumulative_report(arch: str, cumulative: dict[str, list[tuple[str, float]]],
                      protocol: str) -> str:
    """Markdown: per step k, each GHN's accuracy with layers 1..k's activations at 4 bits
    (step 0: none, the W4A4 prediction run float), then each GHN's largest one-step drop.

    Args:
        arch: the architecture's name.
        cumulative: ``{GHN: [(layer, top-1 fraction) for k = 0..L]}`` (step 0's layer is
            ``"(none)"``).
        protocol: the protocol's description.
    """
    layers = [layer for layer, _ in next(iter(cumulative.values()))]
    rows = [[k, layer] + [f"{100 * cumulative[n][k][1]:.1f}" for n in cumulative]
            for k, layer in enumerate(layers)]
    drops = []
    for name, steps in cumulative.items():
        k = max(range(1, len(steps)), key=lambda j: steps[j - 1][1] - steps[j][1])
        drops.append(f"- {name}: {100 * (steps[k - 1][1] - steps[k][1]):.1f} points at "
                     f"k = {k} (`{steps[k][0]}`); {100 * (steps[0][1] - steps[-1][1]):.1f} "
                     "in all")
    return (f"# `{arch}`: activations at 4 bits up to each layer\n\nThe W4A4 prediction "
            "with float weights; the input activations of layers 1..k at 4 bits, the rest "
            f"float; {protocol}; top-1 %.\n\n"
            + markdown_table(["k", "layer", *cumulative], rows)
            + "\n\nLargest one-step drop:\n\n" + "\n".join(drops) + "\n")


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[float]]]:
    """Run the decomposition; returns ``{GHN: {column: [accuracy per architecture]}}``
    (empty with ``--cumulative-only``)."""
    args = parse_args(argv)
    start = time.perf_counter()
    space = get_space("efficient")
    archs = ModuleArchs([(f"val-{i:02d}", space.build(s, 1, 10))
                         for i, s in enumerate(sample_specs(space, "val", args.archs, 0))],
                        (1, 28, 28))
    images = load_images(args.data, "val", args.data_root, seed=args.val_seed)
    train = load_images(args.data, "train", args.data_root, seed=args.val_seed)
    # the columns name their order; the base (captions, --cumulative) is the earlier
    # default, whose failures the script was written to take apart
    base = EvalProtocol("calibrated", args.bn_batches, args.calib_batches,
                        calib_order="quantized-bn")
    first = EvalSetup.create(images, train, base, args.images)
    setups = {column: EvalSetup(base.replace(calib_method=method, bn_after_calib=after,
                                             calib_order=order),
                                first.calibration, first.test, first.device)
              for column, (_, _, method, after, order) in COLUMNS.items()}
    results: dict[str, dict[str, list[float]]] = {}
    per_arch = []
    cumulative: dict[int, dict[str, list[tuple[str, float]]]] = {i: {} for i in args.cumulative}
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.ghn:
        ghn = GHN.load_any(name).eval()
        if not args.cumulative_only:
            table = results.setdefault(name, {c: [] for c in COLUMNS})
            for i in tqdm(range(len(archs)), desc=f"{name}"):
                accuracies = column_accuracies(ghn, archs, i, setups)
                for column, value in accuracies.items():
                    table[column].append(value)
                    per_arch.append([name, archs[i].name, column, value])
        for i in tqdm(args.cumulative, desc=f"{name} layer by layer", disable=not args.cumulative):
            cumulative[i][name] = cumulative_activation_accuracies(ghn, archs, i,
                                                                   setups["A4 only"])
    for i, by_ghn in cumulative.items():
        text = cumulative_report(archs[i].name, by_ghn, base.describe())
        with atomic_path(args.out / f"cumulative-{archs[i].name}.md") as tmp:
            tmp.write_text(text)
        print(text)
    if args.cumulative_only:
        return results
    text = (f"# Sources of the 4-bit loss\n\n{args.archs} `efficient` validation "
            f"architectures, {args.images} validation images (val seed {args.val_seed}), "
            f"{base.describe()}; top-1 %, mean ± standard error over architectures.\n\n"
            + sources_table(results)
            + f"\n\nCommand: `python {' '.join(map(shlex.quote, sys.argv))}` on "
            f"{platform.processor() or 'CPU'}, {time.perf_counter() - start:.0f} s.\n")
    with atomic_path(args.out / "sources.md") as tmp:
        tmp.write_text(text)
    with atomic_path(args.out / "sources.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ghn", "arch", "column", "accuracy"])
        writer.writerows(per_arch)
    print(text)
    return results


if __name__ == "__main__":
    main()
