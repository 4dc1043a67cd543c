"""Memory of the trainer's cached runners: resident MB per runner, kept with the
network's own parameters and released (``QuantizedModel.release_parameters()``).

Builds runners for the first ``--count`` architectures of each dataset root (in
separate processes, so one measurement does not free memory for the other) and prints
the growth of the resident set per runner.

    python scripts/bench_runner_memory.py --graphs graphs/efficient-fmnist-10k [--count 200]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import warnings

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)


def measure(root: str, count: int, release: bool) -> float:
    """Resident MB per runner for ``count`` architectures of ``root``."""
    from ghn_pyg.data import ArchGraphDataset
    from ghn_pyg.quant import quantize

    data = ArchGraphDataset.open(root)
    gc.collect()
    start = _resident_bytes()
    kept = []
    for i in range(min(count, len(data))):
        runner = quantize(data.build_module(i, device="cpu"), None, (1, *data.in_shape),
                          bn="batch", graph=data[i])
        kept.append(runner.release_parameters() if release else runner)
    gc.collect()
    return (_resident_bytes() - start) / len(kept) / 2**20


def _resident_bytes() -> int:
    """This process's resident set (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", nargs="+", required=True, help="dataset roots")
    parser.add_argument("--count", type=int, default=200, help="runners per dataset")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.count, args.child[1] == "released")))
        return
    from ghn_pyg.report import markdown_table

    rows = []
    for root in args.graphs:
        cells = [root]
        for mode in ("kept", "released"):
            done = subprocess.run([sys.executable, __file__, "--graphs", root, "--count",
                                   str(args.count), "--child", root, mode],
                                  capture_output=True, text=True, check=True)
            cells.append(f"{json.loads(done.stdout.splitlines()[-1]):.2f}")
        rows.append(cells)
    print(f"resident MB per runner, {args.count} runners per dataset")
    print(markdown_table(["dataset", "with parameters", "released"], rows))


if __name__ == "__main__":
    main()
