"""One GHN's accuracy on chosen networks under each calibration order, in one process.

Results computed on different machines can differ at 4 bits (PyTorch's CPU kernels sum
in different orders); this script evaluates every order side by side on this machine,
so an order effect can be told from machine noise. Set ``ATEN_CPU_CAPABILITY``
(``default``, ``avx2``, ``avx512``) to run the same numbers on other CPU kernels.

    python scripts/calib_order_check.py --split nobn --archs 0 --ghn ghn-fmnist --bits 4
    ATEN_CPU_CAPABILITY=default python scripts/calib_order_check.py --split nobn --archs 0
    python scripts/calib_order_check.py --split test --archs 4 11 --ghn ghn-qat-fmnist
"""

from __future__ import annotations

import argparse
import warnings

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

import torch  # noqa: E402

from ghn_pyg.data import load_images  # noqa: E402
from ghn_pyg.machine import compute_signature  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.train.evaluate import EvalSetup, ModuleArchs, evaluate_architecture  # noqa: E402
from ghn_pyg.train.protocol import CALIB_ORDERS, EvalProtocol  # noqa: E402
from results_fmnist import split_models  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="test", help="a split of scripts/results_fmnist.py")
    parser.add_argument("--archs", type=int, nargs="+", default=[0], help="network indices")
    parser.add_argument("--ghn", default="ghn-fmnist", help="a shipped name or a checkpoint")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--orders", nargs="+", default=list(CALIB_ORDERS), choices=CALIB_ORDERS)
    parser.add_argument("--images", type=int, default=None, help="test images (default: all)")
    parser.add_argument("--bn-batches", type=int, default=20)
    parser.add_argument("--calib-batches", type=int, default=8)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    if min(args.archs) < 0:
        parser.error(f"--archs takes indices >= 0, got {args.archs}")
    return args


def main(argv: list[str] | None = None) -> str:
    """Print and return the table: one row per network, one column per order (top-1 %)."""
    args = parse_args(argv)
    models = split_models(args.split, {args.split: max(args.archs) + 1})
    train = load_images("fashion-mnist", "train", root=args.data_root)
    test = load_images("fashion-mnist", "test", root=args.data_root)
    ghn = GHN.load_any(args.ghn).eval()
    setups = {order: EvalSetup.create(test, train, EvalProtocol(
        "calibrated", args.bn_batches, args.calib_batches, calib_order=order), args.images)
        for order in args.orders}
    rows = []
    for i in args.archs:
        name, module = models[i]
        graph = ModuleArchs([(name, module)], (1, 28, 28)).graphs[0]
        accuracy = [evaluate_architecture(graph, module, (1, 28, 28), {args.ghn: ghn},
                                          [args.bits], [], setup)[0].accuracy
                    for setup in setups.values()]
        rows.append([name] + [f"{100 * a:.2f}" for a in accuracy])
    caption = (f"{args.ghn}, W{args.bits}A{args.bits}, calibrated protocol, "
               f"{setups[args.orders[0]].num_images} test images; "
               f"{compute_signature()}, {torch.get_num_threads()} threads")
    text = caption + "\n\n" + markdown_table(["network", *args.orders], rows)
    print(text)
    return text


if __name__ == "__main__":
    main()
