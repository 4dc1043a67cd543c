"""One learning-curve point of a GHN checkpoint, off the training loop.

Evaluates a checkpoint exactly as ``ghn-pyg train --eval-every`` does
(:class:`~ghn_pyg.train.curve.LearningCurve`: the first validation architectures of
each space, validation images of ``--val-seed``'s split, the calibrated protocol), e.g.
the float GHN at bit-widths its own curve did not track, as step 0 of a GHN-QAT curve::

    python scripts/curve_point.py runs/ghn-fmnist/last.pt --spaces efficient,cells \\
        --val-seed 3 --bits 32,4,2

``--bn-batches``/``--calib-batches``/``--calib-method`` replace the curve's protocol
(4 BN and 2 range batches of 256 images, min/max), e.g. with the results tables' (20 and
8) to see whether a GHN's validation numbers depend on how many images set the ranges;
``--bn-after-calib`` re-estimates BN statistics under the frozen ranges, and
``--protocol ghn2`` uses each validation batch's statistics and ranges instead.
"""

from __future__ import annotations

import argparse
import json
import warnings

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg.data import load_images  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.quant.quantizers import CALIBRATION_METHODS  # noqa: E402
from ghn_pyg.train.curve import CURVE_PROTOCOL, LearningCurve  # noqa: E402
from ghn_pyg.train.protocol import CALIB_ORDERS, PROTOCOLS  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print and return ``{column: accuracy in %}`` (the ``val_*`` columns of metrics.csv)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a checkpoint file or a shipped GHN name")
    parser.add_argument("--spaces", default="efficient", help="comma-separated spaces")
    parser.add_argument("--archs", type=int, default=8, help="validation architectures per space")
    parser.add_argument("--images", type=int, default=500, help="validation images counted")
    parser.add_argument("--bits", default="32,4", help="comma-separated bit-widths (32 is float)")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--val-seed", type=int, default=0,
                        help="seed of the train/validation split (the run's val_seed)")
    parser.add_argument("--bn-batches", type=int, default=CURVE_PROTOCOL.bn_batches,
                        help="training batches the BN statistics are averaged over")
    parser.add_argument("--calib-batches", type=int, default=CURVE_PROTOCOL.calib_batches,
                        help="training batches the activation ranges are calibrated on")
    parser.add_argument("--calib-method", default=CURVE_PROTOCOL.calib_method,
                        choices=CALIBRATION_METHODS)
    parser.add_argument("--bn-after-calib", action="store_true",
                        help="re-estimate BN statistics once more under the frozen ranges")
    parser.add_argument("--calib-order", default=CURVE_PROTOCOL.calib_order, choices=CALIB_ORDERS,
                        help="what the ranges are observed on (EvalProtocol.calib_order)")
    parser.add_argument("--protocol", default=CURVE_PROTOCOL.name, choices=PROTOCOLS,
                        help="evaluation protocol (ghn2 ignores the batch options)")
    args = parser.parse_args(argv)
    protocol = CURVE_PROTOCOL.replace(name=args.protocol, bn_batches=args.bn_batches,
                                      calib_batches=args.calib_batches,
                                      calib_method=args.calib_method,
                                      bn_after_calib=args.bn_after_calib,
                                      calib_order=args.calib_order)
    val = load_images(args.data, "val", seed=args.val_seed)
    train = load_images(args.data, "train", seed=args.val_seed)
    curve = LearningCurve(args.spaces.split(","), args.archs, tuple(val[0][0].shape), 10, val,
                          train, bits=[int(b) for b in args.bits.split(",")],
                          max_images=args.images, protocol=protocol)
    point = curve.evaluate(GHN.load_any(args.ckpt))
    print(json.dumps({k: round(v, 2) for k, v in point.items()}))
    return point


if __name__ == "__main__":
    main()
