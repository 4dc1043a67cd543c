"""Every results table and figure of the README: shipped GHN and GHN-QAT vs He init vs a
converged SGD reference on Fashion-MNIST, under both evaluation protocols.

Jobs (all on the full 10,000 test images by default; mean ± standard error over
architectures):

- protocols ``calibrated`` and ``ghn2`` (``ghn_pyg.train.protocol``; ``--protocols``
  picks), per-channel weights, bits 32/8/4/2, on the splits: the first ``--archs`` unseen ``test``
  architectures of the ``efficient`` space (seed 0), the first ``--ood-archs`` of the
  out-of-distribution ``wide``, ``deep`` and ``nobn`` splits, and ``--torchvision-archs``
  torchvision networks adapted to 1x28x28. On the test split the converged SGD
  reference (``ghn_pyg.train.reference``: default init, trained until validation
  accuracy stops improving, quantized post-training under the same protocol) is
  evaluated too; its accuracies are cached in ``OUT/sgd-reference/`` and reused
  across GHN versions.
- weight settings under ``calibrated`` on the test split, bits 8/4/2: per-tensor
  weights, and first/last layers at 8 bits with per-channel and per-tensor weights
  (``--no-settings-sgd`` leaves the SGD reference out of these blocks only).

Every (job, architecture) is cached in ``OUT/cache/``, each method under a key of its
own (a GHN's weights, an initializer's seed, the SGD recipe; every setting) and with
the kernels that computed it (``ghn_pyg.machine.compute_signature``), so the
command resumes where it stopped and a new GHN is evaluated without redoing the
others; ``--shard k/n`` lets n processes share the work (run once more without
``--shard`` to write the tables). ``--ghn NAME=CKPT`` evaluates other checkpoints (a
file or a shipped name) than the shipped two.
Writes ``OUT/results.csv``, ``OUT/tables.md`` (with the paired differences of every
later GHN to the first, e.g. GHN-QAT - GHN (float), per architecture) and the plots
into ``--figures``, and prints the total time. ``scripts/compare_results.py`` compares
two such ``results.csv`` (e.g. two GHN versions) the same way.

    python scripts/results_fmnist.py                      # docs/results/fmnist-v2, docs/figures
    python scripts/results_fmnist.py --device cuda --shard 0/4 & ...   # four processes
    python scripts/results_fmnist.py --ghn "GHN (float)=runs/ghn-fmnist/last.pt"
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

import torch  # noqa: E402

from ghn_pyg.commands.arguments import two_part  # noqa: E402
from ghn_pyg.data import load_images, sample_specs  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.spaces import TorchvisionSpace, get_space  # noqa: E402
from ghn_pyg.train.protocol import CALIB_ORDERS, PROTOCOLS, EvalProtocol  # noqa: E402
from ghn_pyg.train.reference import SGDRecipe, SGDReference  # noqa: E402
from ghn_pyg.fileio import atomic_path  # noqa: E402
from ghn_pyg.machine import compute_signature  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.train.results import SGD_METHOD, ResultJob, run_jobs, write_tables  # noqa: E402

#: The torchvision networks evaluated, lighter ones first (all of them take 1x28x28).
TORCHVISION = ("resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
               "squeezenet1_0", "regnet_x_400mf", "shufflenet_v2_x1_0", "mnasnet1_0",
               "resnet50")
SPLITS = ("test", "wide", "deep", "nobn", "torchvision")
#: The GHNs evaluated by default: method name -> shipped checkpoint.
SHIPPED = {"GHN (float)": "ghn-fmnist", "GHN-QAT": "ghn-qat-fmnist"}


def split_models(split: str, counts: dict[str, int]) -> list:
    """``(name, module)`` of the first architectures of ``split`` at 1x28x28."""
    if split == "torchvision":
        zoo = TorchvisionSpace()
        return [(name, zoo.build({"space": "torchvision", "name": name}, 1, 10))
                for name in TORCHVISION[:counts[split]]]
    space = get_space("efficient")
    return [(f"{split}-{i:02d}", space.build(s, 1, 10))
            for i, s in enumerate(sample_specs(space, split, counts[split], 0))]


def calibrated_protocol(args: argparse.Namespace) -> EvalProtocol:
    """The ``calibrated`` protocol the arguments describe."""
    return EvalProtocol("calibrated", args.bn_batches, args.calib_batches, args.calibration,
                        calib_order=args.calib_order)


def make_jobs(args: argparse.Namespace) -> list[ResultJob]:
    """The table blocks asked for by the arguments."""
    images = args.images or None
    calibrated = calibrated_protocol(args)
    jobs = []
    for protocol in (calibrated, EvalProtocol("ghn2")):
        if protocol.name in args.protocols:
            jobs += [ResultJob(split, protocol, sgd=split == "test" and args.sgd, images=images)
                     for split in args.splits.split(",")]
    if args.settings and "calibrated" in args.protocols:
        for per_channel, first_last in ((False, False), (True, True), (False, True)):
            jobs.append(ResultJob("test", calibrated, (8, 4, 2), per_channel, first_last,
                                  sgd=args.sgd and args.settings_sgd, images=images))
    return jobs


def write_sgd_summary(sgd: SGDReference, rows: list, path: Path) -> Path:
    """A markdown table of the SGD reference: epochs, best epoch and validation accuracy
    per architecture, and its test accuracy under each protocol at FP32 and W4A4."""
    names = sorted({r.arch for r in rows if r.method == SGD_METHOD})
    accuracy = {(r.arch, r.protocol, r.bits): r.accuracy for r in rows
                if r.method == SGD_METHOD and r.setting == "per-channel"}
    table = []
    for name, record in sgd.records(names).items():
        cells = [f"{100 * accuracy[key]:.1f}" if key in accuracy else "-"
                 for key in ((name, "calibrated", 32), (name, "calibrated", 4), (name, "ghn2", 4))]
        table.append([name, record["epochs"], record["best_epoch"],
                      f"{100 * float(record['best_val']):.1f}", *cells])
    text = (f"# SGD reference ({sgd.recipe.key()})\n\n"
            + markdown_table(["arch", "epochs", "best epoch", "val %", "test FP32 (calibrated)",
                              "test W4A4 (calibrated)", "test W4A4 (ghn2)"], table) + "\n")
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def complete_blocks(jobs: list[ResultJob], evaluate: Callable[..., list | None]
                    ) -> tuple[list | None, list[ResultJob]]:
    """The rows of the ``jobs`` whose pairs are all cached, and the other jobs.

    Args:
        jobs: the table blocks.
        evaluate: ``run_jobs`` over some jobs, reading the cache only (``progress=``).

    Returns:
        ``(rows, missing jobs)``; rows is None when no job is complete.
    """
    rows, missing = [], []
    for job in jobs:
        done = evaluate([job], progress=False)
        if done is None:
            missing.append(job)
        else:
            rows += done
    return (rows or None), missing


def ghn_arg(text: str) -> tuple[str, str]:
    """``"NAME=CKPT"`` -> ``(NAME, CKPT)``; argparse reports anything else as a usage error."""
    return two_part(text, "--ghn", "NAME=CKPT", "GHN-QAT=runs/qat/last.pt")


def protocols_arg(text: str) -> tuple[str, ...]:
    """``"calibrated,ghn2"`` -> the protocol names; argparse reports unknown ones."""
    names = tuple(name for name in text.split(",") if name)
    unknown = sorted(set(names) - set(PROTOCOLS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"--protocols takes a comma-separated subset of {', '.join(PROTOCOLS)}, got {text!r}")
    return names


def shard_arg(text: str) -> tuple[int, int]:
    """``"k/n"`` -> ``(k, n)``; argparse reports anything else as a usage error."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes k/n, e.g. 0/4, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"--shard k/n needs 0 <= k < n, got {text!r}")
    return k, n


