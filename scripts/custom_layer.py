"""Plug a user-written PyG MessagePassing layer into a GHN and train it for a few steps.

The GNN interface is small: the class takes ``(hid, T=..., s_max=...)`` and maps node
features ``x`` [N, hid] with ``forward(x, graph, s_max=None)``, where ``graph`` is the
PyG ``Batch`` of ArchGraphs (``edge_index``, ``dist_index``, ``dist``, ``level_fw``,
...). Register it under a name, or pass ``"package.module:Class"``.

Training here uses synthetic images and three small CNNs: each step the GHN predicts
all their parameters in one batched forward, each network runs (fake-quantized at the
bits of its graph, float by default) with those parameters, and the mean cross-entropy
backpropagates into the GHN.

    python scripts/custom_layer.py [--steps 20] [--bits 32]
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import MessagePassing

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg import GHN, QuantSpec  # noqa: E402
from ghn_pyg.nn import register_gnn  # noqa: E402
from ghn_pyg.quant import quantize  # noqa: E402


class MaxNeighbourConv(MessagePassing):
    r"""x_v <- x_v + ReLU(W [x_v || max_{u -> v} x_u])."""

    def __init__(self, hid: int) -> None:
        super().__init__(aggr="max")
        self.lin = nn.Linear(2 * hid, hid)

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        neighbours = self.propagate(edge_index, x=x)
        return x + F.relu(self.lin(torch.cat([x, neighbours], dim=1)))


class MaxNeighbourGNN(nn.Module):
    """T rounds of :class:`MaxNeighbourConv` over the DAG's edges in both directions."""

    def __init__(self, hid: int, T: int = 1, s_max: int = 50) -> None:
        super().__init__()
        self.convs = nn.ModuleList(MaxNeighbourConv(hid) for _ in range(2 * T))

    def forward(self, x: Tensor, graph: Batch, s_max: int | None = None) -> Tensor:
        both_ways = torch.cat([graph.edge_index, graph.edge_index.flip(0)], dim=1)
        for conv in self.convs:
            x = conv(x, both_ways)
        return x


def small_cnns(num_classes: int = 10) -> list[nn.Module]:
    """Three small CNNs of different shapes for 1x28x28 inputs."""
    def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    head = lambda c: [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]  # noqa: E731
    return [nn.Sequential(*block(1, 16, 2), *block(16, 32, 2), *head(32)),
            nn.Sequential(*block(1, 8), *block(8, 16, 2), *block(16, 16), *head(16)),
            nn.Sequential(*block(1, 24, 2), *block(24, 24, 2), *block(24, 48, 2), *head(48))]


def main(argv: list[str] | None = None) -> list[float]:
    """Train for ``--steps`` steps; returns the losses."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--bits", type=int, default=32, help="bits of every conv/linear layer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    register_gnn("maxneighbour", MaxNeighbourGNN)
    ghn = GHN(hid=32, gnn="maxneighbour", T=1)
    spec = QuantSpec.uniform(args.bits)
    runners = [quantize(m, spec, (1, 1, 28, 28), bn="batch") for m in small_cnns()]
    batch = Batch.from_data_list([r.graph for r in runners])
    optimizer = torch.optim.Adam(ghn.parameters(), lr=1e-3)
    # a fixed synthetic task: the class is set by which of 10 random patterns is added
    patterns = torch.randn(10, 1, 28, 28)
    losses = []
    for step in range(args.steps):
        labels = torch.randint(0, 10, (64,))
        images = torch.randn(64, 1, 28, 28) * 0.5 + patterns[labels]
        predicted = ghn(batch)
        loss = torch.stack([F.cross_entropy(r(images, p), labels)
                            for r, p in zip(runners, predicted)]).mean()
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(ghn.parameters(), 5.0)
        optimizer.step()
        losses.append(loss.item())
        print(f"step {step + 1:3d}  loss {losses[-1]:.4f}")
    return losses


if __name__ == "__main__":
    main()
