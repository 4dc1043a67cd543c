"""The measurements behind the README's "The real GHN-QAT step": one table per part.

- ``networks``: 8 fixed W4A4 ``efficient`` training networks with supplied parameters,
  64 images of 1x28x28: forward + backward (to the parameters) and a no-grad forward,
  one after another on 2 intra-op threads, on 1 thread, and two at a time
  (``NetworkPool(2)``, each op on one thread);
- ``net-threads``: two trainers of the README's GHN-QAT recipe (``--net-threads 1`` and
  ``2``) stepping in turn in one process;
- ``runner``: building a runner per architecture: ``quantize`` tracing everything,
  ``quantize(graph=...)`` around the dataset's graph, and the torch.fx trace alone;
- ``variance``: the collapse guard's per-channel variance, ``Tensor.var`` over
  (N, H, W) against two passes, on four activation shapes;
- ``channels-last``: a network step in ``torch.channels_last`` against the default;
- ``shape-check``: checking a 224x224 input: the real batch-1 forward, the same on
  ``meta`` tensors and under ``FakeTensorMode``, and the tracer's shape rules
  (:func:`ghn_pyg.graph.shapes.check_input_shape` on the model's fx graph).

Medians of ``--runs`` after a warm-up, on the architectures of ``--graphs`` (built with
``--num-archs`` when missing; the parts take architectures from a quarter, half and
eighth of the way in).

    python scripts/bench_step_parts.py [--parts networks,runner,...] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ghn_pyg.data import ArchGraphDataset  # noqa: E402
from ghn_pyg.graph.shapes import check_input_shape  # noqa: E402
from ghn_pyg.graph.tracer import fx_graph  # noqa: E402
from ghn_pyg.quant import QuantSpec, quantize  # noqa: E402
from ghn_pyg.report import markdown_table, median_ms  # noqa: E402
from ghn_pyg.spaces import build_torchvision  # noqa: E402
from ghn_pyg.train.parallel import NetworkPool  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_efficient import _ensure_graphs, _trainer  # noqa: E402

PARTS = ("networks", "net-threads", "runner", "variance", "channels-last", "shape-check")


def _networks(archs: ArchGraphDataset, first: int, count: int = 8):
    runners, params = [], []
    for idx in range(first, first + count):
        module = archs.build_module(idx)
        runners.append(quantize(module, QuantSpec.uniform(4), (1, 1, 28, 28), bn="batch"))
        params.append({k: v.detach().clone().requires_grad_() for k, v in module.named_parameters()})
    return runners, params


def part_networks(args, archs) -> str:
    runners, params = _networks(archs, len(archs) // 4)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    pool = NetworkPool(2)

    def train(k: int):
        loss = F.cross_entropy(runners[k](x, params[k]), y)
        return torch.autograd.grad(loss, list(params[k].values()), allow_unused=True)

    def forward(k: int):
        with torch.no_grad():
            return runners[k](x, params[k])

    rows = []
    for name, fn in (("forward + backward", train), ("no-grad forward", forward)):
        rows.append([name,
                     f"{median_ms(lambda: [fn(k) for k in range(8)], args.runs, 2):.0f}",
                     f"{median_ms(lambda: [fn(k) for k in range(8)], args.runs, 1):.0f}",
                     f"{median_ms(lambda: pool.map(fn, 8), args.runs, 2):.0f}"])
    return markdown_table(["8 networks, 64 images", "sequential, 2 threads (ms)",
                           "sequential, 1 thread (ms)", "2 at a time, 1 thread each (ms)"], rows)


def part_net_threads(args, archs) -> str:
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 2):
            settings = argparse.Namespace(graphs=args.graphs, num_archs=args.num_archs,
                                          device="cpu", net_threads=threads)
            trainers[threads] = _trainer(settings, Path(tmp) / f"run{threads}")
        for _ in range(3):
            for trainer in trainers.values():
                trainer.train_step()
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.runs * 2):
            for threads, trainer in trainers.items():
                start = time.perf_counter()
                trainer.train_step()
                times[threads].append(time.perf_counter() - start)
    rows = [[threads, f"{statistics.median(t):.3f}", f"{min(t):.2f}-{max(t):.2f}"]
            for threads, t in times.items()]
    return markdown_table(["--net-threads", "median s per step", "range"], rows)


def part_runner(args, archs) -> str:
    indices = iter(range(len(archs) // 2, len(archs)))
    rows = []
    for name, build in (
            ("quantize (trace, graph build, shape check)",
             lambda i: quantize(archs.build_module(i), None, (1, 1, 28, 28), bn="batch")),
            ("quantize(graph=...) around the dataset's graph",
             lambda i: quantize(archs.build_module(i), None, (1, 1, 28, 28), bn="batch",
                                graph=archs[i])),
            ("torch.fx trace alone", lambda i: fx_graph(archs.build_module(i)))):
        rows.append([name, f"{median_ms(lambda: [build(next(indices)) for _ in range(3)], args.runs) / 3:.1f}"])
    return markdown_table(["runner of one unseen architecture", "ms"], rows)


def part_variance(args, archs) -> str:
    rows = []
    for channels, side in ((16, 28), (32, 14), (96, 7), (240, 4)):
        x = torch.randn(64, channels, side, side)
        dims = [0, 2, 3]

        def two_pass():
            return (x - x.mean(dims, keepdim=True)).square_().mean(dims)

        rows.append([f"64x{channels}x{side}x{side}",
                     f"{median_ms(lambda: x.var(dims, unbiased=False), args.runs * 4, 1):.2f}",
                     f"{median_ms(two_pass, args.runs * 4, 1):.2f}"])
    return markdown_table(["activation", "Tensor.var (ms)", "two passes (ms)"], rows)


def part_channels_last(args, archs) -> str:
    runners, params = _networks(archs, len(archs) // 8, 6)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    rows = []
    for k, (runner, p) in enumerate(zip(runners, params)):
        cells = [f"network {k}"]
        for last in (False, True):
            xx = x.contiguous(memory_format=torch.channels_last) if last else x
            pp = {n: (v.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
                      if last and v.dim() == 4 else v) for n, v in p.items()}
            cells.append(f"{median_ms(lambda: F.cross_entropy(runner(xx, pp), y).backward(), args.runs, 1):.0f}")
        rows.append(cells)
    return markdown_table(["W4A4, forward + backward, 1 thread", "default (ms)",
                           "channels_last (ms)"], rows)


def part_shape_check(args, archs) -> str:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.func import functional_call

    rows = []
    for name in ("resnet50", "densenet121", "mobilenet_v2"):
        model = build_torchvision(name).eval()

        def real():
            with torch.inference_mode():
                return model(torch.zeros(1, 3, 224, 224))

        def meta():
            state = {k: torch.empty_like(v, device="meta")
                     for k, v in [*model.named_parameters(), *model.named_buffers()]}
            with torch.inference_mode():
                return functional_call(model, state, (torch.zeros(1, 3, 224, 224, device="meta"),))

        def fake():
            with FakeTensorMode(allow_non_fake_inputs=True):
                return model(torch.zeros(1, 3, 224, 224))

        graph = fx_graph(model, name)

        def rules():
            return check_input_shape(model, graph, (1, 3, 224, 224), name)

        rows.append([name] + [f"{median_ms(fn, args.runs, 2):.0f}"
                              for fn in (real, meta, fake, rules)])
    return markdown_table(["224x224, batch 1", "real forward (ms)", "meta tensors (ms)",
                           "FakeTensorMode (ms)", "shape rules (ms)"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"any of {', '.join(PARTS)}")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--graphs", default="graphs/efficient-fmnist-10k")
    parser.add_argument("--num-archs", type=int, default=10000)
    args = parser.parse_args()
    parts = args.parts.split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    torch.set_num_threads(2)
    _ensure_graphs(args)
    archs = ArchGraphDataset(args.graphs, "efficient", "train", args.num_archs, 0, (1, 28, 28), 10)
    for part in parts:
        print(f"\n{part} (CPU, median of {args.runs}):\n")
        print(globals()[f"part_{part.replace('-', '_')}"](args, archs), flush=True)
    print(f"\nCommand: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
