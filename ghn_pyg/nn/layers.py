r"""PyTorch Geometric message-passing layers adapted to the GHN's GNN interface.

Every GNN of a GHN is built as ``Layer(hid, T=..., s_max=...)`` and called as
``layer(x, graph, s_max=None) -> x`` with ``x`` [N, hid] and ``graph`` a ``Batch`` of
ArchGraphs. These adapters run T rounds of a PyG layer over the virtual edges within
the cutoff, in both directions, with edge features (1 / dist, direction):

.. math::
    x \leftarrow x + \mathrm{ReLU}\big(\mathrm{conv}(x, E, e)\big).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv, GatedGraphConv, GINEConv, TransformerConv

__all__ = ["bidirectional_edges", "GGNNLayer", "GATv2Layer", "TransformerLayer", "GINELayer"]

EDGE_DIM = 2


def bidirectional_edges(graph: Any, s_max: int) -> tuple[Tensor, Tensor]:
    """Virtual edges within ``s_max`` in both directions.

    Returns:
        ``edge_index`` [2, 2D] and ``edge_attr`` [2D, 2]: (1 / dist, +1 forward or
        -1 backward).
    """
    keep = graph.dist <= s_max
    index, dist = graph.dist_index[:, keep], graph.dist[keep].to(torch.get_default_dtype())
    inv = 1.0 / dist
    forward = torch.stack([inv, torch.ones_like(inv)], dim=1)
    backward = torch.stack([inv, -torch.ones_like(inv)], dim=1)
    return torch.cat([index, index.flip(0)], dim=1), torch.cat([forward, backward])


class _EdgeConvStack(nn.Module):
    """T residual rounds of a PyG conv over :func:`bidirectional_edges`."""

    def __init__(self, hid: int, T: int, s_max: int) -> None:
        super().__init__()
        if T < 1 or s_max < 1:
            raise ValueError(f"T and s_max must be >= 1, got T={T}, s_max={s_max}")
        self.hid, self.T, self.s_max = hid, T, s_max
        self.convs = nn.ModuleList(self.make_conv(hid) for _ in range(T))

    def make_conv(self, hid: int) -> nn.Module:
        """One round's PyG layer."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Re-initialise every round's layer."""
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, x: Tensor, graph: Any, s_max: int | None = None) -> Tensor:
        """[N, hid] -> [N, hid]."""
        edge_index, edge_attr = bidirectional_edges(graph, min(s_max or self.s_max, self.s_max))
        edge_attr = edge_attr.to(x.dtype)
        for conv in self.convs:
            x = x + F.relu(conv(x, edge_index, edge_attr))
        return x


class GATv2Layer(_EdgeConvStack):
    """``torch_geometric.nn.GATv2Conv`` rounds (one head, edge features)."""

    def make_conv(self, hid: int) -> nn.Module:
        return GATv2Conv(hid, hid, heads=1, edge_dim=EDGE_DIM, add_self_loops=False)


class TransformerLayer(_EdgeConvStack):
    """``torch_geometric.nn.TransformerConv`` rounds (one head, edge features)."""

    def make_conv(self, hid: int) -> nn.Module:
        return TransformerConv(hid, hid, heads=1, edge_dim=EDGE_DIM)


class GINELayer(_EdgeConvStack):
    """``torch_geometric.nn.GINEConv`` rounds with a two-layer MLP."""

    def make_conv(self, hid: int) -> nn.Module:
        mlp = nn.Sequential(nn.Linear(hid, hid), nn.ReLU(), nn.Linear(hid, hid))
        return GINEConv(mlp, edge_dim=EDGE_DIM)


class GGNNLayer(nn.Module):
    """``torch_geometric.nn.GatedGraphConv`` (Li et al.) over the DAG in both directions.

    Args:
        hid: node features; T: propagation steps (``2 * T``, one per direction in GHN-2
        terms); s_max: unused (GatedGraphConv has no edge features).
    """

    def __init__(self, hid: int, T: int = 1, s_max: int = 50) -> None:
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.conv = GatedGraphConv(hid, num_layers=2 * T)

    def reset_parameters(self) -> None:
        """Re-initialise the GatedGraphConv."""
        self.conv.reset_parameters()

    def forward(self, x: Tensor, graph: Any, s_max: int | None = None) -> Tensor:
        """[N, hid] -> [N, hid]."""
        edge_index = torch.cat([graph.edge_index, graph.edge_index.flip(0)], dim=1)
        return self.conv(x, edge_index)
