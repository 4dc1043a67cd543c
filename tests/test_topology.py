"""Levels and virtual edges against networkx on random DAGs."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ghn_pyg.graph.topology import levels, virtual_edges


@st.composite
def dags(draw):
    n = draw(st.integers(1, 25))
    pairs = [(u, v) for v in range(n) for u in range(v)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=60)) if pairs else []
    edge_index = (torch.tensor(sorted(chosen), dtype=torch.long).t() if chosen
                  else torch.empty(2, 0, dtype=torch.long))
    return n, edge_index


@settings(max_examples=60, deadline=None)
@given(dags(), st.integers(1, 6))
def test_against_networkx(dag, s_max):
    n, edge_index = dag
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(map(tuple, edge_index.t().tolist()))
    fw, bw = levels(n, edge_index)
    for v in range(n):
        preds, succs = list(g.predecessors(v)), list(g.successors(v))
        assert int(fw[v]) == (max(int(fw[u]) for u in preds) + 1 if preds else 0)
        assert int(bw[v]) == (max(int(bw[w]) for w in succs) + 1 if succs else 0)
    dist_index, dist = virtual_edges(n, edge_index, s_max)
    expected = {(u, v): d for u, row in nx.all_pairs_shortest_path_length(g)
                for v, d in row.items() if 1 <= d <= s_max}
    assert dict(zip(map(tuple, dist_index.t().tolist()), dist.tolist())) == expected
    assert dist_index.dtype == dist.dtype == torch.long


def test_bad_s_max():
    with pytest.raises(ValueError, match="s_max"):
        virtual_edges(2, torch.tensor([[0], [1]]), 0)
