"""Argument helpers shared by the subcommands and scripts: shapes, evaluation-protocol flags
and ``A=B``-style values."""

from __future__ import annotations

import argparse

__all__ = ["DEMO_BN_BATCHES", "DEMO_CALIB_BATCHES", "add_protocol_arguments",
           "protocol_from_args", "input_shape", "two_part"]

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
    from ..train.protocol import CALIB_ORDERS, PROTOCOLS, EvalProtocol

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
    parser.add_argument("--calib-order", choices=CALIB_ORDERS, default=defaults.calib_order,
                        help=f"calibrated: float-first (BN and ranges on the float network, "
                             f"then BN under the frozen ranges) or quantized-bn (BN under "
                             f"per-batch ranges, ranges observed float; the tables before "
                             f"2026-12-05) (default {defaults.calib_order})")
    parser.add_argument("--per-tensor", action="store_true",
                        help="one weight scale per tensor (default per output channel)")
    parser.add_argument("--first-last-8bit", action="store_true",
                        help="keep the first and last layers at 8 bits")


def protocol_from_args(args: argparse.Namespace):
    """The :class:`~ghn_pyg.train.protocol.EvalProtocol` the flags describe."""
    from ..train.protocol import EvalProtocol

    return EvalProtocol(args.protocol, args.bn_batches, args.calib_batches, args.calibration,
                        calib_order=args.calib_order)


def input_shape(text: str) -> tuple[int, ...]:
    """An argparse type: ``"1,3,32,32"`` or ``"1x3x32x32"`` -> ``(1, 3, 32, 32)``."""
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape {text!r} must look like 1,3,32,32") from None
    if len(dims) < 2 or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"input shape {text!r} must be positive, with a batch dim")
    return dims


def two_part(text: str, flag: str, form: str, example: str, sep: str = "=",
             rightmost: bool = False) -> tuple[str, str]:
    """Split a flag's value of the form ``A<sep>B`` into ``(A, B)``, both non-empty.

    Args:
        text: the value given.
        flag: the flag's name, for the error (e.g. ``"--ghn"``).
        form: the expected form, for the error (e.g. ``"NAME=CKPT"``).
        example: a valid value, for the error.
        sep: the separator.
        rightmost: split at the last ``sep`` (when ``A`` may contain it) instead of
            the first (when ``B`` may, e.g. a path).

    Raises:
        argparse.ArgumentTypeError: no ``sep`` or an empty side (argparse reports it as
            a usage error naming ``flag``, ``form`` and ``example``).
    """
    first, found, second = text.rpartition(sep) if rightmost else text.partition(sep)
    if not found or not first or not second:
        raise argparse.ArgumentTypeError(f"{flag} takes {form}, e.g. {example!r}, got {text!r}")
    return first, second
