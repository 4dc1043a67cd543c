"""Benchmark ArchGraph construction on the torchvision zoo.

Prints, per model: nodes, edges, levels, virtual edges (pairs within s_max) and the
median wall time of ``trace`` (fx trace, the shape check, folding, levels and virtual
edges) over several runs after one warm-up run. Beside it, in the same run: the fx
trace alone, the shape check alone (:func:`ghn_pyg.graph.shapes.check_input_shape`) and
the model's own batch-1 forward on the same input, which is what the shape check cost
before it ran on shape rules (the build then was ``build - check + forward``).

    python scripts/bench_graph.py [--runs 5] [--s-max 50] [--threads 2] [--image-size 32]
"""

from __future__ import annotations

import argparse
import warnings

import torch

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg import trace  # noqa: E402
from ghn_pyg.graph.shapes import check_input_shape  # noqa: E402
from ghn_pyg.graph.tracer import fx_graph  # noqa: E402
from ghn_pyg.report import markdown_table, median_ms  # noqa: E402
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
        model = build_torchvision(name).eval()
        shape = zoo_input_shape(name, args.image_size)
        graph = trace(model, shape, s_max=args.s_max)
        fx = fx_graph(model, name)

        def forward() -> None:
            with torch.inference_mode():
                model(torch.zeros(shape))

        times = {label: median_ms(fn, args.runs) for label, fn in (
            ("build", lambda: trace(model, shape, s_max=args.s_max)),
            ("fx", lambda: fx_graph(model, name)),
            ("check", lambda: check_input_shape(model, fx, shape, name)),
            ("forward", forward))}
        rows.append((name, graph.num_nodes, graph.edge_index.shape[1],
                     int(graph.level_fw.max()) + 1, graph.dist.numel(),
                     *(f"{times[k]:.1f}" for k in ("fx", "check", "forward", "build"))))
        print(f"{name}: build {times['build']:.1f} ms", flush=True)
    print(f"\n{args.image_size}x{args.image_size} inputs (or the model's minimum), {args.threads} "
          f"threads; ms, median of {args.runs}")
    print(markdown_table(("model", "nodes", "edges", "levels", f"virtual (s_max={args.s_max})",
                          "fx trace", "shape check", "model forward", "build"), rows))


if __name__ == "__main__":
    main()
