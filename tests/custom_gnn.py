"""A user-defined GNN layer importable as 'tests.custom_gnn:MeanConvLayer' in tests."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing


class MeanConv(MessagePassing):
    """x_v <- x_v + ReLU(W mean_{u -> v} x_u)."""

    def __init__(self, hid: int) -> None:
        super().__init__(aggr="mean")
        self.lin = nn.Linear(hid, hid)

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, x, edge_index):
        return x + torch.relu(self.lin(self.propagate(edge_index, x=x)))


class MeanConvLayer(nn.Module):
    """The GHN interface: (hid, T, s_max) and forward(x, graph, s_max=None)."""

    def __init__(self, hid: int, T: int = 1, s_max: int = 50) -> None:
        super().__init__()
        self.convs = nn.ModuleList(MeanConv(hid) for _ in range(T))

    def forward(self, x, graph, s_max=None):
        edge_index = torch.cat([graph.edge_index, graph.edge_index.flip(0)], dim=1)
        for conv in self.convs:
            x = conv(x, edge_index)
        return x
