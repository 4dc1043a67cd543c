"""Every torchvision model of the zoo traces into a consistent ArchGraph."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from ghn_pyg import GraphBuildError, trace
from ghn_pyg.graph import PRIMITIVES
from ghn_pyg.spaces import ZOO, build_torchvision

from .conftest import zoo_graph, zoo_model


@pytest.mark.parametrize("name", ZOO)
def test_zoo_graph_is_consistent(name):
    model, graph = zoo_model(name), zoo_graph(name)
    n = graph.num_nodes
    assert graph.op.shape == graph.act.shape == graph.w_bits.shape == (n,)
    assert graph.shape.shape == (n, 4) and len(graph.param_names) == n
    assert int(graph.op[0]) == PRIMITIVES.index("input")
    assert (graph.op[1:] != PRIMITIVES.index("input")).all()

    # Every parameter belongs to exactly one node.
    mapped = [p for names in graph.param_names for p in names]
    assert len(mapped) == len(set(mapped))
    assert set(mapped) == {p for p, _ in model.named_parameters()}

    # A DAG in topological order with consistent levels.
    src, dst = graph.edge_index
    assert (src < dst).all()
    assert (graph.level_fw[dst] > graph.level_fw[src]).all()
    assert (graph.level_bw[src] > graph.level_bw[dst]).all()
    assert graph.num_classes == 1000

    # Every non-input node is reached from the input.
    reach = nx.descendants(graph.to_networkx(), 0)
    assert reach == set(range(1, n))


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "shufflenet_v2_x1_0"])
def test_virtual_edges_are_shortest_paths(name):
    graph = zoo_graph(name)
    lengths = dict(nx.all_pairs_shortest_path_length(graph.to_networkx()))
    expected = {(u, v): d for u, row in lengths.items() for v, d in row.items()
                if 1 <= d <= graph.s_max}
    got = dict(zip(map(tuple, graph.dist_index.t().tolist()), graph.dist.tolist()))
    assert got == expected
    assert set(map(tuple, graph.edge_index.t().tolist())) == {
        e for e, d in got.items() if d == 1}


def test_weight_shapes_follow_the_design():
    graph = zoo_graph("mobilenet_v2")
    ops = graph.op_names()
    model = zoo_model("mobilenet_v2")
    params = dict(model.named_parameters())
    for v, op in enumerate(ops):
        if op in ("conv", "dw_conv"):
            assert graph.shape[v].tolist() == list(params[graph.param_names[v][0]].shape)
        elif op == "linear":
            out, inp = params[graph.param_names[v][0]].shape
            assert graph.shape[v].tolist() == [out, inp, 1, 1]
        elif op == "batch_norm":
            assert graph.shape[v].tolist() == [params[graph.param_names[v][0]].numel(), 0, 0, 0]
        else:
            assert graph.shape[v].tolist() == [0, 0, 0, 0]
    assert "dw_conv" in ops and "add" in ops and "global_avg_pool" in ops


def test_resnext_uses_grouped_convs():
    graph = zoo_graph("resnext50_32x4d")
    groups = graph.groups[torch.tensor([o == "group_conv" for o in graph.op_names()])]
    assert len(groups) == 16 and (groups == 32).all()


@pytest.mark.parametrize("name", ["vit_b_16", "swin_t"])
def test_attention_models_are_rejected_clearly(name):
    with pytest.raises(GraphBuildError, match="attention layers are not supported yet"):
        trace(build_torchvision(name, image_size=32) if name == "vit_b_16"
              else build_torchvision(name), (1, 3, 32, 32))


def test_densenet_memory_efficient_names_the_module():
    model = build_torchvision("densenet121", memory_efficient=True)
    with pytest.raises(GraphBuildError) as info:
        trace(model)
    message = str(info.value)
    assert "torch.fx cannot trace DenseNet" in message
    assert "_DenseLayer" in message and "register_op" in message
