"""Folding rules of the tracer on small hand-written networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

import ghn_pyg
from ghn_pyg import GraphBuildError, trace

from .conftest import zoo_graph


def edges(graph):
    return sorted(map(tuple, graph.edge_index.t().tolist()))


def summary(graph):
    return list(zip(graph.op_names(), graph.act_names()))


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, groups=1):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    def __init__(self, c, classes=10):
        super().__init__()
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(x.view(x.size(0), -1))


def test_activations_fold_and_reshapes_vanish():
    model = nn.Sequential(ConvBNReLU(3, 8), nn.Dropout(0.2), nn.Identity(), nn.Flatten(0, 0),
                          ConvBNReLU(8, 8), Head(8))
    graph = trace(model)
    assert summary(graph) == [("input", "none"), ("conv", "none"), ("batch_norm", "relu"),
                              ("conv", "none"), ("batch_norm", "relu"),
                              ("global_avg_pool", "none"), ("linear", "none")]
    assert edges(graph) == [(i, i + 1) for i in range(6)]
    assert graph.num_classes == 10


class RawAndActivated(nn.Module):
    """y feeds both relu(y) and the sum: folding relu into y's node would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.head = Head(4)

    def forward(self, x):
        y = self.conv(x)
        return self.head(y + torch.relu(y))


def test_activation_on_a_shared_value_gets_its_own_node():
    graph = trace(RawAndActivated())
    assert summary(graph)[:4] == [("input", "none"), ("conv", "none"), ("act", "relu"),
                                  ("add", "none")]
    assert (1, 3) in edges(graph) and (1, 2) in edges(graph) and (2, 3) in edges(graph)


