"""A/B trials of GHN recipes, judged on validation architectures and images.

Suite ``qat`` (default): every arm starts from the same float GHN (default: the shipped
``ghn-fmnist``) and trains for the same number of steps with the shipped GHN-QAT recipe
(8 networks of 64 images per step, AdamW at 3e-4 with cosine decay and 30 warm-up
steps, global clip 2, seed 3, architectures of ``--graphs``); an arm adds its own
``ghn-pyg train`` flags (:data:`ARMS`). Only one thing changes between ``old`` (the
recipe the shipped GHN-QAT was trained with) and each single-change arm; ``all``
combines them. Differences are taken to the float GHN the arms start from.

Suite ``train-bn``: both arms start from the float GHN with the shipped GHN-QAT's
campaign recipe (:data:`CAMPAIGN_BASE`: AdamW at 3e-5, bits 32:1,8:1,4:2,2:1, ranges
calibrated on 128 images each step, seed 4) and differ in how the networks normalise
in training: each batch's own statistics (``batch``, the shipped recipe) or BN
statistics estimated on the range images and the ranges frozen, as the ``calibrated``
protocol deploys the networks in its default float-first order (``calibrated``,
``--train-bn calibrated``) or in the quantized-bn order (``calibrated-quantized-bn``);
differences are taken to ``batch``.

Suite ``act-noise``: the same start and recipe as ``train-bn``, with the training and
validation images split by seed 3 (as the float GHN was trained: its validation images
are unseen), and a penalty on the quantization-noise share of the quantized networks'
activations (``--act-noise`` 3 or 30) against none (``batch``, the shipped recipe);
differences are taken to ``batch``.

Suite ``ghn2-fidelity``: float GHNs trained from scratch (AdamW at 1e-3, 50 warm-up
steps, clip 5, seed 3) with this library's output ranges and message MLPs
(``library``) or with one of GHN-2's reference choices (:data:`FIDELITY_ARMS`: biases
``tanh(0.2 p)``, norm weights ``2 sigmoid(0.5 p)``, a ReLU ending the message MLPs);
differences are taken to ``library``.

Suite ``mixture``: float GHNs fine-tuned from ``--init`` (AdamW at 1e-4, 20 warm-up
steps, clip 5, seed 3, the campaign's validation-image seed 3) on the campaign's
mixture of ``efficient`` and DARTS ``cells`` architectures drawn 9:1 (``base``), or
with ``families`` architectures (the torchvision zoo's block families; the roots of
both are ``--mixture-roots``) added, drawn 6:1:3 (``families``); evaluated on the
validation architectures of both ``efficient`` and ``families``; differences are taken
to ``base``.

Then the reference and every arm are evaluated on the first ``--val-archs`` validation
architectures of the ``efficient`` space (seed 0; a suite's ``val_spaces`` may add
other spaces, each in its own table) with ``--images`` validation images
(Fashion-MNIST's held-out training images, never the test split) under the
``calibrated`` protocol (BN statistics and activation ranges from training images),
per-channel weights, bits 32/8/4/2. Prints and writes ``OUT/ab.md`` (mean ± standard
error over architectures, and each arm's difference to the float GHN) and
``OUT/ab.csv``.

Runs resume (``OUT/runs/ARM``) and finished ones are reused; evaluations are cached
per arm and setting in ``OUT/cache``. Train arms in parallel with separate processes
(``--arms old,all --train-only`` in each), then run once without ``--train-only``.

    python scripts/qat_ab.py --steps 300 --out docs/results/qat-ab
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import re
import shlex
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

import torch  # noqa: E402

from ghn_pyg.data import load_images, sample_specs  # noqa: E402
from ghn_pyg.fileio import atomic_path  # noqa: E402
from ghn_pyg.graph.bits import EVAL_BITS, parse_bits  # noqa: E402
from ghn_pyg.machine import compute_signature  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.nn.ghn import PRETRAINED_DIR  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.spaces import get_space  # noqa: E402
from ghn_pyg.train.config import add_config_arguments, config_from_args  # noqa: E402
from ghn_pyg.train.evaluate import EvalRow, ModuleArchs, evaluate_split  # noqa: E402
from ghn_pyg.train.tables import format_accuracy, mean_se, summarize  # noqa: E402
from ghn_pyg.train.protocol import CALIB_ORDERS, EvalProtocol  # noqa: E402
from ghn_pyg.train.results import ghn_fingerprint, read_cache, write_cache  # noqa: E402
from ghn_pyg.train.trainer import Trainer  # noqa: E402

#: The shipped GHN-QAT's recipe, common to every arm.
BASE = ("--lr 3e-4 --warmup 30 --grad-clip 2 --seed 3 --meta-batch 8 --batch-size 64 "
        "--log-every 10 --ckpt-every 50")
#: Each arm's own flags: the old recipe, one change at a time, and the combinations
#: (``--range-images`` is 0, each batch's own ranges, unless given).
ARMS = {
    "old": "--bits 8,4,2 --no-seed-bits --no-collapse-guard --net-grad-clip 0",
    "seed-bits": "--bits 8,4,2 --seed-bits --no-collapse-guard --net-grad-clip 0",
    "collapse-guard": "--bits 8,4,2 --no-seed-bits --collapse-guard --net-grad-clip 0",
    "net-clip": "--bits 8,4,2 --no-seed-bits --no-collapse-guard --net-grad-clip 5",
    "fp32-in-mix": "--bits 32,8,4,2 --no-seed-bits --no-collapse-guard --net-grad-clip 0",
    "calib-ranges": "--bits 8,4,2 --no-seed-bits --no-collapse-guard --net-grad-clip 0 "
                    "--range-images 128",
    "all": "--bits 32,8,4,2 --seed-bits --collapse-guard --net-grad-clip 5",
    "all+calib-ranges": "--bits 32,8,4,2 --seed-bits --collapse-guard --net-grad-clip 5 "
                        "--range-images 128",
    # aimed at W4A4, each one change to all+calib-ranges
    "all+calib+w4-weighted": "--bits 32:1,8:1,4:2,2:1 --seed-bits --collapse-guard "
                             "--net-grad-clip 5 --range-images 128",
    "all+calib+first-last-8bit": "--bits 32,8,4,2 --seed-bits --collapse-guard "
                                 "--net-grad-clip 5 --range-images 128 --first-last-8bit",
    "all+calib+w4-heavy": "--bits 32:1,8:1,4:4,2:1 --seed-bits --collapse-guard "
                          "--net-grad-clip 5 --range-images 128",
}
#: The shipped GHN-QAT's recipe from today's float GHN (its ``training_settings``),
#: without the DARTS-cell mixture: the networks' normalisation in training changes.
CAMPAIGN_BASE = ("--lr 3e-5 --warmup 30 --grad-clip 2 --seed 4 --meta-batch 8 --batch-size 64 "
                 "--bits 32:1,8:1,4:2,2:1 --seed-bits --collapse-guard --net-grad-clip 5 "
                 "--range-images 128 --log-every 10 --ckpt-every 50")
#: How the networks normalise in training: each batch's statistics, or deployed as the
#: calibrated protocol does in its float-first order (``calibrated``) or in the earlier
#: quantized-bn order (the committed 2026-11 A/B's ``calibrated`` arm).
TRAIN_BN_ARMS = {"batch": "--train-bn batch", "calibrated": "--train-bn calibrated",
                 "calibrated-quantized-bn": "--train-bn calibrated-quantized-bn"}
#: The activation-noise penalty's weights, against the shipped recipe (``batch``).
ACT_NOISE_ARMS = {"batch": "", "act-noise-3": "--act-noise 3", "act-noise-30": "--act-noise 30"}
#: Float training from scratch, common to every GHN-2 fidelity arm.
FLOAT_BASE = ("--lr 1e-3 --warmup 50 --grad-clip 5 --seed 3 --meta-batch 8 --batch-size 64 "
              "--log-every 10 --ckpt-every 50")
#: GHN-2's reference choices, one at a time and together.
FIDELITY_ARMS = {
    "library": "",
    "bias-tanh0.2": "--bias-range 1 --bias-slope 0.2",
    "norm-sigmoid0.5": "--norm-slope 0.5",
    "message-relu": "--message-relu",
    "ghn2-all": "--bias-range 1 --bias-slope 0.2 --norm-slope 0.5 --message-relu",
}
#: The default training roots of the mixture suite's ``{cells}`` and ``{families}``
#: (``--mixture-roots``; build them with ``ghn-pyg make-dataset --space cells --split train
#: --size 1000 --root graphs/cells-fmnist`` and ``--space families --size 2000 --root
#: graphs/families-fmnist``).
MIXTURE_ROOTS = "graphs/cells-fmnist,graphs/families-fmnist"
#: Float fine-tuning from the shipped float GHN, common to the mixture arms.
MIXTURE_BASE = ("--lr 1e-4 --warmup 20 --grad-clip 5 --seed 3 --meta-batch 8 --batch-size 64 "
                "--log-every 10 --ckpt-every 50")
#: The campaign's mixture against one that adds the zoo families.
MIXTURE_ARMS = {
    "base": "--mix-graphs {cells} --mix-weights 9,1",
    "families": "--mix-graphs {cells},{families} --mix-weights 6,1,3",
}
FLOAT = "float GHN (start)"
BITS = EVAL_BITS


@dataclass(frozen=True)
class Suite:
    """A family of arms: common flags, each arm's own, what differences are taken to
    (``reference``: an arm's name, or ``None`` for the GHN the arms start from) and
    whether the arms start from ``--init`` (which is then evaluated too); ``val_seed``
    splits the training images into training and validation ones, for the arms'
    training and for the evaluation (3 for the campaign's GHNs, which trained with it)."""

    title: str
    base: str
    arms: dict[str, str]
    reference: str | None
    from_init: bool = True
    val_seed: int = 0
    val_spaces: tuple[str, ...] = ("efficient",)


SUITES = {
    "qat": Suite("GHN-QAT A/B", BASE, ARMS, None),
    "train-bn": Suite("GHN-QAT normalisation in training A/B", CAMPAIGN_BASE, TRAIN_BN_ARMS,
                      "batch"),
    "act-noise": Suite("GHN-QAT activation-noise penalty A/B", CAMPAIGN_BASE, ACT_NOISE_ARMS,
                       "batch", val_seed=3),
    "ghn2-fidelity": Suite("GHN-2 fidelity A/B (float, from scratch)", FLOAT_BASE,
                           FIDELITY_ARMS, "library", from_init=False),
    "mixture": Suite("Training-mixture A/B (float fine-tuning)", MIXTURE_BASE, MIXTURE_ARMS,
                     "base", val_seed=3, val_spaces=("efficient", "families")),
}


def arm_config(name: str, args: argparse.Namespace):
    """The :class:`TrainConfig` of arm ``name`` of ``args.suite``."""
    suite = SUITES[args.suite]
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    flags = shlex.split(f"{suite.base} {arm_flags(name, args)}") + [
        "--graphs", args.graphs, "--num-archs", str(args.num_archs), "--steps", str(args.steps),
        "--out", str(args.out / "runs" / name), "--device", args.device,
        "--val-seed", str(suite.val_seed)]
    if suite.from_init:
        flags += ["--init-ckpt", args.init]
    if args.data_root:
        flags += ["--data-root", args.data_root]
    return config_from_args(parser.parse_args(flags))


def arm_flags(name: str, args: argparse.Namespace) -> str:
    """Arm ``name``'s own flags, with the mixture roots filled in."""
    cells, families = args.mixture_roots.split(",")
    return SUITES[args.suite].arms[name].format(cells=cells, families=families)


def train_arm(name: str, args: argparse.Namespace) -> Path:
    """Train (or resume, or reuse) arm ``name``; returns its checkpoint."""
    config = arm_config(name, args)
    path = Path(config.out) / "last.pt"
    resume = path.is_file()
    trainer = Trainer(config, resume=resume)
    if trainer.step < config.steps:
        print(f"[{name}] training from step {trainer.step} to {config.steps}", flush=True)
        trainer.train()
    return path


def val_models(count: int, space_name: str = "efficient") -> list:
    """``(name, module)`` of the first ``count`` validation architectures of a space at
    1x28x28 (named ``val-NN``, prefixed by the space unless it is ``efficient``)."""
    space = get_space(space_name)
    prefix = "" if space_name == "efficient" else f"{space_name}-"
    return [(f"{prefix}val-{i:02d}", space.build(s, 1, 10))
            for i, s in enumerate(sample_specs(space, "val", count, 0))]


def evaluate(name: str, ghn: GHN, args: argparse.Namespace, archs, images, train,
             protocol_name: str = "calibrated", first_last_8bit: bool = False,
             space: str = "efficient") -> list[EvalRow]:
    """Rows of ``ghn`` on ``space``'s validation architectures ``archs`` under
    ``protocol_name`` (cached by weights and settings); with ``first_last_8bit`` the
    first and last layers stay at 8 bits below 8 bits."""
    protocol = (EvalProtocol("calibrated", args.bn_batches, args.calib_batches,
                             calib_order=args.calib_order)
                if protocol_name == "calibrated" else EvalProtocol(protocol_name))
    setting = "-first-last-8bit" if first_last_8bit else ""
    setting += "" if space == "efficient" else f"-{space}"
    order = "-floatfirst" if protocol_name == "calibrated" and args.calib_order == "float-first" \
        else ""
    key = (f"{ghn_fingerprint({name: ghn})}-{protocol.key()}{setting}-{args.val_archs}-"
           f"{args.images}")
    if args.bits != BITS:
        key += "-bits" + ",".join(map(str, args.bits))
    slug = re.sub(r"[^\w+.-]+", "_", name).strip("_")
    cache = args.out / "cache" / f"{slug}-{protocol.name}{order}{setting}.csv"
    rows = read_cache(cache, key)
    if rows is None:
        rows = evaluate_split(archs, images, {name: ghn}, args.bits, baselines=(),
                              max_images=args.images, train_images=train, protocol=protocol,
                              first_last_8bit=first_last_8bit, device=args.device,
                              progress=True)
        write_cache(cache, key, rows, compute_signature(args.device))
    return rows


def ab_table(rows: list[EvalRow], methods: list[str], reference: str = FLOAT,
             bits: tuple[int, ...] = BITS) -> str:
    """Markdown: accuracy per method and bit-width, and the difference to ``reference``."""
    stats = summarize(rows)
    per_arch = {(r.method, r.bits, r.arch): r.accuracy for r in rows}
    header = ["method"] + [f"{'FP32' if b == 32 else f'W{b}A{b}'}" for b in bits] + \
        [f"Δ {'FP32' if b == 32 else f'W{b}A{b}'}" for b in bits]
    table = []
    for method in methods:
        cells = [format_accuracy(*stats[(method, b)]) if (method, b) in stats else "-" for b in bits]
        for b in bits:
            diffs = [100 * (per_arch[(method, b, a)] - per_arch[(reference, b, a)])
                     for (m, bb, a) in per_arch
                     if m == method and bb == b and (reference, b, a) in per_arch]
            if diffs and method != reference:
                mean, se = mean_se(diffs)
                cells.append(f"{mean:+.1f} ± {se:.1f}" if len(diffs) > 1 else f"{mean:+.1f}")
            else:
                cells.append("")
        table.append([method] + cells)
    return markdown_table(header, table)


def training_table(out: Path, arms: list[str]) -> str:
    """Markdown: per arm, from its ``metrics.csv``, the GHN's gradient norm (median and
    largest logged) and per bit-width the median network gradient norm and the mean
    loss over the last 100 logged steps."""
    bits = (32, 8, 4, 2)
    header = ["arm", "GHN grad median", "GHN grad max"] + \
        [f"net grad {b}b" for b in bits] + [f"loss {b}b (end)" for b in bits]
    table = []
    for arm in arms:
        with open(out / "runs" / arm / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))

        def values(key: str, last: int | None = None) -> list[float]:
            picked = [float(r[key]) for r in rows[-(last or len(rows)):] if r.get(key)]
            return [v for v in picked if math.isfinite(v)]

        grads = values("grad_norm")
        cells = [arm, f"{statistics.median(grads):.3g}", f"{max(grads):.3g}"]
        for b in bits:
            net = values(f"param_grad_{b}bit")
            cells.append(f"{statistics.median(net):.3g}" if net else "-")
        for b in bits:
            end = values(f"loss_{b}bit", last=10)
            cells.append(f"{statistics.fmean(end):.2f}" if end else "-")
        table.append(cells)
    return markdown_table(header, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=list(SUITES), default="qat",
                        help="qat: GHN-QAT recipes from a float GHN; train-bn: GHN-QAT with "
                             "batch or deployed (calibrated) BN statistics in training; "
                             "ghn2-fidelity: float GHNs from scratch with GHN-2's reference "
                             "output ranges; mixture: float fine-tuning with or without the "
                             "zoo families in the training mixture")
    parser.add_argument("--arms", default=None,
                        help="comma-separated arms (default: all of the suite)")
    parser.add_argument("--steps", type=int, default=600, help="training steps of every arm")
    parser.add_argument("--init", default=str(PRETRAINED_DIR / "ghn-fmnist.pt"),
                        help="suites qat and train-bn: the float GHN every arm starts from")
    parser.add_argument("--graphs", default="graphs/efficient-fmnist-10k",
                        help="training architectures (built if missing)")
    parser.add_argument("--num-archs", type=int, default=10000)
    parser.add_argument("--mixture-roots", default=MIXTURE_ROOTS,
                        help="suite mixture: the cells and families training roots, "
                             "comma-separated")
    parser.add_argument("--data-root", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--val-archs", type=int, default=10)
    parser.add_argument("--images", type=int, default=2000, help="validation images")
    parser.add_argument("--bits", default=",".join(map(str, BITS)),
                        help="bit-widths evaluated, comma-separated (default 32,8,4,2)")
    parser.add_argument("--bn-batches", type=int, default=4,
                        help="calibrated protocol: training batches of 256 for BN statistics")
    parser.add_argument("--calib-batches", type=int, default=2,
                        help="calibrated protocol: training batches of 256 for activation ranges")
    parser.add_argument("--calib-order", default=EvalProtocol.calib_order, choices=CALIB_ORDERS,
                        help="calibrated protocol: EvalProtocol.calib_order (the A/B tables "
                             "committed before 2026-12-05 are quantized-bn; cached apart)")
    parser.add_argument("--train-only", action="store_true", help="train the arms, evaluate nothing")
    parser.add_argument("--ghn2", action="store_true",
                        help="also evaluate under the ghn2 protocol (per-batch statistics and "
                             "ranges), to see the gap between the protocols")
    parser.add_argument("--first-last-8bit-arms", default="",
                        help="comma-separated arms (and, in suite qat, the float GHN) also "
                             "evaluated with first and last layers at 8 bits (calibrated)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("docs/results/qat-ab"))
    args = parser.parse_args(argv)
    suite = SUITES[args.suite]
    if args.arms is None:
        args.arms = ",".join(suite.arms)
    unknown = [a for a in args.arms.split(",") + args.first_last_8bit_arms.split(",")
               if a and a not in suite.arms]
    if unknown:
        parser.error(f"unknown arms {unknown} of suite {args.suite}; choose from "
                     f"{', '.join(suite.arms)}")
    if (suite.reference is not None and not args.train_only
            and suite.reference not in args.arms.split(",")):
        parser.error(f"suite {args.suite} needs its reference arm {suite.reference!r} in --arms")
    try:
        args.bits = parse_bits(args.bits, "--bits")
    except ValueError as err:
        parser.error(f"--bits takes comma-separated bit-widths from 2..8, 16 and 32: {err}")
    if len(args.mixture_roots.split(",")) != 2:
        parser.error(f"--mixture-roots takes CELLS,FAMILIES, got {args.mixture_roots!r}")
    for key in ("steps", "val_archs", "images", "bn_batches", "calib_batches"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    suite = SUITES[args.suite]
    start = time.perf_counter()
    arms = args.arms.split(",")
    checkpoints = {name: train_arm(name, args) for name in arms}
    if args.train_only:
        return
    archs = ModuleArchs(val_models(args.val_archs), (1, 28, 28))
    images = load_images("fashion-mnist", "val", args.data_root, seed=suite.val_seed)
    train = load_images("fashion-mnist", "train", args.data_root, seed=suite.val_seed)
    ghns = {FLOAT: GHN.load(args.init)} if suite.from_init else {}
    ghns.update({name: GHN.load(path) for name, path in checkpoints.items()})
    rows = []
    for name, ghn in ghns.items():
        rows += evaluate(name, ghn, args, archs, images, train)
    other_rows = {}
    for space in suite.val_spaces[1:]:
        space_archs = ModuleArchs(val_models(args.val_archs, space), (1, 28, 28))
        other_rows[space] = [row for name, ghn in ghns.items()
                             for row in evaluate(name, ghn, args, space_archs, images, train,
                                                 space=space)]
    ghn2_rows = [row for name, ghn in ghns.items() if args.ghn2
                 for row in evaluate(name, ghn, args, archs, images, train, "ghn2")]
    end_names = [n for n in ghns if n == FLOAT or n in args.first_last_8bit_arms.split(",")]
    end_rows = [row for name in end_names if args.first_last_8bit_arms
                for row in evaluate(name, ghns[name], args, archs, images, train,
                                    first_last_8bit=True)]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "CPU"
    reference = suite.reference or FLOAT
    start_text = f" from `{Path(args.init).name}`" if suite.from_init else ""
    text = (f"# {suite.title}: {args.steps} steps{start_text}\n\n"
            f"{args.val_archs} validation architectures, {args.images} validation images "
            f"(val seed {suite.val_seed}), "
            f"protocol `calibrated` ({args.bn_batches} BN + {args.calib_batches} calibration "
            "batches of 256 training images), per-channel weights; Δ: mean ± standard error of "
            f"the difference to `{reference}` on the same architectures, in points.\n\n"
            + ab_table(rows, list(ghns), reference, args.bits)
            + "".join(f"\n\nThe same on {args.val_archs} validation architectures of the "
                      f"`{space}` space:\n\n" + ab_table(part, list(ghns), reference, args.bits)
                      for space, part in other_rows.items())
            + ("\n\nThe same under the `ghn2` protocol (each batch's statistics and ranges):\n\n"
               + ab_table(ghn2_rows, list(ghns), reference, args.bits) if ghn2_rows else "")
            + ("\n\nEvaluated with the first and last layers at 8 bits (`calibrated`):\n\n"
               + ab_table(end_rows, end_names, reference, args.bits) if end_rows else "")
            + "\n\nTraining (from each arm's `metrics.csv`, logged "
            "every 10 steps; network gradient: norm of the loss gradient w.r.t. the predicted "
            "parameters, before any clipping; loss: the last 10 logged steps):\n\n"
            + training_table(args.out, arms) + "\n\nArms (added to the common recipe `"
            + suite.base + "`):\n\n"
            + "\n".join(f"- `{n}`: `{arm_flags(n, args) or '(nothing)'}`" for n in arms)
            + f"\n\nCommand: `python {' '.join(map(shlex.quote, sys.argv))}` on {device}.\n")
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "ab.md") as tmp:
        tmp.write_text(text)
    with atomic_path(args.out / "ab.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["protocol", "arch", "method", "bits", "accuracy"])
        writer.writerows([protocol, r.arch, r.method, r.bits, r.accuracy]
                         for protocol, part in (("calibrated", rows + [
                             r for part in other_rows.values() for r in part]),
                             ("ghn2", ghn2_rows), ("calibrated-first-last-8bit", end_rows))
                         for r in part)
    print(text)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
