"""Does the exported int8 model compute what the fake-quant runner computes?

For an unseen ``efficient`` test architecture, resnet18 and mobilenet_v2 (first conv
taking 1 channel, 10 classes, 28x28 Fashion-MNIST), two parameter sources:

- ``GHN-QAT``: the shipped GHN-QAT's prediction for the target bits (BN statistics
  re-estimated on 20 training batches);
- ``+QAT``: that start after ``--qat-epochs`` of quantization-aware training
  (``ghn_pyg.study.qat.qat_train``) on ``--train-images`` training images (its own BN
  running statistics kept).

Each is exported with :func:`ghn_pyg.export.to_onnx` (BN folded, activation ranges
calibrated on 8 training batches of 256, in the evaluation protocol's default
calibration order) and run in ONNX Runtime (CPU, all graph
optimizations: integer kernels where it fuses them) on the Fashion-MNIST test images;
the table compares it with the fake-quant runner it was exported from (``same top-1``,
largest logit difference) and, at 8 bits, with ONNX Runtime's own static quantization
(``quantize_static``, QDQ, per-channel int8 weights, uint8 activations, min/max
calibration on the same images) of the float export of the same weights. Also, as
an exactness check, the same comparison with ONNX Runtime's graph optimizations off
(the graph run as written).

    python scripts/onnx_check.py --bits 8 --out docs/results/onnx-export
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

import torch  # noqa: E402

from ghn_pyg.data import first_items, load_images, sample_specs  # noqa: E402
from ghn_pyg.data.images import tensor_batches  # noqa: E402
from ghn_pyg.export import compare_outputs, onnx_logits, onnx_session, to_onnx  # noqa: E402
from ghn_pyg.fileio import atomic_path  # noqa: E402
from ghn_pyg.quant import QuantSpec  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.spaces import adapt_input_channels, get_space, resolve_model  # noqa: E402
from ghn_pyg.study.qat import initial_params, qat_train  # noqa: E402
from ghn_pyg.train.protocol import EvalProtocol  # noqa: E402

SHAPE = (1, 1, 28, 28)


def networks() -> dict[str, torch.nn.Module]:
    """The three networks of the check."""
    space = get_space("efficient")
    return {
        "efficient test-00": space.build(sample_specs(space, "test", 1, 0)[0], 1, 10),
        "resnet18": adapt_input_channels(resolve_model("torchvision:resnet18", num_classes=10), 1),
        "mobilenet_v2": adapt_input_channels(resolve_model("torchvision:mobilenet_v2",
                                                           num_classes=10), 1),
    }


def ort_static_quantization(model, params, calibration, test, folder: Path) -> float:
    """Top-1 of ONNX Runtime's ``quantize_static`` applied to the float export."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    float_path = folder / "float.onnx"
    to_onnx(model, params, QuantSpec(), SHAPE, calibration, float_path,
            bn_batches=20 if params is not None else 0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": b.numpy()} for b in calibration[:8]])

        def get_next(self):
            return next(self.batches, None)

    int8_path = folder / "ort-static.onnx"
    quantize_static(str(float_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    session = onnx_session(int8_path)
    hits = sum(int((onnx_logits(session, x).argmax(1) == y).sum()) for x, y in test)
    return hits / sum(len(y) for _, y in test)


def check(name: str, stage: str, model, params, bits: int, calibration, test,
          folder: Path) -> list:
    """One table row."""
    spec = QuantSpec.uniform(bits)
    started = time.perf_counter()
    export = to_onnx(model, params, spec, SHAPE, calibration, folder / f"w{bits}.onnx")
    session = onnx_session(export.path)
    agreement = compare_outputs(lambda x: export.runner(x), lambda x: onnx_logits(session, x),
                                test)
    plain = onnx_session(export.path, optimize=False)
    exact = compare_outputs(lambda x: export.runner(x), lambda x: onnx_logits(plain, x), test)
    static = (f"{100 * ort_static_quantization(model, params, calibration, test, folder):.2f}"
              if bits == 8 else "-")
    print(f"{name} {stage}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return [name, stage, f"{100 * agreement.accuracy_a:.2f}", f"{100 * agreement.accuracy_b:.2f}",
            f"{100 * agreement.same_top1:.2f}", f"{agreement.max_logit_diff:.3g}",
            f"{100 * exact.same_top1:.2f}", f"{exact.max_logit_diff:.3g}", static,
            f"{export.size_bytes / 1024:.0f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--train-images", type=int, default=10000,
                        help="training images of the QAT epochs")
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--networks", default=None, help="comma-separated subset")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=None, help="folder for onnx-check.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    train = load_images("fashion-mnist", "train", args.data_root)
    test = tensor_batches(first_items(load_images("fashion-mnist", "test", args.data_root),
                                      args.test_images), 500)
    calibration = EvalProtocol("calibrated", 20, 8).calibration_batches(train)
    chosen = networks()
    if args.networks:
        chosen = {k: v for k, v in chosen.items() if k in args.networks.split(",")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, model in chosen.items():
            params = initial_params("ghn-qat", model, SHAPE[1:], 0, args.bits)
            rows.append(check(name, "GHN-QAT", model, params, args.bits, calibration, test,
                              folder))
            if args.qat_epochs > 0:
                trained, _ = qat_train(model, "ghn-qat", first_items(train, args.train_images),
                                       first_items(load_images("fashion-mnist", "test",
                                                               args.data_root), 1000),
                                       bits=args.bits, epochs=args.qat_epochs, progress=False)
                rows.append(check(name, f"+QAT {args.qat_epochs} ep", trained, None, args.bits,
                                  calibration, test, folder))
    header = ["network", "parameters", "fake-quant top-1 (%)", "ONNX Runtime top-1 (%)",
              "same top-1 (%)", "max abs Δ logit", "same top-1, ORT optimizations off (%)",
              "max abs Δ logit, optimizations off",
              "ORT quantize_static top-1 (%)", "file (KiB)"]
    table = markdown_table(header, rows)
    text = (f"W{args.bits}A{args.bits}, {sum(len(y) for _, y in test)} "
            f"Fashion-MNIST test images, ONNX Runtime on the CPU "
            f"({platform.processor() or platform.machine()}).\n\n{table}\n\n"
            f"Command: `python {' '.join(sys.argv)}`\n")
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out / f"onnx-check-w{args.bits}.md") as tmp:
            tmp.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
