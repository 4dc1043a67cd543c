"""quantize(): fake-quantized execution with supplied parameters."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ghn_pyg import GraphBuildError, QuantSpec, annotate, trace
from ghn_pyg.quant import ParamsMismatchError, QuantLayer, quantize

from .conftest import zoo_model


def small_cnn(num_classes=10):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def randomize_bn(model, seed=0):
    """Non-trivial running statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


def own_params(model):
    return {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "convnext_tiny"])
def test_32_bits_equals_the_float_model(name):
    model = randomize_bn(copy.deepcopy(zoo_model(name))).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        qmodel = quantize(model, QuantSpec())
        assert (qmodel(x) - expected).abs().max() <= 1e-6
        assert (qmodel(x, own_params(model)) - expected).abs().max() <= 1e-6


def test_batch_statistics_mode_matches_train_mode_bn_without_touching_stats():
    model = randomize_bn(small_cnn())
    reference = copy.deepcopy(model).train()
    reference[6].p = 0.0  # dropout is off in the quantized runner
    x = torch.randn(16, 3, 12, 12)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qmodel = quantize(model, QuantSpec(), (1, 3, 12, 12), bn="batch")
    with torch.no_grad():
        assert (qmodel(x, own_params(model)) - reference(x)).abs().max() <= 1e-5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_gradients_reach_every_supplied_tensor_and_none_the_model():
    model = zoo_model("mobilenet_v2")
    params = own_params(model)
    qmodel = quantize(model, QuantSpec.uniform(4), bn="batch")
    loss = nn.functional.cross_entropy(qmodel(torch.randn(4, 3, 32, 32), params),
                                       torch.randint(0, 1000, (4,)))
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in params.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert all(p.grad is None for p in model.parameters())


def test_layers_get_their_bits_mixed_precision():
    model = small_cnn()
    spec = QuantSpec(w_bits=4, a_bits=4, layers={"3": (2, 8)}, ops={"linear": (8, 6)})
    qmodel = quantize(model, spec, (1, 3, 12, 12))
    bits = {n: (layer.weight_quant.bits, layer.act_quant.bits) for n, layer in qmodel.layers.items()}
    assert bits == {"0": (4, 4), "3": (2, 8), "9": (8, 6)}
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        weights = {n: layer.weight_quant(layer.weight) for n, layer in qmodel.layers.items()}
    distinct = lambda w: max(int(torch.unique(c).numel()) for c in w)  # noqa: E731
    assert distinct(weights["0"]) <= 16 and distinct(weights["3"]) <= 4
    assert torch.isfinite(qmodel(x)).all()


def test_set_bits_from_spec_and_graph_without_retracing():
    model = small_cnn()
    qmodel = quantize(model, QuantSpec(), (1, 3, 12, 12))
    qmodel.set_bits(QuantSpec.uniform(2))
    assert {layer.weight_quant.bits for layer in qmodel.layers.values()} == {2}
    graph = annotate(trace(model, (1, 3, 12, 12)), QuantSpec(w_bits=8, a_bits=4))
    qmodel.set_bits(graph)
    assert {(l.weight_quant.bits, l.act_quant.bits) for l in qmodel.layers.values()} == {(8, 4)}
    with pytest.raises(ValueError, match="not the graph of this model"):
        qmodel.set_bits(trace(zoo_model("squeezenet1_0")))


@pytest.mark.parametrize("bn", ["running", "batch"])
def test_folded_bn_at_32_bits_matches_unfolded(bn):
    model = randomize_bn(copy.deepcopy(zoo_model("resnet18"))).eval()
    x = torch.randn(8, 3, 32, 32)
    plain = quantize(model, QuantSpec(), bn=bn)
    folded = quantize(model, QuantSpec(), bn=bn, fold_bn=True)
    assert sum(layer._fold is not None for layer in folded.layers.values()) == 20
    # eval mode (running statistics) within 1e-5; batch statistics are recomputed from
    # a float pass of each conv, so rounding differences grow with depth.
    tol = 1e-5 if bn == "running" else 1e-4
    with torch.no_grad():
        assert (folded(x) - plain(x)).abs().max() <= tol
        params = own_params(model)
        assert (folded(x, params) - plain(x, params)).abs().max() <= tol


def test_folding_matters_for_per_tensor_weights_only():
    # Per-channel scales absorb BN's per-channel factor: folding then changes nothing
    # but rounding; with one scale per tensor it changes the quantized weights.
    model = randomize_bn(small_cnn()).eval()
    x = torch.randn(4, 3, 12, 12)
    out = {}
    for per_channel in (True, False):
        for fold in (False, True):
            spec = QuantSpec.uniform(4, per_channel=per_channel, fold_bn=fold)
            with torch.no_grad():
                out[per_channel, fold] = quantize(model, spec, (1, 3, 12, 12))(x)
    assert (out[True, True] - out[True, False]).abs().max() <= 1e-5
    assert (out[False, True] - out[False, False]).abs().max() > 1e-3


