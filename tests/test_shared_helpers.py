"""The helpers shared across the package: seeding, parameter loading, subsets, schema."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghn_pyg.data import first_items, load_images, split_arch_name, split_models
from ghn_pyg.graph.bits import FLOAT_BITS, bit_width, bits_label, parse_bits
from ghn_pyg.inits import default_init, init_params, load_params, seeded
from ghn_pyg.train.sgd import sgd_train

from .conftest import zoo_graph


def test_seeded_draws_from_its_seed_and_leaves_the_caller_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with seeded(7):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected_next)
    with seeded(7):
        assert torch.equal(torch.rand(3), inside)


def test_default_init_and_sgd_train_do_not_reseed_the_global_rng():
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 10))
    layers = [nn.Sequential(nn.Linear(4, 4)), nn.Sequential(nn.Linear(4, 4))]
    images = load_images("synthetic", "train", synthetic_shape=(1, 4, 4), synthetic_size=64)
    torch.manual_seed(5)
    expected_next = torch.rand(2)
    torch.manual_seed(5)
    default_init(layers[0], seed=1)
    trained = sgd_train(net, images, epochs=1, batch_size=16, lr=0.1, seed=3)
    assert torch.equal(torch.rand(2), expected_next)
    assert torch.equal(default_init(layers[1], seed=1)[0].weight, layers[0][0].weight)
    again = sgd_train(net, images, epochs=1, batch_size=16, lr=0.1, seed=3)
    assert torch.equal(trained[2].weight, again[2].weight)  # dropout draws from the seed too
    assert not torch.equal(trained[2].weight, net[2].weight)  # it trained


def test_load_params_copies_and_names_what_is_missing():
    net = nn.Linear(3, 2)
    params = init_params("he", net, seed=0)
    assert load_params(net, params) is net and torch.equal(net.weight, params["weight"])
    with pytest.raises(KeyError, match="'bias'"):
        load_params(net, {"weight": params["weight"]})


def test_first_items_and_split_models():
    data = list(range(10))
    assert list(first_items(data, 3)) == [0, 1, 2] and first_items(data, None) is data
    assert len(first_items(data, 50)) == 10
    models = split_models(2, 1, 10)
    assert [n for n, _ in models] == [split_arch_name(0), "efficient-test-01"]
    assert all(isinstance(m, nn.Module) for _, m in models)


def test_bits_helpers_and_graph_schema():
    assert bits_label(32) == "FP32" and bits_label(4) == "W4A4" and bits_label(8, 32) == "W8A32"
    with pytest.raises(ValueError, match="w: invalid bit-width 1"):
        bit_width(1, "w")
    graph = zoo_graph("resnet18")
    quantizable = graph.quantizable_nodes()
    assert set(graph.op_names()[v] for v in quantizable) <= {"conv", "dw_conv", "linear"}
    assert graph.first_last() == {quantizable[0], quantizable[-1]}
    bits = torch.full((graph.num_nodes,), 4)
    low = graph.with_bits(bits, bits)
    assert int(low.w_bits[0]) == 4 and int(graph.w_bits[0]) == FLOAT_BITS
    assert low.edge_index is graph.edge_index
    with pytest.raises(ValueError, match="w_bits of shape"):
        graph.with_bits(bits[:3], bits)


def test_median_ms_warms_up_counts_runs_and_restores_threads():
    from ghn_pyg.report import median_ms

    calls = []
    threads = torch.get_num_threads()
    seen = []
    result = median_ms(lambda: (calls.append(1), seen.append(torch.get_num_threads())), 4,
                       threads=1)
    assert len(calls) == 5 and set(seen) == {1} and result >= 0
    assert torch.get_num_threads() == threads


def test_parse_bits_checks_every_comma_separated_value():
    assert parse_bits("32,4,2", "--bits") == (32, 4, 2)
    with pytest.raises(ValueError, match="--bits: invalid bit-width 1"):
        parse_bits("4,1", "--bits")
    with pytest.raises(ValueError):
        parse_bits("4,x", "--bits")
