"""DAG topology: longest-path levels and shortest-path virtual edges."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["levels", "virtual_edges"]


def levels(num_nodes: int, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Longest-path depths of a DAG whose nodes are in topological order.

    Args:
        num_nodes: N.
        edge_index: [2, E] long, every edge from a lower to a higher node index.

    Returns:
        ``(level_fw, level_bw)``, each [N] long: the longest path length from any
        source to the node, and from the node to any sink.
    """
    src, dst = edge_index.tolist()
    fw = [0] * num_nodes
    for u, v in sorted(zip(src, dst), key=lambda e: e[1]):
        if fw[u] + 1 > fw[v]:
            fw[v] = fw[u] + 1
    bw = [0] * num_nodes
    for u, v in sorted(zip(src, dst), key=lambda e: -e[0]):
        if bw[v] + 1 > bw[u]:
            bw[u] = bw[v] + 1
    return torch.tensor(fw, dtype=torch.long), torch.tensor(bw, dtype=torch.long)


def virtual_edges(num_nodes: int, edge_index: torch.Tensor,
                  s_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs joined by a directed path of length 1..``s_max``.

    Dynamic programming in reverse topological order over a dense distance matrix:
    ``d(u, .) = 1 + min over successors w of d(w, .)``, with ``d(u, w) = 1``.

    Args:
        num_nodes: N.
        edge_index: [2, E] long, every edge from a lower to a higher node index.
        s_max: the largest path length kept (>= 1).

    Returns:
        ``(dist_index, dist)``: [2, D] long pairs (u, v) sorted by u then v, and
        [D] long shortest path lengths.
    """
    if s_max < 1:
        raise ValueError(f"s_max must be >= 1, got {s_max}")
    unreachable = np.iinfo(np.int32).max // 2
    dist = np.full((num_nodes, num_nodes), unreachable, dtype=np.int32)
    successors: list[list[int]] = [[] for _ in range(num_nodes)]
    for u, v in edge_index.t().tolist():
        successors[u].append(v)
    for u in range(num_nodes - 1, -1, -1):
        succ = successors[u]
        if not succ:
            continue
        row = dist[succ[0]] if len(succ) == 1 else dist[succ].min(axis=0)
        np.add(row, 1, out=dist[u])
        dist[u, succ] = 1
    src, dst = np.nonzero(dist <= s_max)
    dist_index = torch.from_numpy(np.stack([src, dst]).astype(np.int64))
    return dist_index, torch.from_numpy(dist[src, dst].astype(np.int64))
