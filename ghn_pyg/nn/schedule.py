"""Level schedules: the per-batch index plan of a level-synchronous graph sweep.

Nodes of one level (across all graphs of a batch) depend only on lower levels, so a
sweep updates a level at a time. :func:`build_schedule` computes, once per batch and
direction, everything the sweep needs, so the sweep itself never synchronises with
the host:

* ``perm``: node ids sorted by level (stable), so each level is a contiguous slice;
* ``bounds``: the (start, end) slice of every level;
* the message coefficients of every receiver: 1 for a 1-hop sender and ``1 / dist``
  for every sender within the cutoff, either as one dense [N, 2N] matrix (small
  batches: a level's messages are one matmul) or as per-level edge lists, grouped
  once by the receiver's level (the forward pass) and once by the sender's level
  (the backward pass).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

__all__ = ["SweepSchedule", "build_schedule", "DENSE_LIMIT"]

#: Batches with at most this many nodes use the dense coefficient matrix.
DENSE_LIMIT = 3072


@dataclass
class SweepSchedule:
    """The plan of one sweep direction.

    Attributes:
        perm: [N] node id at each sorted position.
        inv_perm: [N] sorted position of each node id.
        bounds: per level, the ``(start, end)`` slice of sorted positions.
        coef: dense [N, 2N] coefficients (rows: receivers, columns: ``2 * sender`` for
            the 1-hop term and ``2 * sender + 1`` for the virtual-edge term, all in
            sorted positions), or None.
        edges: per receiving level, ``(columns, receivers, weights)`` with columns as
            in ``coef`` and receivers relative to the level start, or None.
        sender_edges: the same pairs per sending level, ``(columns, receivers,
            weights)`` with columns relative to twice the level start and receivers
            as sorted positions, or None.
    """

    perm: Tensor
    inv_perm: Tensor
    bounds: list[tuple[int, int]]
    coef: Tensor | None
    edges: list[tuple[Tensor, Tensor, Tensor]] | None
    sender_edges: list[tuple[Tensor, Tensor, Tensor]] | None = None

    @property
    def num_levels(self) -> int:
        """Number of levels, the sweep's sequential steps."""
        return len(self.bounds)

    def to(self, dtype: torch.dtype) -> "SweepSchedule":
        """The schedule with coefficients of ``dtype`` (itself if they already are)."""
        if self.coef is not None:
            if self.coef.dtype == dtype:
                return self
            return replace(self, coef=self.coef.to(dtype))
        if not self.edges or self.edges[0][2].dtype == dtype:
            return self
        return replace(self, edges=[(c, r, w.to(dtype)) for c, r, w in self.edges],
                       sender_edges=[(c, r, w.to(dtype)) for c, r, w in self.sender_edges])


def build_schedule(level: Tensor, dist_index: Tensor, dist: Tensor, s_max: int,
                   reverse: bool = False, dense_limit: int = DENSE_LIMIT,
                   dtype: torch.dtype = torch.float32) -> SweepSchedule:
    """Plan a sweep.

    Args:
        level: [N] level of each node in the sweep's direction (``level_fw`` for the
            forward sweep, ``level_bw`` for the backward one).
        dist_index: [2, D] pairs (u, v) with a path u -> v; dist: [D] its length.
        s_max: run-time cutoff; pairs with ``dist > s_max`` are ignored.
        reverse: messages flow v -> u (the backward sweep).
        dense_limit: use the dense coefficient matrix up to this many nodes.
        dtype: dtype of the coefficients.

    Returns:
        The :class:`SweepSchedule`. One host synchronisation (the level sizes), three
        with edge lists (their per-level counts).
    """
    n = level.numel()
    device = level.device
    perm = torch.argsort(level, stable=True)
    inv_perm = torch.empty_like(perm)
    inv_perm[perm] = torch.arange(n, device=device)
    sizes = torch.bincount(level, minlength=int(level.max()) + 1 if n else 0).tolist()
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size

    keep = dist <= s_max
    send, recv = dist_index[0][keep], dist_index[1][keep]
    if reverse:
        send, recv = recv, send
    d = dist[keep].to(dtype)
    send, recv = inv_perm[send], inv_perm[recv]
    one_hop = d == 1
    # every pair contributes 1/dist to the virtual-edge term; 1-hop pairs also 1 to the MLP term
    columns = torch.cat([2 * send[one_hop], 2 * send + 1])
    receivers = torch.cat([recv[one_hop], recv])
    weights = torch.cat([torch.ones_like(d[one_hop]), 1.0 / d])

    if n <= dense_limit:
        coef = torch.zeros(n, 2 * n, dtype=dtype, device=device)
        coef.index_put_((receivers, columns), weights, accumulate=True)
        return SweepSchedule(perm, inv_perm, bounds, coef, None)

    level_sorted = torch.repeat_interleave(torch.arange(len(sizes), device=device),
                                           torch.tensor(sizes, device=device))
    edges = _group_by_level(columns, receivers, weights, level_sorted[receivers], bounds)
    edges = [(cols, rec - lo, w) for (lo, _), (cols, rec, w) in zip(bounds, edges)]
    sender_edges = _group_by_level(columns, receivers, weights, level_sorted[columns // 2],
                                   bounds)
    sender_edges = [(cols - 2 * lo, rec, w) for (lo, _), (cols, rec, w) in zip(bounds, sender_edges)]
    return SweepSchedule(perm, inv_perm, bounds, None, edges, sender_edges)


def _group_by_level(columns: Tensor, receivers: Tensor, weights: Tensor, key: Tensor,
                    bounds: list[tuple[int, int]]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Split the pairs into one ``(columns, receivers, weights)`` group per level ``key``."""
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(key, minlength=len(bounds)).tolist()
    return list(zip(columns[order].split(counts), receivers[order].split(counts),
                    weights[order].split(counts)))