def command_flags(argv: list[str]) -> list[str]:
    """The command's flags without ``--machine TEXT`` (it describes the run, not the job)."""
    out, skip = [], False
    for arg in argv:
        if skip or arg == "--machine" or arg.startswith("--machine="):
            skip = arg == "--machine"
            continue
        out.append(shlex.quote(arg))
    return out


def machine(device: str) -> str:
    """A short description of where this ran."""
    if device.startswith("cuda"):
        return f"one {compute_signature(device)}"
    return f"{torch.get_num_threads()} threads, {compute_signature(device)}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv``, default ``sys.argv[1:]``) as parsed arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ghn", type=ghn_arg, action="append", default=None,
                        metavar="NAME=CKPT",
                        help="a GHN to evaluate, as its method name and a checkpoint file or "
                             "shipped name (repeat it; default: "
                             + ", ".join(f"'{k}={v}'" for k, v in SHIPPED.items()) + ")")
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--protocols", type=protocols_arg, default=PROTOCOLS,
                        help="evaluation protocols, comma-separated (default: calibrated,ghn2; "
                             "the per-tensor / first-last-8-bit blocks need calibrated)")
    parser.add_argument("--archs", type=int, default=20, help="test architectures")
    parser.add_argument("--ood-archs", type=int, default=5, help="wide/deep/nobn architectures")
    parser.add_argument("--torchvision-archs", type=int, default=6,
                        choices=range(1, len(TORCHVISION) + 1), metavar=f"1..{len(TORCHVISION)}",
                        help="the first N of TORCHVISION")
    parser.add_argument("--images", type=int, default=0, help="test images (0: all 10,000)")
    parser.add_argument("--bn-batches", type=int, default=20)
    parser.add_argument("--calib-batches", type=int, default=8)
    parser.add_argument("--calibration", default="minmax", choices=("minmax", "percentile", "mse"))
    parser.add_argument("--calib-order", default=EvalProtocol.calib_order, choices=CALIB_ORDERS,
                        help="what the activation ranges are observed on "
                             "(EvalProtocol.calib_order; cached blocks are kept per order; "
                             "docs/results/fmnist was computed with quantized-bn)")
    parser.add_argument("--no-sgd", dest="sgd", action="store_false",
                        help="skip the converged SGD reference")
    parser.add_argument("--no-settings", dest="settings", action="store_false",
                        help="skip the per-tensor / first-last-8-bit blocks")
    parser.add_argument("--no-settings-sgd", dest="settings_sgd", action="store_false",
                        help="skip the SGD reference in the per-tensor / first-last-8-bit "
                             "blocks only (its trained weights are not kept in the repository, "
                             "so new settings would train it again)")
    parser.add_argument("--sgd-max-epochs", type=int, default=SGDRecipe.max_epochs)
    parser.add_argument("--sgd-patience", type=int, default=SGDRecipe.patience)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shard", type=shard_arg, default=(0, 1),
                        help="k/n: this process's share of the work (0 <= k < n)")
    parser.add_argument("--out", default="docs/results/fmnist-v2")
    parser.add_argument("--figures", default="docs/figures/fmnist-v2")
    parser.add_argument("--assemble-only", action="store_true",
                        help="only read the caches and write the tables if they are complete "
                             "(no evaluation or training)")
    parser.add_argument("--partial", action="store_true",
                        help="with --assemble-only: write the tables of the blocks (job and "
                             "split) whose pairs are all cached and list the others as not yet "
                             "computed, instead of writing nothing")
    parser.add_argument("--machine", default=None,
                        help="where the cached rows were computed, for the tables' caption "
                             "(default: this process's device)")
    parser.add_argument("--sgd-models", default="results/sgd-models",
                        help="where trained reference weights are kept (not committed)")
    args = parser.parse_args(argv)
    if args.partial and not args.assemble_only:
        parser.error("--partial only applies to --assemble-only (a run that computes "
                     "writes its tables when every pair is done)")
    return args


