"""Features or classifier: a linear probe on the features of predicted networks.

For each network, method (a GHN or a random initializer) and bit-width, the network
runs with its parameters under the calibrated protocol; its own top-1 on validation
images is set beside the top-1 of a logistic regression refitted on the input of its
classifier (``ghn_pyg.train.probe``). A probe far above the network means the
predicted features carry the classes and the predicted classifier does not read them;
a probe near the network means the features are what fails. Validation images only
(``--val-seed``'s split of the training set): this diagnoses, it does not report test
accuracy.

    python scripts/probe_features.py --split families:val --archs 10 \\
        --ghn ghn-fmnist --inits he_normal --out docs/results/feature-probe/families-val.md
    python scripts/probe_features.py --split torchvision --archs 6 --bits 32,4
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

import torch  # noqa: E402

from ghn_pyg.data import load_images, tensor_batches  # noqa: E402
from ghn_pyg.data.archgraph_dataset import split_models as space_split_models  # noqa: E402
from ghn_pyg.fileio import atomic_path  # noqa: E402
from ghn_pyg.graph.bits import EVAL_BITS, parse_bits  # noqa: E402
from ghn_pyg.inits import init_params, initializer_names  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.quant import annotate  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.spaces import get_space  # noqa: E402
from ghn_pyg.train.evaluate import EvalSetup, ModuleArchs  # noqa: E402
from ghn_pyg.train.probe import classifier_features, linear_probe_top1  # noqa: E402
from ghn_pyg.train.protocol import EvalProtocol  # noqa: E402
from results_fmnist import SPLITS, split_models  # noqa: E402


def models_of(split: str, count: int) -> list:
    """``(name, module)`` of the first ``count`` networks of ``split``: a split of
    scripts/results_fmnist.py, or ``SPACE:SPLIT`` of any space (e.g. ``families:val``)."""
    space, sep, name = split.partition(":")
    if sep:
        return space_split_models(count, 1, 10, 0, name, space)
    return split_models(split, {split: count})


def split_arg(text: str) -> str:
    """Check ``--split``; argparse reports a bad one as a usage error."""
    space, sep, name = text.partition(":")
    if not sep:
        if text not in SPLITS:
            raise argparse.ArgumentTypeError(
                f"--split takes one of {', '.join(SPLITS)} or SPACE:SPLIT, got {text!r}")
        return text
    try:
        splits = get_space(space).splits()
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if name not in splits:
        raise argparse.ArgumentTypeError(f"space {space!r} has splits {', '.join(splits)}, "
                                         f"not {name!r}")
    return text


def bits_arg(text: str) -> list[int]:
    """``"32,4"`` -> ``[32, 4]``; argparse reports bad bit-widths."""
    try:
        return list(parse_bits(text, "--bits"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--bits takes comma-separated bit-widths such as {','.join(map(str, EVAL_BITS))}: "
            f"{err}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", type=split_arg, default="families:val",
                        help=f"one of {', '.join(SPLITS)} or SPACE:SPLIT")
    parser.add_argument("--archs", type=int, default=6, help="first networks of the split")
    parser.add_argument("--ghn", action="append", default=None, metavar="CKPT",
                        help="a shipped name or checkpoint (repeatable; default ghn-fmnist)")
    parser.add_argument("--inits", default="he_normal",
                        help="comma-separated initializers of ghn_pyg.inits ('' for none)")
    parser.add_argument("--bits", type=bits_arg, default=[32], help="comma-separated bit-widths")
    parser.add_argument("--images", type=int, default=1000, help="validation images judged")
    parser.add_argument("--probe-images", type=int, default=4000,
                        help="training images the probe is fitted on")
    parser.add_argument("--weight-decay", type=float, default=1e-3, help="the probe's L2 weight")
    parser.add_argument("--val-seed", type=int, default=3, help="seed of the train/val split")
    parser.add_argument("--bn-batches", type=int, default=20)
    parser.add_argument("--calib-batches", type=int, default=8)
    parser.add_argument("--data-root", default=None, help="Fashion-MNIST folder")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (.md)")
    args = parser.parse_args(argv)
    inits = [n for n in args.inits.split(",") if n]
    unknown = sorted(set(inits) - set(initializer_names()))
    if unknown:
        parser.error(f"--inits: unknown {', '.join(unknown)}; use {', '.join(initializer_names())}")
    if min(args.archs, args.images, args.probe_images) < 1 or args.weight_decay < 0:
        parser.error("--archs, --images and --probe-images must be >= 1, --weight-decay >= 0")
    args.inits, args.ghn = inits, args.ghn or ["ghn-fmnist"]
    return args


def probe_rows(args: argparse.Namespace) -> list[list]:
    """``[arch, method, bits, network top-1 %, probe top-1 %]`` per network, method, bits."""
    train = load_images("fashion-mnist", "train", root=args.data_root, seed=args.val_seed)
    val = load_images("fashion-mnist", "val", root=args.data_root, seed=args.val_seed)
    protocol = EvalProtocol("calibrated", args.bn_batches, args.calib_batches)
    setup = EvalSetup.create(val, train, protocol, args.images)
    fit_batches = tensor_batches(train, 256, args.probe_images)
    ghns = {ckpt: GHN.load_any(ckpt).eval() for ckpt in args.ghn}
    rows = []
    for name, module in models_of(args.split, args.archs):
        graph = ModuleArchs([(name, module)], (1, 28, 28)).graphs[0]
        runner = setup.runner(module, (1, 28, 28))
        for bits in args.bits:
            annotated = annotate(graph, setup.spec(bits))
            runner.set_bits(annotated)
            methods = {}
            for ckpt, ghn in ghns.items():
                with torch.no_grad():
                    methods[ckpt] = ghn(annotated)[0]
            methods.update({init: init_params(init, module, 0) for init in args.inits})
            for method, params in methods.items():
                setup.protocol.apply(runner, params, setup.calibration)
                fit_x, _, fit_y = classifier_features(runner, params, fit_batches)
                val_x, logits, val_y = classifier_features(runner, params, setup.test)
                network = (logits.argmax(1) == val_y).float().mean().item()
                probe = linear_probe_top1(fit_x, fit_y, val_x, val_y, 10, args.weight_decay)
                rows.append([name, method, bits, 100 * network, 100 * probe])
                print(f"{name} {method} {bits}-bit: network {100 * network:.1f} %, "
                      f"probe {100 * probe:.1f} %", flush=True)
    return rows


def render(rows: list[list], args: argparse.Namespace) -> str:
    """The per-network table and the per-method means, as markdown."""
    table = markdown_table(["network", "method", "bits", "network top-1 %", "probe top-1 %",
                            "probe - network"],
                           [[a, m, b, f"{n:.1f}", f"{p:.1f}", f"{p - n:+.1f}"]
                            for a, m, b, n, p in rows])
    means = []
    for method in dict.fromkeys(r[1] for r in rows):
        for bits in args.bits:
            picked = [r for r in rows if r[1] == method and r[2] == bits]
            network = statistics.mean(r[3] for r in picked)
            probe = statistics.mean(r[4] for r in picked)
            means.append([method, bits, len(picked), f"{network:.1f}", f"{probe:.1f}",
                          f"{probe - network:+.1f}"])
    summary = markdown_table(["method", "bits", "networks", "network top-1 %", "probe top-1 %",
                              "probe - network"], means)
    return (f"# Linear probe: split `{args.split}`, {args.images} validation images (val seed "
            f"{args.val_seed}), probe fitted on {args.probe_images} training images\n\n"
            f"Calibrated protocol ({args.bn_batches} BN + {args.calib_batches} range batches); "
            f"the probe is a logistic regression (L2 {args.weight_decay}) on the "
            f"classifier's input.\n\n{summary}\n\n{table}\n")


def main(argv: list[str] | None = None) -> str:
    """Print (and with ``--out`` write) the probe table; returns its markdown."""
    args = parse_args(argv)
    text = render(probe_rows(args), args)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
    return text


if __name__ == "__main__":
    main()
