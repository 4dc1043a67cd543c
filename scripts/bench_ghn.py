"""Benchmark the GHN: GatedGNN sweeps and full parameter prediction.

For resnet18, resnet50, mobilenet_v2, densenet121 and a batch of all four (hid 32,
s_max 50, T 1), medians over ``--runs`` runs after warm-up, in milliseconds:

* ``gnn fwd``: the GatedGNN forward without autograd, schedule building included;
* ``gnn fwd+bwd``: forward and backward of a loss on its output;
* ``predict``: the whole GHN (encoder, GatedGNN, decoders) from the graph;
* ``predict-all``: ``GHN.predict(model)``, trace + predict from the nn.Module into new
  tensors (single models only);
* ``predict-all (load)``: ``GHN.predict(model, load=True)``, the same written straight
  into the model's parameters (what GHN-2's ``ghn(model)`` does);
* on CUDA with ``--cuda-graph``: ``gnn fwd (graph)``, one replay of the GatedGNN
  forward captured with ``torch.cuda.graph`` for that batch's schedule.

``--malloc reuse`` (the default, what ``ghn-pyg`` does) keeps freed memory in the
process (:func:`ghn_pyg.runtime.reuse_freed_memory`); ``--malloc system`` leaves
glibc's defaults, under which every new tensor of predictions is page-faulted in.

    python scripts/bench_ghn.py [--device cpu|cuda] [--runs 7] [--threads 2] [--cuda-graph]
        [--malloc reuse|system] [--image-size 32] [--models NAME ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Callable

import torch

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from torch_geometric.data import Batch  # noqa: E402

from ghn_pyg import GHN, trace  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.runtime import reuse_freed_memory  # noqa: E402
from ghn_pyg.spaces import build_torchvision  # noqa: E402

MODELS = ("resnet18", "resnet50", "mobilenet_v2", "densenet121")


def timed(fn: Callable[[], object], runs: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in ms (synchronising CUDA around each run)."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def graphed_gnn(ghn: GHN, batch: Batch) -> Callable[[], torch.Tensor]:
    """Capture the GatedGNN forward of ``batch`` in a CUDA graph; return its replay."""
    with torch.no_grad():
        x = ghn.encoder(batch)
        schedules = ghn.gnn.schedules(batch)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                ghn.gnn(x, batch, schedules=schedules)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = ghn.gnn(x, batch, schedules=schedules)

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cuda-graph", action="store_true", help="also time CUDA-graph replay")
    parser.add_argument("--malloc", choices=("reuse", "system"), default="reuse")
    parser.add_argument("--image-size", type=int, default=32,
                        help="input side of the graphs and of predict-all (224: ImageNet size)")
    parser.add_argument("--models", nargs="*", default=list(MODELS), help="subset")
    args = parser.parse_args()
    if args.malloc == "reuse" and not reuse_freed_memory():
        print("note: could not change malloc's settings (not glibc); measuring the defaults")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    ghn = GHN(hid=32, s_max=50).to(device).eval()
    shape = (1, 3, args.image_size, args.image_size)
    models = {name: build_torchvision(name) for name in args.models}
    graphs = {name: trace(m, shape, name=name) for name, m in models.items()}
    cases = {name: Batch.from_data_list([g]) for name, g in graphs.items()}
    if len(graphs) > 1:
        cases[f"all {len(graphs)} (batch)"] = Batch.from_data_list(list(graphs.values()))

    header = ["graph", "nodes", "levels", "gnn fwd", "gnn fwd+bwd", "predict", "predict-all",
              "predict-all (load)"]
    if args.cuda_graph:
        header.insert(4, "gnn fwd (graph)")
    rows = []
    for name, batch in cases.items():
        batch = batch.to(device)

        def gnn_forward() -> None:
            with torch.no_grad():
                ghn.gnn(ghn.encoder(batch), batch)

        def gnn_backward() -> None:
            x = ghn.encoder(batch)
            ghn.gnn(x, batch).square().mean().backward()

        def predict() -> None:
            with torch.no_grad():
                ghn(batch)

        row = [name, batch.num_nodes, int(batch.level_fw.max()) + 1,
               f"{timed(gnn_forward, args.runs, device):.1f}"]
        if args.cuda_graph:
            row.append(f"{timed(graphed_gnn(ghn, batch), args.runs, device):.2f}")
        row += [f"{timed(gnn_backward, args.runs, device):.1f}",
                f"{timed(predict, args.runs, device):.1f}"]
        if name in models:
            model = models[name].to(device)
            row += [f"{timed(lambda: ghn.predict(model, shape), args.runs, device):.1f}",
                    f"{timed(lambda: ghn.predict(model, shape, load=True), args.runs, device):.1f}"]
        else:
            row += ["-", "-"]
        rows.append(row)
        print(" ".join(map(str, row)), flush=True)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {args.threads} threads"
    print(f"\nGHN hid 32, T 1, s_max 50 on {card}, malloc {args.malloc}, inputs "
          f"{args.image_size}x{args.image_size}; ms, median of {args.runs}")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
