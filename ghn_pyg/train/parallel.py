"""Running the networks of a meta-batch concurrently on the CPU."""

from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import torch

__all__ = ["NetworkPool", "resolve_net_threads"]

T = TypeVar("T")


def resolve_net_threads(requested: int, device: torch.device) -> int:
    """The number of threads :class:`NetworkPool` uses: ``requested``, or for 0 torch's
    intra-op thread count on the CPU and 1 on an accelerator."""
    if requested > 0:
        return requested
    return torch.get_num_threads() if device.type == "cpu" else 1


class NetworkPool:
    """Calls ``fn(k)`` for every network ``k`` of a meta-batch, in ``threads`` threads.

    A meta-batch's networks are independent until their gradients meet in the GHN, and
    the small convolutions of 28x28 networks keep two intra-op threads busy only part of
    the time; running two networks at once, each op on one thread, does more work per
    second on a 2-core CPU (README, "A training step"). Every network's ops are the
    same as when they run one after another single-threaded, so its results are too.
    During :meth:`map` torch's intra-op thread count is 1 (it is process-wide), and is
    restored after.

    Args:
        threads: concurrent networks; 1 runs them one after another in the caller's
            thread (and leaves the thread count alone).
    """

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"NetworkPool needs at least one thread, got {threads}")
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ghn-net") if threads > 1 else None
        if self._pool is not None:  # stop the threads when the pool is dropped
            weakref.finalize(self, self._pool.shutdown, wait=False)

    def map(self, fn: Callable[[int], T], count: int) -> list[T]:
        """``[fn(0), ..., fn(count - 1)]``; exceptions propagate to the caller."""
        if self._pool is None or count <= 1:
            return [fn(k) for k in range(count)]
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return list(self._pool.map(fn, range(count)))
        finally:
            torch.set_num_threads(saved)

    def close(self) -> None:
        """Stop the threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
