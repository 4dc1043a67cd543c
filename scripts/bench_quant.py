"""Benchmark the fake-quant runner against the float model.

Forward + backward of mobilenet_v2 (10 classes, batch 64, 32x32) for: the float model
(batch-statistics BN, its own parameters), ``quantize(...)`` at 32 bits with supplied
parameters, and at 8 and 4 bits with supplied parameters (weights per channel,
activations per tensor, dynamic ranges). The variants run round-robin so machine
noise hits them alike; medians over ``--runs`` rounds after warm-up, and each
variant's ratio to the float model.

    python scripts/bench_quant.py [--runs 10] [--batch 64] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg.quant import QuantSpec, quantize  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.spaces import build_torchvision  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed rounds")
    parser.add_argument("--batch", type=int, default=64, help="images per batch")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--model", default="mobilenet_v2", help="torchvision model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = build_torchvision(args.model, num_classes=10).to(device).train()
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    runners = {bits: quantize(model, QuantSpec.uniform(bits), bn="batch") for bits in (32, 8, 4)}

    def float_step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    def quant_step(bits: int) -> None:
        for p in params.values():
            p.grad = None
        F.cross_entropy(runners[bits](x, params), y).backward()

    variants = {"float model": float_step,
                "quantize, 32 bits, supplied params": lambda: quant_step(32),
                "quantize, W8A8, supplied params": lambda: quant_step(8),
                "quantize, W4A4, supplied params": lambda: quant_step(4)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(2):  # warm-up
        for step in variants.values():
            step()
    for _ in range(args.runs):
        for name, step in variants.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["float model"])
    rows = [(name, f"{statistics.median(t) * 1e3:.1f}", f"{statistics.median(t) / base:.2f}x")
            for name, t in times.items()]
    print(f"{args.model}, batch {args.batch}, 32x32, forward+backward on {device} "
          f"({args.threads} threads), median of {args.runs}")
    print(markdown_table(("variant", "ms", "vs float"), rows))


if __name__ == "__main__":
    main()
