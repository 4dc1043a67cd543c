"""The ``export`` command: a network with predicted or trained parameters as an ONNX
model with integer weights, checked in ONNX Runtime."""

from __future__ import annotations

import argparse

from .arguments import input_shape

__all__ = ["add_parsers", "cmd_export"]


def _require_export_extra() -> None:
    import importlib

    try:
        for name in ("onnx", "onnxruntime"):
            importlib.import_module(name)
    except ImportError as err:
        raise ImportError(f"ghn-pyg export needs the export extra ({err.name} is missing): "
                          "pip install 'ghn_pyg[export]'") from None


def _load_weights(model, path: str) -> None:
    """Load a state dict (e.g. ``ghn-pyg qat``'s ``model.pt``) into ``model``."""
    from ..formats import read_tensors

    state = read_tensors(path, "state dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"weights {path} do not fit the network: {err}") from None


def cmd_export(args: argparse.Namespace) -> int:
    from ..data import first_items, load_images
    from ..data.images import tensor_batches
    from ..export import bn_batches_for, compare_outputs, onnx_logits, onnx_session, to_onnx
    from ..graph.bits import bits_label
    from ..quant import QuantSpec
    from ..report import markdown_table
    from ..study.qat import check_start, initial_params
    from ..train.protocol import EvalProtocol
    from .networks import network_from_args

    _require_export_extra()
    if args.weights is None:
        check_start(args.init)
    train = load_images(args.data, "train", args.data_root)
    in_shape = tuple(train[0][0].shape)
    shape = args.input_shape or (1, *in_shape)
    model = network_from_args(args.model, args.spec, shape, args.num_classes)
    spec = QuantSpec.uniform(args.bits, first_last_8bit=args.first_last_8bit,
                             per_channel=not args.per_tensor)
    if args.weights is not None:
        _load_weights(model, args.weights)
        params, source = None, args.weights
    else:
        params = initial_params(args.init, model, shape[1:], args.seed, args.bits)
        source = args.init
    bn_batches = bn_batches_for(params, args.bn_batches)
    protocol = EvalProtocol("calibrated", max(bn_batches, 1), args.calib_batches,
                            args.calibration, args.batch_size)
    calibration = protocol.calibration_batches(train)
    export = to_onnx(model, params, spec, shape, calibration, args.out, bn_batches=bn_batches,
                     calib_batches=args.calib_batches, calib_method=args.calibration,
                     calib_order=args.calib_order, fold_bn=not args.no_fold_bn, int4=not args.no_int4)
    ends = (", first/last layers 8-bit" if args.first_last_8bit else "") + \
        (", BN unfolded" if args.no_fold_bn else ", BN folded")
    print(f"{source} at {bits_label(args.bits, args.bits)}{ends} -> {export.summary()}")
    if args.check > 0:
        test = first_items(load_images(args.data, "test", args.data_root), args.check)
        session = onnx_session(export.path)
        agreement = compare_outputs(lambda x: export.runner(x), lambda x: onnx_logits(session, x),
                                    tensor_batches(test, args.batch_size))
        print(markdown_table(
            ["test images", "fake-quant runner top-1 (%)", "ONNX Runtime top-1 (%)",
             "same top-1 (%)", "max abs Δ logit"],
            [[agreement.images, f"{100 * agreement.accuracy_a:.2f}",
              f"{100 * agreement.accuracy_b:.2f}", f"{100 * agreement.same_top1:.2f}",
              f"{agreement.max_logit_diff:.3g}"]]))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``export`` (with its handler)."""
    from ..train.protocol import CALIB_ORDERS, EvalProtocol

    export = sub.add_parser(
        "export", help="export a quantized network to ONNX (integer weights, QDQ activations)",
        description="Give a network parameters (a shipped GHN's prediction, a random "
                    "initializer, or a state dict such as `ghn-pyg qat`'s model.pt), fold its "
                    "batch norms, calibrate activation ranges on training images and write an "
                    "ONNX model with integer weights and QuantizeLinear/DequantizeLinear "
                    "activations; then run it in ONNX Runtime on test images and compare it "
                    "with the fake-quant runner. Needs `pip install 'ghn_pyg[export]'`.")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="torchvision:NAME or package.module:factory")
    source.add_argument("--spec", help="JSON file of an architecture-space spec")
    params = export.add_mutually_exclusive_group()
    params.add_argument("--init", default="ghn-qat",
                        help="ghn-qat (default), ghn, or a ghn_pyg.inits name (he, default, ...)")
    params.add_argument("--weights", default=None,
                        help="a state dict of the network (e.g. ghn-pyg qat's model.pt)")
    export.add_argument("--bits", type=int, default=8,
                        help="weight and activation bits of every conv/linear layer (2..8, 32)")
    export.add_argument("--first-last-8bit", action="store_true")
    export.add_argument("--per-tensor", action="store_true",
                        help="one weight scale per tensor (default per output channel)")
    export.add_argument("--no-fold-bn", action="store_true",
                        help="keep batch norms in float after the integer convolutions (for "
                             "networks trained quantized without folding, e.g. by ghn-pyg qat)")
    export.add_argument("--no-int4", action="store_true",
                        help="store weights of <= 4 bits as int8 (default int4, opset 21)")
    export.add_argument("--bn-batches", type=int, default=None,
                        help="training batches to re-estimate BN statistics (default 20 for "
                             "--init, 0 for --weights: keep the trained statistics)")
    export.add_argument("--calib-batches", type=int, default=8,
                        help="training batches for the activation ranges")
    export.add_argument("--calibration", choices=("minmax", "percentile", "mse"),
                        default="minmax", help="activation range method")
    export.add_argument("--calib-order", choices=CALIB_ORDERS, default=EvalProtocol.calib_order,
                        help="when BN statistics are re-estimated: float-first (default; BN "
                             "and ranges on the float network, then BN under the frozen "
                             "ranges) or quantized-bn (the order before 2026-12-05)")
    export.add_argument("--batch-size", type=int, default=256)
    export.add_argument("--check", type=int, default=2000,
                        help="test images to compare ONNX Runtime with the runner on (0: skip)")
    export.add_argument("--input-shape", type=input_shape, default=None,
                        help="1,C,H,W (default: the data's image shape)")
    export.add_argument("--num-classes", type=int, default=10)
    export.add_argument("--data", default="fashion-mnist", help="fashion-mnist, cifar10 or synthetic")
    export.add_argument("--data-root", default=None)
    export.add_argument("--seed", type=int, default=0, help="seed of a random initializer")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.set_defaults(handler=cmd_export)
