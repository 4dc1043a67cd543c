"""Benchmark ArchGraph construction on the torchvision zoo.

Prints, per model: nodes, edges, levels, virtual edges (pairs within s_max) and the
median wall time of ``trace`` (fx trace, the shape run, folding, levels and virtual
edges) over several runs after one warm-up run.

    python scripts/bench_graph.py [--runs 5] [--s-max 50] [--threads 2] [--image-size 32]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg import trace  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.spaces import ZOO, build_torchvision, zoo_input_shape  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per model")
    parser.add_argument("--s-max", type=int, default=50, help="virtual edge cutoff")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--models", nargs="*", default=list(ZOO), help="subset of the zoo")
    parser.add_argument("--image-size", type=int, default=32,
                        help="input side (224 compares with GHN-2's ImageNet-size build)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for name in args.models:
        model = build_torchvision(name)
        shape = zoo_input_shape(name, args.image_size)
        trace(model, shape, s_max=args.s_max)  # warm-up
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            graph = trace(model, shape, s_max=args.s_max)
            times.append(time.perf_counter() - start)
        rows.append((name, graph.num_nodes, graph.edge_index.shape[1],
                     int(graph.level_fw.max()) + 1, graph.dist.numel(),
                     f"{statistics.median(times) * 1e3:.1f}"))
        print(f"{name}: {rows[-1][-1]} ms", flush=True)
    print()
    print(markdown_table(("model", "nodes", "edges", "levels", f"virtual (s_max={args.s_max})",
                          f"build ms (median of {args.runs})"), rows))


if __name__ == "__main__":
    main()