class TwoActivations(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.head = Head(4)

    def forward(self, x):
        return self.head(torch.sigmoid(F.relu(self.conv(x))))


def test_second_activation_in_a_row_is_a_node():
    assert summary(trace(TwoActivations()))[1:3] == [("conv", "relu"), ("act", "sigmoid")]


class ShuffleBlock(nn.Module):
    """chunk, a branch, cat and a channel shuffle (view/transpose/contiguous/view)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.branch = ConvBNReLU(4, 4, groups=4)
        self.head = Head(8)

    def forward(self, x):
        x = self.stem(x)
        left, right = x.chunk(2, dim=1)
        x = torch.cat((left, self.branch(right)), dim=1)
        b, c, h, w = x.size()
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)
        return self.head(x)


def test_chunk_cat_and_channel_shuffle_give_the_right_dag():
    graph = trace(ShuffleBlock())
    assert summary(graph) == [("input", "none"), ("conv", "none"), ("dw_conv", "none"),
                              ("batch_norm", "relu"), ("concat", "none"),
                              ("global_avg_pool", "none"), ("linear", "none")]
    assert edges(graph) == [(0, 1), (1, 2), (1, 4), (2, 3), (3, 4), (4, 5), (5, 6)]


class LayerScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.gamma = nn.Parameter(torch.ones(4, 1, 1))
        self.head = Head(4)

    def forward(self, x):
        y = self.conv(x)
        return self.head(x.mean(1, keepdim=True) + self.gamma * y)


def test_learned_scale_parameter_becomes_a_mul_node():
    graph = trace(LayerScale())
    ops = graph.op_names()
    v = ops.index("mul")
    assert graph.param_names[v] == ["gamma"]
    assert graph.shape[v].tolist() == [4, 0, 0, 0]
    assert (1, v) in edges(graph)


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = Head(3)

    def forward(self, x):
        return self.head(self.conv(self.conv(x)))


def test_shared_module_parameters_belong_to_its_first_node():
    graph = trace(Shared())
    assert graph.op_names()[1:3] == ["conv", "conv"]
    assert graph.param_names[1] == ["conv.weight", "conv.bias"] and graph.param_names[2] == []


def test_qat_and_fused_intrinsic_modules_map_like_their_parents():
    qat_conv = torch.ao.nn.qat.Conv2d(3, 8, 3, qconfig=torch.ao.quantization.get_default_qat_qconfig())
    fused = torch.ao.nn.intrinsic.ConvBnReLU2d(nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    graph = trace(nn.Sequential(qat_conv, fused, Head(8)))
    assert summary(graph)[1:4] == [("conv", "none"), ("conv", "none"), ("batch_norm", "relu")]
    assert graph.param_names[1] == ["0.weight", "0.bias"]


class MyConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=1)


def test_unknown_parameter_module_is_an_error_until_registered(registry_guard):
    model = nn.Sequential(MyConv(), Head(4))
    with pytest.raises(GraphBuildError) as info:
        trace(model)
    message = str(info.value)
    assert "'0'" in message and "MyConv" in message and "0.weight" in message
    assert "register_op" in message
    ghn_pyg.register_op(MyConv, "conv")
    graph = trace(model)
    assert summary(graph)[1] == ("conv", "none")
    assert graph.param_names[1] == ["0.weight"] and graph.shape[1].tolist() == [4, 3, 3, 3]


def test_register_activation_and_passthrough(registry_guard):
    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    class Noise(nn.Module):
        def forward(self, x):
            return x + 0.0 * x

    model = nn.Sequential(nn.Conv2d(3, 4, 1), Swish(), Noise(), Head(4))
    ghn_pyg.register_activation(Swish, "silu")
    ghn_pyg.register_passthrough(Noise)
    assert summary(trace(model))[1:3] == [("conv", "silu"), ("global_avg_pool", "none")]
    with pytest.raises(ValueError, match="unknown activation"):
        ghn_pyg.register_activation(Swish, "swishy")
    with pytest.raises(ValueError, match="unknown primitive"):
        ghn_pyg.register_op(Swish, "convolution")
    with pytest.raises(TypeError):
        ghn_pyg.register_op(int, "conv")


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:
            return y.mean((2, 3))
        return y.amax((2, 3))


def test_data_dependent_control_flow_is_a_clear_error():
    with pytest.raises(GraphBuildError, match="torch.fx cannot trace DataDependent.*register_op"):
        trace(DataDependent())


def test_rejected_input_shape_names_the_shape():
    with pytest.raises(GraphBuildError, match=r"rejected an input of shape \(1, 1, 32, 32\)"):
        trace(nn.Sequential(nn.Conv2d(3, 4, 3), Head(4)), (1, 1, 32, 32))
    with pytest.raises(ValueError, match="s_max"):
        trace(nn.Sequential(nn.Conv2d(3, 4, 3), Head(4)), s_max=0)


def test_trace_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(ConvBNReLU(3, 8), nn.Dropout(0.5), Head(8))
    model.train()
    model[0].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    trace(model)
    assert [m.training for m in model.modules()] == modes
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_batching_offsets_every_index_field():
    graphs = [zoo_graph(n) for n in ("resnet18", "squeezenet1_0", "mobilenet_v3_small")]
    batch = Batch.from_data_list(graphs)
    offset = 0
    for i, g in enumerate(graphs):
        part = batch.get_example(i)
        assert torch.equal(part.edge_index, g.edge_index)
        assert torch.equal(part.dist_index, g.dist_index)
        mask = batch.batch == i
        assert int(mask.sum()) == g.num_nodes
        lo = batch.ptr[i]
        e_mask = (batch.edge_index[0] >= lo) & (batch.edge_index[0] < lo + g.num_nodes)
        assert torch.equal(batch.edge_index[:, e_mask] - offset, g.edge_index)
        d_mask = (batch.dist_index[0] >= lo) & (batch.dist_index[0] < lo + g.num_nodes)
        assert torch.equal(batch.dist_index[:, d_mask] - offset, g.dist_index)
        offset += g.num_nodes
    assert torch.equal(batch.level_fw, torch.cat([g.level_fw for g in graphs]))
    assert batch.in_shape.shape == (3, 3)
    assert batch.num_classes.tolist() == [1000] * 3
    assert batch.name == ["resnet18", "squeezenet1_0", "mobilenet_v3_small"]
    assert batch.param_names[1] == graphs[1].param_names

    loader = DataLoader(graphs, batch_size=2)
    sizes = [b.num_graphs for b in loader]
    assert sizes == [2, 1]


def test_to_networkx_carries_node_attributes():
    graph = zoo_graph("resnet18")
    nxg = graph.to_networkx()
    assert nxg.number_of_nodes() == graph.num_nodes
    assert nxg.number_of_edges() == graph.edge_index.shape[1]
    assert nxg.nodes[1]["op"] == "conv" and nxg.nodes[1]["shape"] == (64, 3, 7, 7)
    assert nxg.nodes[1]["params"] == ["conv1.weight"]


def test_instance_norm_is_a_group_norm_node_the_ghn_can_fill():
    from ghn_pyg import GHN
    from ghn_pyg.quant import quantize

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.InstanceNorm2d(4, affine=True), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    graph = trace(model, (1, 1, 8, 8))
    assert "group_norm" in graph.op_names()
    params = GHN(hid=8, max_shape=(8, 8, 3, 3))(graph)[0]
    assert params["1.weight"].shape == (4,)
    out = quantize(model, None, (1, 1, 8, 8))(torch.randn(2, 1, 8, 8), params)
    assert out.shape == (2, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("conv", [nn.Conv1d(1, 4, 3), nn.Conv3d(1, 4, 3)])
def test_non_2d_convolutions_are_refused_by_name(conv):
    shape = (1, 1, 8) if isinstance(conv, nn.Conv1d) else (1, 1, 8, 8, 8)
    with pytest.raises(GraphBuildError, match=f"{type(conv).__name__} is not supported.*2-D"):
        trace(nn.Sequential(conv, nn.ReLU()), shape)
