"""The ``ghn-pyg`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from typing import Sequence

__all__ = ["main", "build_parser"]

#: Set to 1 to show full tracebacks of errors (as ``--debug`` does).
DEBUG_ENV = "GHN_PYG_DEBUG"


#: The demo's calibrated protocol reads fewer training batches than the results tables
#: (20 and 8) to stay a few minutes long; on validation architectures the difference
#: was within about one point (README, "Evaluation protocols").
DEMO_BN_BATCHES, DEMO_CALIB_BATCHES = 4, 2


def add_protocol_arguments(parser: argparse.ArgumentParser, **defaults_override) -> None:
    """The evaluation-protocol flags shared by ``eval`` and ``demo``.

    Args:
        parser: the subcommand's parser.
        defaults_override: other defaults for :class:`~ghn_pyg.train.protocol.EvalProtocol`
            fields (e.g. fewer batches for the demo).
    """
    from .train.protocol import PROTOCOLS, EvalProtocol

    defaults = EvalProtocol(**defaults_override)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="calibrated",
                        help="calibrated (default): BN statistics re-estimated and activation "
                             "ranges calibrated on training images, then frozen; ghn2: each test "
                             "batch's statistics and ranges (GHN-2's protocol)")
    parser.add_argument("--bn-batches", type=int, default=defaults.bn_batches,
                        help=f"calibrated: training batches for BN statistics "
                             f"(default {defaults.bn_batches})")
    parser.add_argument("--calib-batches", type=int, default=defaults.calib_batches,
                        help=f"calibrated: training batches for activation ranges "
                             f"(default {defaults.calib_batches})")
    parser.add_argument("--calibration", choices=("minmax", "percentile", "mse"),
                        default=defaults.calib_method, help="calibrated: range method")
    parser.add_argument("--per-tensor", action="store_true",
                        help="one weight scale per tensor (default per output channel)")
    parser.add_argument("--first-last-8bit", action="store_true",
                        help="keep the first and last layers at 8 bits")


def protocol_from_args(args: argparse.Namespace):
    """The :class:`~ghn_pyg.train.protocol.EvalProtocol` the flags describe."""
    from .train.protocol import EvalProtocol

    return EvalProtocol(args.protocol, args.bn_batches, args.calib_batches, args.calibration)


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape {text!r} must look like 1,3,32,32") from None
    if len(dims) < 2 or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"input shape {text!r} must be positive, with a batch dim")
    return dims


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ghn-pyg`` with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="ghn-pyg", description="Graph HyperNetworks for quantization-robust CNN parameters.")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (also: {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    graph = sub.add_parser("graph", help="trace a model and draw its architecture graph",
                           description="Trace MODEL into an ArchGraph and draw it.")
    graph.add_argument("model", help="torchvision:NAME or package.module:factory")
    graph.add_argument("--out", required=True,
                       help="output file: .dot (Graphviz text), .png, .svg or .pdf")
    graph.add_argument("--input-shape", type=_shape, default=None,
                       help="input shape with batch dim, e.g. 1,3,32,32 (default: 32x32 RGB, "
                            "or the model's minimum)")
    graph.add_argument("--w-bits", type=int, default=32, help="weight bits of conv/linear layers")
    graph.add_argument("--a-bits", type=int, default=32, help="input activation bits")
    graph.add_argument("--first-last-8bit", action="store_true",
                       help="keep the first and last layers at 8 bits")
    graph.add_argument("--num-classes", type=int, default=None, help="classifier size")

    zoo = sub.add_parser("zoo", help="trace the torchvision CNN zoo and print a table of graphs")
    zoo.add_argument("--size", type=int, default=32, help="input height and width (default 32)")
    zoo.add_argument("--s-max", type=int, default=50, help="virtual edge cutoff (default 50)")
    zoo.add_argument("--models", nargs="+", default=None, metavar="NAME",
                     help="trace only these torchvision models (default: the whole zoo)")
    data = sub.add_parser(
        "make-dataset", help="sample, trace and store an architecture-graph dataset",
        description="Build (or resume) an ArchGraphDataset split. With --recipe, settings come "
                    "from a JSON recipe (see graphs/) and every split it lists is built unless "
                    "--split is given; command-line options override the recipe.")
    data.add_argument("--recipe", help="JSON recipe file, e.g. graphs/efficient-fmnist.json")
    data.add_argument("--space", help="architecture space (default efficient)")
    data.add_argument("--split", help="train, val, test, wide, deep, nobn or torchvision")
    data.add_argument("--size", type=int, help="number of architectures")
    data.add_argument("--root", help="dataset folder")
    data.add_argument("--seed", type=int, help="base seed (default 0)")
    data.add_argument("--in-shape", type=_shape, help="input C,H,W (default 1,28,28)")
    data.add_argument("--num-classes", type=int, help="classifier size (default 10)")
    data.add_argument("--shard-size", type=int, help="graphs per shard file (default 1000)")
    data.add_argument("--workers", type=int, default=0, help="build processes (default 0: inline)")

    from .train.config import add_config_arguments

    train = sub.add_parser(
        "train", help="train a GHN (float) or finetune it with quantization (GHN-QAT)",
        description="Train a GHN. Settings: defaults < --config FILE (JSON/YAML) < flags. "
                    "Float pretraining unless --bits is given (e.g. --bits 8,4,2 for GHN-QAT, "
                    "usually with --init-ckpt of a float run). Under torchrun it trains with DDP.")
    train.add_argument("--config", help="JSON or YAML file of settings")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUT/last.pt exactly, with its saved settings (only "
                            "steps, lr, logging, checkpoint cadence, device and paths may be "
                            "given anew)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run in OUT (its files are moved to OUT/replaced-TIME/)")
    add_config_arguments(train)

    evaluate = sub.add_parser(
        "eval", help="accuracy of GHN-predicted vs random parameters per bit-width",
        description="Evaluate every architecture of a split on the test images: the GHNs' "
                    "predictions and random initializations, at each bit-width, under an "
                    "evaluation protocol (default calibrated: BN statistics and activation ranges "
                    "fixed on training images; ghn2: per-test-batch statistics and ranges). "
                    "Writes results.csv, summary.md and accuracy_vs_bits.png.")
    evaluate.add_argument("--ckpt", action="append", required=True, metavar="[NAME=]PATH",
                          help="GHN or training checkpoint, or a shipped name (ghn-fmnist, "
                               "ghn-qat-fmnist); repeat for several (e.g. GHN=a.pt GHN-QAT=b.pt)")
    evaluate.add_argument("--graphs", help="architecture dataset root (default: the checkpoint's)")
    evaluate.add_argument("--space", help="architecture space (default: the checkpoint's)")
    evaluate.add_argument("--split", default="test", help="architecture split (default test)")
    evaluate.add_argument("--size", type=int, default=500, help="split size (default 500)")
    evaluate.add_argument("--graph-seed", type=int, default=None, help="architecture seed")
    evaluate.add_argument("--in-shape", type=_shape, default=None, help="C,H,W")
    evaluate.add_argument("--num-classes", type=int, default=None)
    evaluate.add_argument("--data", default=None, help="image dataset (default: the checkpoint's)")
    evaluate.add_argument("--data-root", default=None)
    evaluate.add_argument("--bits", default="32,8,4,2", help="bit-widths (default 32,8,4,2)")
    evaluate.add_argument("--baselines", default="default,he,xavier",
                          help="random initializers to compare with (ghn_pyg.inits names)")
    evaluate.add_argument("--sgd-epochs", type=int, default=0,
                          help="also train each network with SGD for N epochs (reference)")
    evaluate.add_argument("--max-train-images", type=int, default=None,
                          help="training images for --sgd-epochs (default all)")
    add_protocol_arguments(evaluate)
    evaluate.add_argument("--max-archs", type=int, default=None)
    evaluate.add_argument("--max-images", type=int, default=None)
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--out", default="results/eval", help="output folder")

    demo = sub.add_parser(
        "demo", help="the main job: shipped GHN and GHN-QAT vs random init on Fashion-MNIST",
        description="Predict parameters with the shipped float GHN and GHN-QAT for unseen test "
                    "architectures of the efficient space and for resnet18 and mobilenet_v2 "
                    "(1x28x28, 10 classes); evaluate on Fashion-MNIST test images at 32, 8, 4 "
                    "and 2 bits against He-initialised networks under the calibrated protocol "
                    "(fewer calibration batches than the results tables).")
    demo.add_argument("--archs", type=int, default=10, help="unseen efficient architectures")
    demo.add_argument("--max-images", type=int, default=1000,
                      help="test images per evaluation (the results tables use all 10,000)")
    add_protocol_arguments(demo, bn_batches=DEMO_BN_BATCHES, calib_batches=DEMO_CALIB_BATCHES)
    demo.add_argument("--data-root", default=None, help="Fashion-MNIST folder")
    demo.add_argument("--torchvision", nargs="*", default=None, metavar="NAME",
                      help="torchvision models to add (default resnet18 mobilenet_v2)")
    demo.add_argument("--out", default="results/demo", help="output folder")

    study = sub.add_parser(
        "init-study", help="initializers vs quantization robustness across block families",
        description="For each block family x initializer x seed: initialise, train in float on "
                    "Fashion-MNIST, then quantize post-training (W8A8, W4A4, W2A2, W8 weights "
                    "only). Resumable: finished runs in OUT/runs.csv are skipped.")
    study.add_argument("--preset", choices=("smoke", "full"), default="smoke")
    study.add_argument("--families", nargs="+", default=None, help="override the preset's")
    study.add_argument("--inits", nargs="+", default=None, help="override the preset's")
    study.add_argument("--seeds", type=int, default=None)
    study.add_argument("--epochs", type=int, default=None)
    study.add_argument("--qat-archs", type=int, default=None,
                       help="unseen efficient test architectures trained with QAT from each "
                            "start (0 skips; default: the preset's)")
    study.add_argument("--qat-inits", nargs="+", default=None, help="QAT starting points")
    study.add_argument("--qat-epochs", type=int, default=None)
    study.add_argument("--qat-bits", type=int, default=None)
    study.add_argument("--data", default="fashion-mnist", help="fashion-mnist or synthetic")
    study.add_argument("--data-root", default=None)
    study.add_argument("--out", default="results/init-study")

    qat = sub.add_parser(
        "qat", help="quantization-aware training of one CNN from a chosen initialization",
        description="Initialise a network (a random initializer, or the shipped GHN / GHN-QAT's "
                    "prediction for the target bits), then train it with its conv and linear "
                    "layers fake-quantized, printing test top-1 before training and after "
                    "every epoch. Writes OUT/qat.csv and OUT/model.pt.")
    source = qat.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="torchvision:NAME or package.module:factory")
    source.add_argument("--spec", help="JSON file of an architecture-space spec")
    qat.add_argument("--init", default="ghn-qat",
                     help="ghn-qat, ghn, or a ghn_pyg.inits name (he, default, orthogonal, ...)")
    qat.add_argument("--bits", type=int, default=4, help="weight and activation bits (2..8)")
    qat.add_argument("--epochs", type=int, default=3)
    qat.add_argument("--first-last-8bit", action="store_true")
    qat.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (cosine schedule)")
    qat.add_argument("--batch-size", type=int, default=128)
    qat.add_argument("--target", type=float, default=None,
                     help="report the first epoch reaching this top-1 (%%)")
    qat.add_argument("--data", default="fashion-mnist", help="fashion-mnist, cifar10 or synthetic")
    qat.add_argument("--data-root", default=None)
    qat.add_argument("--max-train-images", type=int, default=None)
    qat.add_argument("--max-test-images", type=int, default=None)
    qat.add_argument("--seed", type=int, default=0)
    qat.add_argument("--device", default="cpu")
    qat.add_argument("--out", default="results/qat", help="output folder")

    predict = sub.add_parser("predict", help="predict the parameters of one network",
                             description="Predict all parameters of a network with a GHN.")
    predict.add_argument("--ckpt", required=True,
                         help="GHN or training checkpoint, or a shipped name (ghn-qat-fmnist)")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="torchvision:NAME or package.module:factory")
    source.add_argument("--spec", help="JSON file of an architecture-space spec")
    predict.add_argument("--bits", type=int, default=32, help="bits of every conv/linear layer")
    predict.add_argument("--first-last-8bit", action="store_true")
    predict.add_argument("--input-shape", type=_shape, default=None,
                         help="1,C,H,W (default: the checkpoint's training input)")
    predict.add_argument("--num-classes", type=int, default=None)
    predict.add_argument("--out", required=True, help="output .pt file of {name: tensor}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ghn-pyg``; returns the exit status."""
    # torch_geometric's import calls the deprecated torch.jit.script; not the user's concern.
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated",
                            category=FutureWarning)
    args = build_parser().parse_args(argv)
    from .errors import DatasetError, GraphBuildError
    from .runtime import reuse_freed_memory

    reuse_freed_memory()

    from .commands.graphs import cmd_graph, cmd_make_dataset, cmd_zoo
    from .commands.study import cmd_init_study, cmd_qat
    from .commands.training import cmd_demo, cmd_eval, cmd_predict, cmd_train

    handlers = {"graph": cmd_graph, "zoo": cmd_zoo, "make-dataset": cmd_make_dataset,
                "train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "demo": cmd_demo,
                "init-study": cmd_init_study, "qat": cmd_qat}
    try:
        return handlers[args.command](args)
    except (GraphBuildError, DatasetError, ValueError, ImportError, FileNotFoundError,
            FileExistsError, RuntimeError) as err:
        if args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            traceback.print_exc()
        print(f"ghn-pyg {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
