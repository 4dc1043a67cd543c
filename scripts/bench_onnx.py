"""ONNX Runtime latency and file size: the exported int8 QDQ model against the float one.

For an ``efficient`` test architecture, resnet18 and mobilenet_v2 (1x28x28 input, 10
classes, He-initialised, BN statistics and activation ranges from random images), the
files compared are: the float export (``to_onnx`` at 32 bits, BN folded), this
project's W8A8 export (int8 weights, uint8 QDQ activations), ONNX Runtime's own
``quantize_static`` of the float file (QDQ, per-channel int8, uint8 activations), and
this project's W4A4 export (int4 weights; ONNX Runtime has no 4-bit kernels, so it
dequantizes them). Each is run by an ONNX Runtime CPU session with ``--threads``
intra-op threads at batch 1 and 64; this project's files also with ONNX Runtime's QDQ
fusions off (``onnx_session(..., qdq_fusions=False)``: weights dequantized once, float
kernels); the variants run round-robin so machine noise hits
them alike; medians over ``--runs`` rounds after warm-up, and each one's ratio to the
float model measured in the same run.

    python scripts/bench_onnx.py [--runs 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

import torch  # noqa: E402

from ghn_pyg.export import onnx_session, to_onnx  # noqa: E402
from ghn_pyg.inits import init_params  # noqa: E402
from ghn_pyg.quant import QuantSpec  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_check import SHAPE, networks  # noqa: E402


def ort_static(float_path: Path, out: Path, calibration: list[torch.Tensor]) -> Path:
    """ONNX Runtime's static QDQ quantization of ``float_path``."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": b.numpy()} for b in calibration])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(float_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return out


def files(name: str, model, folder: Path) -> dict[str, Path]:
    """The four ONNX files of one network."""
    g = torch.Generator().manual_seed(0)
    calibration = [torch.randn(64, *SHAPE[1:], generator=g) for _ in range(4)]
    params = init_params("he_normal", model, 0)
    out = {}
    for label, bits in (("float", 32), ("W8A8 (this project)", 8), ("W4A4 int4 (this project)", 4)):
        path = folder / f"{name}-{bits}.onnx"
        to_onnx(model, params, QuantSpec.uniform(bits), SHAPE, calibration, path, bn_batches=4,
                calib_batches=4)
        out[label] = path
    out["W8A8 (ORT quantize_static)"] = ort_static(out["float"], folder / f"{name}-ort.onnx",
                                                   calibration)
    return out


def median_latency(sessions: dict[str, object], batch: int, runs: int) -> dict[str, float]:
    """Median seconds per call of each session on one random batch, round-robin."""
    x = {"images": torch.randn(batch, *SHAPE[1:]).numpy()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(3):
        for session in sessions.values():
            session.run(None, x)
    for _ in range(runs):
        for label, session in sessions.items():
            start = time.perf_counter()
            session.run(None, x)
            times[label].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--networks", default=None, help="comma-separated subset")
    args = parser.parse_args()
    torch.manual_seed(0)
    chosen = networks()
    if args.networks:
        chosen = {k: v for k, v in chosen.items() if k in args.networks.split(",")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in chosen.items():
            paths = files(name.replace(" ", "-"), model, Path(tmp))
            sessions = {label: onnx_session(path, args.threads) for label, path in paths.items()}
            for label in ("W8A8 (this project)", "W4A4 int4 (this project)"):
                paths[f"{label}, QDQ fusions off"] = paths[label]
                sessions[f"{label}, QDQ fusions off"] = onnx_session(paths[label], args.threads,
                                                                     qdq_fusions=False)
            latency = {batch: median_latency(sessions, batch, args.runs) for batch in (1, 64)}
            for label, path in paths.items():
                cells = [name, label, f"{path.stat().st_size / 1024:.0f}"]
                for batch in (1, 64):
                    ms = 1000 * latency[batch][label]
                    cells += [f"{ms:.2f}", f"{latency[batch][label] / latency[batch]['float']:.2f}"]
                rows.append(cells)
    print(f"ONNX Runtime, CPU ({platform.processor() or platform.machine()}), "
          f"{args.threads} threads, median of {args.runs} runs\n")
    print(markdown_table(["network", "model", "file (KiB)", "batch 1 (ms)", "x float",
                          "batch 64 (ms)", "x float"], rows))
    print(f"\nCommand: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