def test_bad_params_are_listed_in_one_error():
    model = small_cnn()
    qmodel = quantize(model, QuantSpec.uniform(4), (1, 3, 12, 12))
    params = own_params(model)
    del params["0.weight"]
    params["1.bias"] = torch.zeros(3)
    params["extra.weight"] = torch.zeros(1)
    with pytest.raises(ParamsMismatchError) as info:
        qmodel(torch.randn(1, 3, 12, 12), params)
    message = str(info.value)
    assert "missing (1): 0.weight" in message and "unknown (1): extra.weight" in message
    assert "1.bias: got (3,), expected (8,)" in message
    params = {k: v.detach() for k, v in own_params(model).items()}  # e.g. loaded from a file
    params["0.weight"] = params["0.weight"].double()
    params["1.bias"] = params["1.bias"].clone().fill_(float("nan"))
    with pytest.raises(ParamsMismatchError) as info:
        qmodel(torch.randn(1, 3, 12, 12), params)
    message = str(info.value)
    assert "0.weight: dtype torch.float64, the model runs in torch.float32" in message
    assert "1.bias: holds NaN or infinite values" in message
    trainable = own_params(model)
    trainable["1.bias"].data.fill_(float("nan"))  # a GHN's output: left to the NaN-skip logic
    assert torch.isnan(qmodel(torch.randn(2, 3, 12, 12), trainable)).any()


@pytest.mark.parametrize("fold_bn", [False, True])
def test_update_mode_tracks_running_statistics_like_batchnorm(fold_bn):
    model, reference = small_cnn(), small_cnn()
    reference.train()
    qmodel = quantize(model, QuantSpec(fold_bn=fold_bn), (1, 3, 12, 12), bn="update")
    x = torch.randn(16, 3, 12, 12)
    for _ in range(3):
        out = qmodel(x)
        expected = reference(x * 1.0)
    reference.eval()
    for ours, theirs in zip(model.modules(), reference.modules()):
        if isinstance(ours, nn.BatchNorm2d):
            assert torch.allclose(ours.running_mean, theirs.running_mean, atol=1e-6)
            assert torch.allclose(ours.running_var, theirs.running_var, atol=1e-5)
    assert out.shape == expected.shape  # (the reference's dropout is on: outputs differ)
    qmodel.set_bn("running")  # evaluation with the statistics QAT gathered
    assert qmodel.bn == "running"
    torch.testing.assert_close(qmodel(x), reference(x), atol=1e-5, rtol=1e-4)
    before = [b.clone() for b in model.buffers()]
    qmodel.set_bn("batch")(x)
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))
    with pytest.raises(ValueError, match="bn must be one of"):
        qmodel.set_bn("train")


def test_bad_bits_and_modes_are_value_errors():
    with pytest.raises(ValueError, match="layer '3'.*invalid bit-width 9"):
        quantize(small_cnn(), QuantSpec(layers={"3": 9}), (1, 3, 12, 12))
    with pytest.raises(ValueError, match="bn must be"):
        quantize(small_cnn(), QuantSpec(), (1, 3, 12, 12), bn="eval")
    with pytest.raises(GraphBuildError, match="rejected an input"):
        quantize(small_cnn(), QuantSpec(), (1, 1, 12, 12))


def test_constant_input_and_zero_weights_give_finite_outputs():
    model = small_cnn()
    params = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    qmodel = quantize(model, QuantSpec.uniform(2), (1, 3, 12, 12), bn="batch")
    out = qmodel(torch.ones(2, 3, 12, 12), params)
    assert torch.isfinite(out).all()


def test_calibrate_freezes_activation_ranges():
    model = randomize_bn(small_cnn()).eval()
    qmodel = quantize(model, QuantSpec.uniform(4), (1, 3, 12, 12))
    batches = [(torch.randn(8, 3, 12, 12), torch.zeros(8)) for _ in range(3)]
    qmodel.calibrate(batches, num_batches=2, method="percentile", percentile=99.0)
    assert {l.act_quant.mode for l in qmodel.layers.values()} == {"frozen"}
    first = qmodel.layers["0"].act_quant
    seen = torch.cat([b[0] for b in batches[:2]])
    assert float(seen.min()) < float(first.low) < 0 < float(first.high) < float(seen.max())
    with pytest.raises(ValueError, match="no batches"):
        qmodel.calibrate([], num_batches=2)
    assert {l.act_quant.mode for l in qmodel.layers.values()} == {"dynamic"}


