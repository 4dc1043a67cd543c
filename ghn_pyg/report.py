"""Plain-text reports: markdown tables for the CLI, benchmarks and the README, and the
benchmark scripts' timer."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch

__all__ = ["markdown_table", "median_ms"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Format ``rows`` under ``header`` as an aligned GitHub-markdown table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    for row in cells:
        if len(row) != len(header):
            raise ValueError(f"row {row} has {len(row)} cells, header has {len(header)}")
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def median_ms(fn: Callable[[], object], runs: int, threads: int | None = None) -> float:
    """Median wall time of ``fn`` in milliseconds over ``runs`` calls after one warm-up
    call, at ``threads`` torch intra-op threads (``None``: as they are; restored after)."""
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(saved)
    return 1000 * statistics.median(times)
