"""Benchmark building architecture-graph datasets.

Graphs per second to sample, build, trace and store ``efficient`` and ``cells``
architectures (1x28x28 input, 10 classes) with 1 and 2 worker processes, and bytes
per graph on disk. Throughput is over the whole build, worker start-up (a few seconds
of spawning Python processes) included, so large sizes show the steady state. Each setting builds a fresh dataset in
a temporary folder.

    python scripts/bench_dataset.py [--efficient 3000] [--cells 200] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg.data import ArchGraphDataset  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--efficient", type=int, default=3000, help="efficient graphs per run")
    parser.add_argument("--cells", type=int, default=200, help="cells graphs per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rows = []
    for space, size in (("efficient", args.efficient), ("cells", args.cells)):
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as root:
                start = time.perf_counter()
                data = ArchGraphDataset(root, space, "train", size=size, workers=workers,
                                        progress=False)
                seconds = time.perf_counter() - start
                nodes = sum(data[i].num_nodes for i in range(0, len(data), 10)) / len(range(0, len(data), 10))
                rows.append((space, workers, size, f"{nodes:.0f}", f"{size / seconds:.0f}",
                             f"{data.bytes_per_graph() / 1024:.1f}"))
            print(" ".join(map(str, rows[-1])), flush=True)
    print()
    print(markdown_table(("space", "workers", "graphs", "mean nodes", "graphs/s",
                          "KB per graph"), rows))


if __name__ == "__main__":
    main()