def main() -> None:
    args = parse_args()
    k, n = args.shard
    started = time.perf_counter()
    ghns = {name: GHN.load_any(ckpt) for name, ckpt in (args.ghn or SHIPPED.items())}
    test_images = load_images("fashion-mnist", "test")
    train_images = load_images("fashion-mnist", "train")
    val_images = load_images("fashion-mnist", "val")
    out = Path(args.out)
    counts = {"test": args.archs, "torchvision": args.torchvision_archs}
    counts.update({s: args.ood_archs for s in ("wide", "deep", "nobn")})
    recipe = SGDRecipe(max_epochs=args.sgd_max_epochs, patience=args.sgd_patience)
    sgd = SGDReference(out / "sgd-reference", train_images, val_images, recipe, args.device,
                       models=args.sgd_models)
    def evaluate(jobs: list[ResultJob], progress: bool = True) -> list | None:
        return run_jobs(jobs, lambda split: split_models(split, counts), (1, 28, 28), ghns,
                        ("he",), test_images, train_images, out / "cache", sgd, args.device,
                        shard=(k, n), compute=not args.assemble_only, progress=progress)

    if args.partial:
        rows, missing = complete_blocks(make_jobs(args), evaluate)
    else:
        rows, missing = evaluate(make_jobs(args)), []
    minutes = (time.perf_counter() - started) / 60
    if rows is None:
        left = "pairs are not cached yet" if args.assemble_only else \
            f"shard {k}/{n} done in {minutes:.1f} min; other shards still running or to run"
        print(left)
        return
    command = " ".join(["python scripts/results_fmnist.py", *command_flags(sys.argv[1:])])
    reference = f"SGD reference: {recipe.key()}; " if args.sgd else ""
    caption = (f"`{command}` ({args.machine or machine(args.device)}); architectures seed 0, "
               f"He init seed 0 + architecture index, {reference}"
               f"{len(test_images) if not args.images else args.images} test images.")
    if "calibrated" in args.protocols:
        caption += " " + calibrated_protocol(args).describe().replace(
            "protocol calibrated", "Calibrated protocol", 1) + "."
    if missing:
        caption += ("\n\nNot yet computed (these blocks are left out): "
                    + ", ".join(f"`{job.protocol.name}` {job.setting} {job.split}"
                                for job in missing) + ".")
    names = list(ghns)
    paths = write_tables(rows, out, args.figures, caption,
                         pairs=[(name, names[0]) for name in names[1:]])
    print(Path(paths["markdown"]).read_text())
    if args.sgd:  # with --no-sgd there is no reference to summarise
        paths["sgd"] = write_sgd_summary(sgd, rows, out / "sgd-reference.md")
        print(paths["sgd"].read_text())
    print(f"total {minutes:.1f} min; wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
