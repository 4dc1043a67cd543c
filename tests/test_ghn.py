"""The GHN: predictions for the zoo, bits conditioning, gradients, checkpoints, layers."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from ghn_pyg import GHN, GraphBuildError, QuantSpec, annotate
from ghn_pyg.nn import CheckpointError, decoder as decoder_module
from ghn_pyg.nn.tiling import fit_to_shape
from ghn_pyg.nn.encoder import CHANNEL_BINS, nearest_bin
from ghn_pyg.spaces import ZOO, zoo_input_shape

from .conftest import zoo_graph, zoo_model


@pytest.fixture(scope="module")
def ghn():
    torch.manual_seed(0)
    return GHN(hid=32)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_predictions_have_every_name_and_shape(ghn, name):
    model = copy.deepcopy(zoo_model(name))
    with torch.no_grad():
        params = ghn(zoo_graph(name))[0]
    expected = {n: p.shape for n, p in model.named_parameters()}
    assert {n: p.shape for n, p in params.items()} == expected
    state = OrderedDict(params)
    state._metadata = model.state_dict()._metadata  # MNASNet checks its version there
    result = model.load_state_dict(state, strict=False)
    assert not [k for k in result.missing_keys if k in expected] and not result.unexpected_keys
    model.train()  # batch statistics, GHN-2's evaluation protocol
    with torch.no_grad():
        out = model(torch.randn(2, *zoo_input_shape(name)[1:]))
    assert torch.isfinite(out).all()


def test_bits_condition_the_predictions(ghn):
    graph = zoo_graph("resnet18")
    with torch.no_grad():
        fp = ghn(graph)[0]
        w4 = ghn(annotate(graph, QuantSpec.uniform(4)))[0]
        w4_again = ghn(annotate(graph, QuantSpec.uniform(4)))[0]
    assert all(torch.equal(w4[k], w4_again[k]) for k in w4)
    assert not torch.allclose(fp["layer1.0.conv1.weight"], w4["layer1.0.conv1.weight"])


def test_untrained_bits_snap_to_the_nearest_trained_bits(tmp_path):
    torch.manual_seed(0)
    ghn = GHN(hid=16)
    graph = zoo_graph("squeezenet1_0")

    def predict(bits):
        with torch.no_grad():
            return ghn(annotate(graph, QuantSpec.uniform(bits)))[0]["features.0.weight"]

    assert ghn.trained_bits is None and not torch.equal(predict(32), predict(4))
    ghn.set_trained_bits([32])  # a float GHN: every bit-width reads the float embedding
    assert torch.equal(predict(32), predict(4)) and torch.equal(predict(32), predict(2))
    ghn.set_trained_bits([8, 4, 2, 32])
    assert ghn.trained_bits == (2, 4, 8, 32)
    assert torch.equal(predict(3), predict(2)) and torch.equal(predict(6), predict(4))
    assert torch.equal(predict(16), predict(8)) and not torch.equal(predict(8), predict(4))
    again = GHN.load(ghn.save(tmp_path / "ghn.pt"))
    assert again.trained_bits == (2, 4, 8, 32)
    with pytest.raises(ValueError, match="each must be one of"):
        ghn.set_trained_bits([5, 33])
    with pytest.raises(ValueError, match="each must be one of"):
        ghn.set_trained_bits([])


def test_gradients_reach_every_ghn_parameter():
    torch.manual_seed(0)
    ghn = GHN(hid=16)
    batch = Batch.from_data_list([zoo_graph("mobilenet_v3_small"), zoo_graph("squeezenet1_0")])
    loss = sum(p.pow(2).mean() for params in ghn(batch) for p in params.values())
    loss.backward()
    missing = [n for n, p in ghn.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_same_seed_same_predictions():
    preds = []
    for _ in range(2):
        torch.manual_seed(7)
        with torch.no_grad():
            preds.append(GHN(hid=16)(zoo_graph("resnet18"))[0])
    assert all(torch.equal(preds[0][k], preds[1][k]) for k in preds[0])


def test_batch_equals_single_graphs(ghn):
    graphs = [zoo_graph(n) for n in ("resnet18", "mnasnet1_0", "squeezenet1_0")]
    with torch.no_grad():
        together = ghn(Batch.from_data_list(graphs))
        alone = [ghn(g)[0] for g in graphs]
    for a, b in zip(together, alone):
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_one_decoder_call_per_distinct_shape(ghn, monkeypatch):
    calls = []
    original = decoder_module.WeightDecoder.combine

    def counting(self, u, v, s, shape, scale=1.0):
        calls.append((tuple(shape), u.shape[0]))
        return original(self, u, v, s, shape, scale)

    monkeypatch.setattr(decoder_module.WeightDecoder, "combine", counting)
    batch = Batch.from_data_list([zoo_graph("resnet18"), zoo_graph("resnet50")])
    with torch.no_grad():
        ghn(batch)
    shapes = {tuple(s) + (1,) * (4 - len(s)) for g in ("resnet18", "resnet50")
              for n, p in zoo_model(g).named_parameters() if p.dim() > 1 for s in [p.shape]}
    assert len(calls) == len({c[0] for c in calls}) == len(shapes)
    assert sum(c[1] for c in calls) == 21 + 54


def test_shapes_beyond_max_shape_are_tiled():
    torch.manual_seed(0)
    ghn = GHN(hid=8, max_shape=(8, 8, 3, 3))
    model = nn.Sequential(nn.Conv2d(3, 20, 7, padding=3), nn.BatchNorm2d(20), nn.ReLU(),
                          nn.Conv2d(20, 20, 5, groups=20), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(20, 1000))
    params = ghn.predict(model)
    assert params["0.weight"].shape == (20, 3, 7, 7) and params["6.weight"].shape == (1000, 20)
    assert torch.equal(params["6.weight"][:8], params["6.weight"][8:16])  # tiled rows
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float).view(2, 3, 5, 5)
    assert torch.equal(fit_to_shape(x, (3, 5, 5)), x)
    assert torch.equal(fit_to_shape(x, (7, 5, 5))[:, 3:6], x)
    assert torch.equal(fit_to_shape(x.view(1, 2, 3, 5, 5), (2, 3, 3, 3))[0, :, :, 0, 0],
                       x[:, :, 1, 1])  # spatial dims are centre-cropped


def test_predict_can_load_into_the_model(ghn):
    model = copy.deepcopy(zoo_model("squeezenet1_0"))
    expected = ghn.predict(model)
    params = ghn.predict(model, load=True)
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())
    assert all(torch.equal(expected[n], params[n]) for n in expected)
    assert params["features.0.weight"].data_ptr() == model.features[0].weight.data_ptr()


def test_predictions_written_into_given_tensors(ghn):
    graph = zoo_graph("mobilenet_v2")  # tiled, cropped, depthwise and vector targets
    with torch.no_grad():
        expected = ghn(graph)[0]
        into = [{n: torch.full_like(p, float("nan"), dtype=torch.float64)
                 for n, p in expected.items()}]
        into[0]["classifier.1.weight"] = into[0]["classifier.1.weight"].t().contiguous().t()
        written = ghn(graph, into=into)[0]
    assert all(written[n] is into[0][n] for n in expected)
    assert all(torch.equal(written[n], expected[n].double()) for n in expected)


def test_unknown_vector_kind(ghn):
    with pytest.raises(ValueError, match="unknown vector kind 'gain'.*scale"):
        ghn.decoder.vectors(torch.zeros(2, 32), 5, "gain")


def test_bad_into(ghn):
    graph = zoo_graph("resnet18")
    with torch.no_grad():
        params = ghn(graph)[0]
    with pytest.raises(RuntimeError, match="torch.no_grad"):
        ghn(graph, into=[params])
    with torch.no_grad():
        missing = dict(params)
        missing.pop("fc.weight")
        with pytest.raises(ValueError, match="no tensor for 'fc.weight'"):
            ghn(graph, into=[missing])
        wrong = dict(params, **{"fc.bias": torch.zeros(3)})
        with pytest.raises(ValueError, match="'fc.bias' of graph 0 has shape"):
            ghn(graph, into=[wrong])


def test_encoder_snaps_unseen_sizes_to_the_nearest_bin():
    bins = torch.tensor(CHANNEL_BINS)
    idx = nearest_bin(torch.tensor([1000, 64, 70, 5000]), bins, log=True)
    assert [CHANNEL_BINS[i] for i in idx.tolist()] == [1024, 64, 64, 4096]


def test_bad_inputs_are_clear(ghn):
    with pytest.raises(ValueError, match="empty"):
        ghn([])
    with pytest.raises(ValueError, match="has no parameters"):
        ghn.predict(nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    with pytest.raises(GraphBuildError, match="rejected an input"):
        ghn.predict(nn.Sequential(nn.Conv2d(1, 2, 3)), input_shape=(1, 3, 8, 8))
    with pytest.raises(TypeError, match="expected a PyG Batch"):
        ghn("resnet18")
    assert ghn([zoo_graph("resnet18")])[0].keys() == ghn(zoo_graph("resnet18"))[0].keys()


def test_checkpoint_round_trip_and_errors(tmp_path, monkeypatch):
    torch.manual_seed(0)
    ghn = GHN(hid=16, T=2)
    path = ghn.save(tmp_path / "ghn.pt")
    again = GHN.load(path)
    graph = zoo_graph("resnet18")
    with torch.no_grad():
        a, b = ghn(graph)[0], again(graph)[0]
    assert again.config == ghn.config and all(torch.equal(a[k], b[k]) for k in a)

    with pytest.raises(CheckpointError, match="another GHN config.*hid: checkpoint 16 vs this GHN 32"):
        GHN(hid=32, T=2).load_weights(path)
    assert GHN(hid=16, T=2).load_weights(path) is not None

    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupted"):
        GHN.load(broken)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a ghn_pyg GHN checkpoint"):
        GHN.load(other)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        GHN.load(tmp_path / "missing.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pt", "ghn.pt", "other.pt"]

    import ghn_pyg.nn.ghn as ghn_module

    with pytest.raises(ValueError, match="no pretrained GHN 'nope'"):
        GHN.from_pretrained("nope")
    monkeypatch.setattr(ghn_module, "PRETRAINED_DIR", tmp_path)
    assert GHN.from_pretrained("ghn").config == ghn.config


@pytest.mark.parametrize("gnn", ["ggnn", "gatv2", "transformer", "gine",
                                 "tests.custom_gnn:MeanConvLayer"])
def test_pluggable_gnn_layers(gnn):
    torch.manual_seed(0)
    ghn = GHN(hid=16, gnn=gnn, T=2)
    params = ghn(Batch.from_data_list([zoo_graph("resnet18"), zoo_graph("mnasnet1_0")]))
    assert set(params[0]) == {n for n, _ in zoo_model("resnet18").named_parameters()}
    sum(p.sum() for p in params[1].values()).backward()
    assert all(p.grad is not None for p in ghn.gnn.parameters())


def test_unknown_gnn_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown GNN 'gcn'"):
        GHN(gnn="gcn")
    with pytest.raises(ValueError, match="cannot import GNN layer"):
        GHN(gnn="no.such:Layer")


def test_bad_sizes_and_shipped_names(tmp_path, monkeypatch):
    for bad in ({"hid": 0}, {"T": 0}, {"s_max": -1}, {"hid": 2.5}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            GHN(**bad)
    monkeypatch.chdir(tmp_path)
    shipped = GHN.load_any("ghn-qat-fmnist")
    assert shipped.trained_bits == GHN.from_pretrained("ghn-qat-fmnist").trained_bits
    GHN(hid=8).save(tmp_path / "ghn-qat-fmnist.pt")  # a file of that name wins
    assert GHN.load_any("ghn-qat-fmnist.pt").config["hid"] == 8
    with pytest.raises(CheckpointError, match="no-such-ghn: no such checkpoint file"):
        GHN.load_any("no-such-ghn")


def test_ghn2_reference_output_ranges():
    """bias = a tanh(s p), norm weight = 2 sigmoid(s p): GHN-2's reference ranges are the
    same raw outputs mapped through other slopes."""
    torch.manual_seed(0)
    ours = GHN(hid=16)
    theirs = GHN(hid=16, bias_range=1.0, bias_slope=0.2, norm_slope=0.5)
    theirs.load_state_dict(ours.state_dict())
    graph = zoo_graph("resnet18")
    with torch.no_grad():
        a, b = ours(graph)[0], theirs(graph)[0]
    bias, norm = "fc.bias", "bn1.weight"
    raw_bias = torch.atanh(a[bias].double() / 0.1)
    raw_norm = torch.logit(a[norm].double() / 2)
    assert torch.allclose(b[bias].double(), torch.tanh(0.2 * raw_bias), atol=1e-5)
    assert torch.allclose(b[norm].double(), 2 * torch.sigmoid(0.5 * raw_norm), atol=1e-5)
    assert torch.equal(a["conv1.weight"], b["conv1.weight"])
    assert not torch.allclose(a[bias], b[bias])
    for bad in ({"bias_range": 0.0}, {"bias_slope": -1.0}, {"norm_slope": 0.0}):
        with pytest.raises(ValueError, match="must be > 0"):
            GHN(hid=8, **bad)


def test_message_relu_is_saved_and_gatedgnn_only(tmp_path):
    torch.manual_seed(0)
    ghn = GHN(hid=16, message_relu=True, bias_range=1.0, bias_slope=0.2)
    graph = zoo_graph("resnet18")
    plain = GHN(hid=16)
    plain.load_state_dict(ghn.state_dict())
    with torch.no_grad():
        with_relu, without = ghn(graph)[0], plain(graph)[0]
    assert not torch.allclose(with_relu["conv1.weight"], without["conv1.weight"])
    again = GHN.load(ghn.save(tmp_path / "ghn.pt"))
    assert again.config["message_relu"] and again.gnn.mlp.last_relu
    with torch.no_grad():
        assert torch.equal(again(graph)[0]["conv1.weight"], with_relu["conv1.weight"])
    with pytest.raises(CheckpointError, match="message_relu: checkpoint True vs this GHN False"):
        GHN(hid=16, bias_range=1.0, bias_slope=0.2).load_weights(tmp_path / "ghn.pt")
    with pytest.raises(ValueError, match="message_relu is an option of the gatedgnn"):
        GHN(hid=16, gnn="ggnn", message_relu=True)


def test_checkpoints_older_than_the_output_range_settings_still_load(tmp_path):
    torch.manual_seed(0)
    ghn = GHN(hid=8)
    payload = ghn.payload()
    for key in ("message_relu", "bias_range", "bias_slope", "norm_slope"):
        del payload["config"][key]
    torch.save(payload, tmp_path / "old.pt")
    assert GHN.load(tmp_path / "old.pt").config == ghn.config
    assert GHN(hid=8).load_weights(tmp_path / "old.pt") is not None


def test_a_ghn_keeps_its_vocabulary_and_names_ops_it_never_saw(tmp_path, registry_guard):
    from ghn_pyg.graph.ops import (ACTIVATIONS, PRIMITIVES, register_activation_name,
                                   register_primitive)

    torch.manual_seed(0)
    ghn = GHN(hid=8)
    built_with = ghn.vocab
    graph = zoo_graph("resnet18")
    new_id = register_primitive("octave_conv")
    assert register_primitive("octave_conv") == new_id == len(PRIMITIVES) - 1
    assert ACTIVATIONS[register_activation_name("star_relu")] == "star_relu"
    assert not hasattr(PRIMITIVES, "append")  # only register_* changes the vocabulary
    assert ghn.vocab == built_with and "octave_conv" not in ghn.vocab.primitives
    saved = GHN.load(ghn.save(tmp_path / "ghn.pt"))
    assert saved.vocab == built_with  # the vocabulary it was built with, not today's
    strange = copy.copy(graph)
    strange.op = graph.op.clone()
    strange.op[3] = new_id
    with pytest.raises(ValueError, match="op 'octave_conv' unknown to this GHN"):
        ghn(strange)
    assert GHN(hid=8).vocab.primitives[-1] == "octave_conv"
