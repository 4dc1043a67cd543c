"""The level-synchronous GatedGNN against a plain node-by-node oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch

from ghn_pyg.graph.archgraph import ArchGraph
from ghn_pyg.graph.topology import levels, virtual_edges
from ghn_pyg.nn import GatedGNN
from ghn_pyg.nn.sweep import level_sweep


def random_dag(rng: torch.Generator, n: int, s_max: int) -> ArchGraph:
    """A connected DAG: node v > 0 has 1-3 predecessors among the previous nodes."""
    edges = set()
    for v in range(1, n):
        k = int(torch.randint(1, min(3, v) + 1, (1,), generator=rng))
        for u in torch.randperm(v, generator=rng)[:k].tolist():
            edges.add((u, v))
    edge_index = torch.tensor(sorted(edges), dtype=torch.long).t().reshape(2, -1)
    fw, bw = levels(n, edge_index)
    dist_index, dist = virtual_edges(n, edge_index, s_max)
    return ArchGraph(edge_index=edge_index, dist_index=dist_index, dist=dist, level_fw=fw,
                     level_bw=bw, num_nodes=n)


def oracle(gnn: GatedGNN, x: torch.Tensor, graphs: list[ArchGraph], s: int) -> torch.Tensor:
    """GHN-2's update, one node at a time, one graph at a time."""
    out, offset = [], 0
    for g in graphs:
        n = g.num_nodes
        h = [x[offset + v] for v in range(n)]
        pairs = [(u, v, d) for (u, v), d in zip(g.dist_index.t().tolist(), g.dist.tolist())
                 if d <= s]
        for _ in range(gnn.T):
            for backward in (False, True):
                order = range(n - 1, -1, -1) if backward else range(n)
                for v in order:
                    m = torch.zeros_like(h[v])
                    for a, b, d in pairs:
                        sender, receiver = (b, a) if backward else (a, b)
                        if receiver != v:
                            continue
                        if d == 1:
                            m = m + gnn.mlp(h[sender])
                        m = m + gnn.mlp_ve(h[sender]) / d
                    h[v] = gnn.gru(m.unsqueeze(0), h[v].unsqueeze(0)).squeeze(0)
        out.append(torch.stack(h))
        offset += n
    return torch.cat(out)


@settings(max_examples=16, deadline=None)
@given(st.lists(st.integers(1, 14), min_size=1, max_size=4), st.integers(1, 2),
       st.integers(1, 5), st.booleans(), st.booleans(), st.integers(0, 10_000))
def test_matches_oracle_outputs_and_gradients(sizes, T, s, dense, message_relu, seed):
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    graphs = [random_dag(rng, n, s_max=6) for n in sizes]
    batch = Batch.from_data_list(graphs)
    gnn = GatedGNN(hid=8, T=T, s_max=6, dense_limit=10_000 if dense else 0,
                   message_relu=message_relu).double()
    x = torch.randn(batch.num_nodes, 8, dtype=torch.float64, requires_grad=True)

    inputs = [x, *gnn.parameters()]

    def grads(out):
        found = torch.autograd.grad(out.sin().sum(), inputs, allow_unused=True)
        return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, found)]

    ours = gnn(x, batch, s_max=s)
    ref = oracle(gnn, x, graphs, s)
    assert (ours - ref).abs().max() <= 1e-6
    for a, b in zip(grads(ours), grads(ref)):
        assert (a - b).abs().max() <= 1e-6


def test_schedule_steps_equal_the_deepest_graph():
    rng = torch.Generator().manual_seed(0)
    graphs = [random_dag(rng, n, 50) for n in (5, 30, 12)]
    batch = Batch.from_data_list(graphs)
    fw, bw = GatedGNN(8).schedules(batch)
    deepest = max(int(g.level_fw.max()) + 1 for g in graphs)
    assert fw.num_levels == deepest and bw.num_levels == max(int(g.level_bw.max()) + 1 for g in graphs)


def test_bad_arguments():
    with pytest.raises(ValueError, match="T and s_max"):
        GatedGNN(8, T=0)
    rng = torch.Generator().manual_seed(0)
    batch = Batch.from_data_list([random_dag(rng, 5, 3)])
    with pytest.raises(ValueError, match="run-time s_max"):
        GatedGNN(8, s_max=3)(torch.randn(5, 8), batch, s_max=4)
    gnn = GatedGNN(8, s_max=3, message_relu=True)
    schedule = gnn.schedules(batch)[0]
    tensors = [torch.randn(5, 24), torch.randn(5, 8), torch.randn(5, 8), torch.randn(8, 8),
               torch.randn(8), torch.randn(16, 48), torch.zeros(48), schedule]
    with pytest.raises(ValueError, match="second_weight and second_bias together"):
        level_sweep(*tensors, second_weight=torch.randn(8, 16))


@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dense", [True, False])
def test_mixed_precision_runs_the_sweep_in_float32(dense, input_dtype):
    rng = torch.Generator().manual_seed(1)
    batch = Batch.from_data_list([random_dag(rng, n, 6) for n in (9, 14)])
    torch.manual_seed(1)
    gnn = GatedGNN(hid=8, s_max=6, dense_limit=10_000 if dense else 0)
    x = torch.randn(batch.num_nodes, 8, requires_grad=True)
    ref = gnn(x, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gnn(x.to(input_dtype), batch)  # bfloat16 input: bfloat16 coefficients too
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.05  # bfloat16 inputs, float32 sweep
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and all(p.grad is not None for p in gnn.parameters())