def test_learnable_scales_are_trainable():
    model = small_cnn()
    qmodel = quantize(model, QuantSpec.uniform(4), (1, 3, 12, 12), learnable_scales=True)
    out = qmodel(torch.randn(2, 3, 12, 12), own_params(model))
    out.sum().backward()
    scales = list(qmodel.quant_parameters())
    assert len(scales) == 3 * 3 and all(s.grad is not None for s in scales)


def test_non_standard_quantizable_layer_is_rejected_unless_float(registry_guard):
    import ghn_pyg

    class MyConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3, 1, 1))

        def forward(self, x):
            return nn.functional.conv2d(x, self.weight)

    ghn_pyg.register_op(MyConv, "conv")
    model = nn.Sequential(MyConv(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 2, 2))
    assert quantize(model, QuantSpec(), (1, 3, 2, 2)) is not None
    with pytest.raises(ValueError, match="'0' .*MyConv.*cannot be fake-quantized"):
        quantize(model, QuantSpec.uniform(4), (1, 3, 2, 2))
    assert isinstance(quantize(model, QuantSpec.uniform(4, layers={"0": 32}), (1, 3, 2, 2))
                      .layers["2"], QuantLayer)


def test_a_known_graph_skips_the_build_and_gives_the_same_runner():
    torch.manual_seed(0)
    model = small_cnn()
    spec = QuantSpec.uniform(4)
    graph = trace(model, (1, 3, 16, 16))
    known = quantize(model, spec, (1, 3, 16, 16), bn="batch", graph=graph)
    traced = quantize(model, spec, (1, 3, 16, 16), bn="batch")
    assert torch.equal(known.graph.w_bits, traced.graph.w_bits)
    assert known.graph.param_names == traced.graph.param_names
    x = torch.randn(8, 3, 16, 16)
    params = {k: v.detach() * 1.1 for k, v in model.named_parameters()}
    assert torch.equal(known(x, params), traced(x, params))
    other = trace(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()),
                  (1, 3, 16, 16))
    with pytest.raises(ValueError, match="does not describe this"):
        quantize(model, spec, (1, 3, 16, 16), graph=other)


@pytest.mark.parametrize("fold_bn", [False, True])
def test_released_parameters_free_memory_and_keep_the_results(fold_bn):
    model = randomize_bn(small_cnn())
    runner = quantize(model, QuantSpec.uniform(4), (1, 3, 16, 16), bn="batch", fold_bn=fold_bn)
    x = torch.randn(8, 3, 16, 16)
    params = {k: v.detach() * 1.1 for k, v in model.named_parameters()}
    before = runner(x, params)
    names = [name for name, _ in runner.named_parameters()]
    runner.release_parameters()
    # no storage left in the runner, the original model (it was shared) included
    assert all(p.is_meta for p in runner.parameters()) and all(p.is_meta for p in model.parameters())
    assert [name for name, _ in runner.named_parameters()] == names  # shared ones stay shared
    assert torch.equal(runner(x, params), before)
    runner.calibrate([x], 1, params=params)  # on the parameters' device, not the model's
    assert all(layer.act_quant.mode == "frozen" for layer in runner.layers.values())
    with pytest.raises(ParamsMismatchError, match="were released .* pass params"):
        runner(x)


def test_activation_noise_is_the_mean_share_of_the_quantized_layers_of_the_last_pass():
    model = small_cnn()
    runner = quantize(model, QuantSpec(w_bits=4, a_bits=4, layers={"9": (4, 32)}),
                      (2, 3, 8, 8)).set_noise_recording()
    x = torch.randn(4, 3, 8, 8)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    runner(x, params)
    quantized = [q.act_quant for name, q in runner.layers.items() if name != "9"]
    assert len(quantized) == 2 and runner.layers["9"].act_quant.noise_share is None
    expected = torch.stack([q.noise_share for q in quantized]).mean()
    noise = runner.activation_noise()
    value = float(noise.detach())
    assert value == pytest.approx(float(expected.detach())) and 0 < value < 1
    noise.backward()  # differentiable in the parameters that shaped the activations
    assert params["1.weight"].grad is not None and params["1.weight"].grad.abs().sum() > 0
    assert runner.activation_noise() is None  # forgotten once read
    runner.set_bits(QuantSpec())
    runner(x, params)
    assert runner.activation_noise() is None  # float activations
    runner.set_bits(QuantSpec.uniform(4)).set_noise_recording(False)
    runner(x, params)
    assert runner.activation_noise() is None
