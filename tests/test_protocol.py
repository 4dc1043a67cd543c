"""Evaluation protocols: BN re-estimation, calibrated vs ghn2, weight settings."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from ghn_pyg import QuantSpec
from ghn_pyg.data import load_images, tensor_batches
from ghn_pyg.data.images import ImageSet, image_tensors
from ghn_pyg.inits import init_params
from ghn_pyg.quant import quantize
from ghn_pyg.train.evaluate import EvalRow, EvalSetup, ModuleArchs, evaluate_split, top1
from ghn_pyg.train.tables import format_accuracy, markdown_summary
from ghn_pyg.train.protocol import EvalProtocol, resolve_protocol

from .test_quant_runner import small_cnn


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


@pytest.fixture(scope="module")
def images():
    train = load_images("synthetic", "train", synthetic_size=600, synthetic_shape=(1, 12, 12))
    test = load_images("synthetic", "test", synthetic_size=600, synthetic_shape=(1, 12, 12))
    return train, test


@pytest.mark.parametrize("fold_bn", [False, True])
def test_estimate_bn_is_the_plain_average_of_nn_batchnorm(fold_bn):
    model = small_cnn()
    reference = copy.deepcopy(model)
    for bn in reference.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = None  # nn.BatchNorm's cumulative average
            bn.reset_running_stats()
    batches = [torch.randn(16, 3, 12, 12) * (k + 1) + k for k in range(5)]
    reference.train()
    reference[6].p = 0.0  # no dropout in the reference either
    with torch.no_grad():
        for x in batches:
            reference(x)
    qmodel = quantize(model, QuantSpec(fold_bn=fold_bn), (1, 3, 12, 12), bn="batch")
    qmodel.estimate_bn(batches + [torch.full((16, 3, 12, 12), 1e6)], num_batches=5)
    assert qmodel.bn == "running"  # evaluation then uses the estimate
    for ours, theirs in zip(model.modules(), reference.modules()):
        if isinstance(ours, nn.BatchNorm2d):
            torch.testing.assert_close(ours.running_mean, theirs.running_mean, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ours.running_var, theirs.running_var, atol=1e-4, rtol=1e-5)
            assert ours.momentum == 0.1  # restored
    with pytest.raises(ValueError, match="got no batches"):
        qmodel.estimate_bn([], 3)
    assert qmodel.bn == "running"


def test_estimate_bn_uses_the_supplied_parameters():
    model = tiny_net()
    qmodel = quantize(model, QuantSpec(), (1, 1, 12, 12), bn="batch")
    params = {k: v.detach() * 3 for k, v in model.named_parameters()}
    batches = [torch.randn(8, 1, 12, 12) for _ in range(3)]
    qmodel.estimate_bn(batches, 3, params)
    with_params = model[4].running_var.clone()
    qmodel.estimate_bn(batches, 3)
    assert not torch.allclose(with_params, model[4].running_var)


def test_calibrated_does_not_depend_on_test_batching_ghn2_does(images):
    train, test = images
    model = tiny_net()
    params = init_params("he", model, seed=1)
    x, _ = image_tensors(test)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    outputs = {}
    for name in ("calibrated", "ghn2"):
        protocol = EvalProtocol(name, bn_batches=3, calib_batches=2, batch_size=64)
        runner = quantize(copy.deepcopy(model), QuantSpec.uniform(4), (1, 1, 12, 12), bn="batch")
        protocol.apply(runner, params, protocol.calibration_batches(train))
        with torch.no_grad():
            by_7 = torch.cat([runner(b, params) for b in x.split(7)])
            by_100 = torch.cat([runner(b, params) for b in x.split(100)])
            shuffled = torch.empty_like(by_7)
            shuffled[order] = torch.cat([runner(b, params) for b in x[order].split(50)])
        outputs[name] = (by_7, by_100, shuffled)
    by_7, by_100, shuffled = outputs["calibrated"]
    torch.testing.assert_close(by_7, by_100, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(by_7, shuffled, atol=1e-4, rtol=1e-4)
    assert torch.equal(by_7.argmax(1), by_100.argmax(1))
    by_7, by_100, shuffled = outputs["ghn2"]
    assert (by_7 - by_100).abs().max() > 1e-2 and (by_7 - shuffled).abs().max() > 1e-2


def test_calibrated_reads_only_training_images(images):
    train, test = images
    protocol = EvalProtocol(bn_batches=2, calib_batches=1, batch_size=32, seed=3)
    batches = protocol.calibration_batches(train)
    assert [len(b) for b in batches] == [32, 32]
    train_x, _ = image_tensors(train)
    for row in torch.cat(batches):
        assert (train_x - row).abs().flatten(1).amax(1).min() == 0  # every image is a training one
    assert torch.equal(batches[0], protocol.calibration_batches(train)[0])  # fixed by the seed
    assert not torch.equal(batches[0], protocol.replace(seed=4).calibration_batches(train)[0])
    assert EvalProtocol("ghn2").calibration_batches(None) == []
    with pytest.raises(ValueError, match="needs training images"):
        protocol.calibration_batches(None)


def bn_statistics(runner) -> list[torch.Tensor]:
    """Every batch norm's running mean and variance, cloned."""
    return [t.clone() for bn in runner.batch_norms() for t in (bn.running_mean, bn.running_var)]


def test_bn_after_calib_reestimates_bn_under_the_frozen_ranges(images):
    train, _ = images
    model = tiny_net()
    params = init_params("he", model, seed=1)
    plain = EvalProtocol(bn_batches=3, calib_batches=2, batch_size=64, calib_order="quantized-bn")
    after = plain.replace(bn_after_calib=True)
    batches = plain.calibration_batches(train)
    stats = {}
    for protocol in (plain, after):
        runner = quantize(copy.deepcopy(model), QuantSpec.uniform(2), (1, 1, 12, 12), bn="batch")
        protocol.apply(runner, params, batches)
        stats[protocol.bn_after_calib] = bn_statistics(runner)
        assert runner.bn == "running"
        assert all(layer.act_quant.mode == "frozen" for layer in runner.layers.values())
        if protocol.bn_after_calib:  # by hand: estimate, calibrate, estimate again
            manual = quantize(copy.deepcopy(model), QuantSpec.uniform(2), (1, 1, 12, 12), bn="batch")
            manual.estimate_bn(batches, 3, params).calibrate(batches, 2, params=params)
            manual.estimate_bn(batches, 3, params)
            for ours, theirs in zip(stats[True], bn_statistics(manual)):
                torch.testing.assert_close(ours, theirs)
    assert any(not torch.allclose(a, b) for a, b in zip(stats[False], stats[True]))
    float_stats = []
    for protocol in (plain, after):  # nothing to re-estimate without quantized activations
        runner = quantize(copy.deepcopy(model), None, (1, 1, 12, 12), bn="batch")
        protocol.apply(runner, params, batches)
        float_stats.append(bn_statistics(runner))
    for a, b in zip(*float_stats):
        torch.testing.assert_close(a, b)
    assert after.key() == plain.key() + "-bnafter" and "bnafter" not in plain.key()
    assert "re-estimated under the frozen ranges" in after.describe()


def test_estimate_bn_with_float_activations_estimates_the_float_network(images):
    train, _ = images
    model = tiny_net()
    params = init_params("he", model, seed=1)
    batches = EvalProtocol(bn_batches=2, batch_size=64).calibration_batches(train)
    quantized = quantize(copy.deepcopy(model), QuantSpec.uniform(2), (1, 1, 12, 12), bn="batch")
    quantized.estimate_bn(batches, 2, params, float_activations=True)
    assert all(layer.act_quant.bits == 2 for layer in quantized.layers.values())  # restored
    reference = quantize(copy.deepcopy(model), QuantSpec(w_bits=2), (1, 1, 12, 12), bn="batch")
    reference.estimate_bn(batches, 2, params)  # 2-bit weights, float activations
    for ours, theirs in zip(bn_statistics(quantized), bn_statistics(reference)):
        torch.testing.assert_close(ours, theirs)
    on_quantized = bn_statistics(quantized.estimate_bn(batches, 2, params))
    assert any(not torch.allclose(a, b) for a, b in zip(on_quantized, bn_statistics(reference)))


def test_float_first_observes_ranges_on_the_float_network_then_reestimates_bn(images):
    train, _ = images
    model = tiny_net()
    params = init_params("he", model, seed=1)
    float_first = EvalProtocol(bn_batches=3, calib_batches=2, batch_size=64)
    assert float_first.calib_order == "float-first"  # the default
    default = float_first.replace(calib_order="quantized-bn")
    batches = default.calibration_batches(train)

    def applied(protocol, spec):
        runner = quantize(copy.deepcopy(model), spec, (1, 1, 12, 12), bn="batch")
        return protocol.apply(runner, params, batches)

    ours = applied(float_first, QuantSpec.uniform(2))
    assert ours.bn == "running"
    assert all(layer.act_quant.mode == "frozen" for layer in ours.layers.values())
    manual = quantize(copy.deepcopy(model), QuantSpec.uniform(2), (1, 1, 12, 12), bn="batch")
    manual.estimate_bn(batches, 3, params, float_activations=True)
    manual.calibrate(batches, 2, params=params)
    ranges = [(float(l.act_quant.low), float(l.act_quant.high)) for l in manual.layers.values()]
    manual.estimate_bn(batches, 3, params)
    assert [(float(l.act_quant.low), float(l.act_quant.high))
            for l in ours.layers.values()] == ranges
    for a, b in zip(bn_statistics(ours), bn_statistics(manual)):
        torch.testing.assert_close(a, b)
    quantized_bn = applied(default, QuantSpec.uniform(2))  # ranges observed under other BN
    assert [(float(l.act_quant.low), float(l.act_quant.high))
            for l in quantized_bn.layers.values()] != ranges
    for a, b in zip(bn_statistics(applied(default, None)), bn_statistics(applied(float_first, None))):
        torch.testing.assert_close(a, b)  # at FP32 the orders are the same
    assert float_first.key() == default.key() + "-floatfirst"  # earlier caches keep their key
    assert "with float activations" in float_first.describe()
    assert "order quantized-bn" in default.describe()
    with pytest.raises(ValueError, match="unknown calibration order 'late'"):
        EvalProtocol(calib_order="late")
    with pytest.raises(ValueError, match="drop bn_after_calib"):
        float_first.replace(bn_after_calib=True)
    with pytest.raises(ValueError, match="drop bn_after_calib"):
        EvalProtocol(bn_after_calib=True)  # the default order re-estimates anyway


def test_ghn2_reproduces_the_per_batch_protocol(images):
    """ghn2 is what evaluation did before protocols existed: batch statistics, per-batch
    ranges, DataLoader batches of the test items."""
    train, test = images
    module = tiny_net()
    archs = ModuleArchs([("tiny", module)], (1, 12, 12))
    rows = evaluate_split(archs, test, {}, (32, 4), ("he",), batch_size=64, protocol="ghn2",
                          progress=False)
    params = init_params("he", module, 0)
    runner = quantize(module, None, (1, 1, 12, 12), bn="batch")
    for row in rows:
        runner.set_bits(QuantSpec.uniform(row.bits))
        assert row.accuracy == top1(runner, params, DataLoader(test, batch_size=64))


def test_evaluate_split_leaves_the_modules_alone(images):
    train, test = images
    module = tiny_net()
    before = copy.deepcopy(module.state_dict())
    archs = ModuleArchs([("tiny", module)], (1, 12, 12))
    rows = evaluate_split(archs, test, {}, (32, 4), ("he", "default"), train_images=train,
                          protocol=EvalProtocol(bn_batches=2, calib_batches=1, batch_size=64),
                          progress=False)
    assert len(rows) == 4 and all(0 <= r.accuracy <= 1 for r in rows)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    with pytest.raises(ValueError, match="needs training images"):
        evaluate_split(archs, test, {}, (32,), ("he",), progress=False)


def test_weight_settings_reach_the_runner(images):
    train, test = images
    model = tiny_net()
    setup = EvalSetup.create(test, train, EvalProtocol(bn_batches=1, calib_batches=1),
                             per_channel=False, first_last_8bit=True)
    runner = setup.runner(model, (1, 12, 12))
    runner.set_bits(setup.spec(4))
    layers = list(runner.layers.values())
    assert all(not layer.weight_quant.per_channel for layer in layers)
    assert [layer.weight_quant.bits for layer in layers] == [8, 4, 8]
    assert [layer.act_quant.bits for layer in layers] == [8, 4, 8]
    runner.set_bits(setup.spec(32))  # FP32 stays float everywhere
    assert all(layer.weight_quant.bits == 32 for layer in layers)
    assert "per-tensor+first-last-8bit" in setup.key() and setup.num_images == len(test)
    default = EvalSetup.create(test, train, EvalProtocol(bn_batches=1, calib_batches=1))
    assert all(layer.weight_quant.per_channel for layer in default.runner(tiny_net(), (1, 12, 12))
               .layers.values())
    settings = [EvalSetup.create(test, train, "ghn2", per_channel=p, first_last_8bit=f).key()
                for p in (True, False) for f in (True, False)]
    assert len(set(settings)) == 4


def test_per_tensor_and_first_last_change_low_bit_accuracy(images):
    train, test = images
    archs = ModuleArchs([("tiny", tiny_net())], (1, 12, 12))
    protocol = EvalProtocol(bn_batches=2, calib_batches=1, batch_size=64)
    results = {}
    for per_channel in (True, False):
        for first_last in (False, True):
            rows = evaluate_split(archs, test, {}, (2,), ("he",), train_images=train,
                                  protocol=protocol, per_channel=per_channel,
                                  first_last_8bit=first_last, progress=False)
            results[per_channel, first_last] = rows[0].accuracy
    assert len(set(results.values())) > 1  # the settings reach the quantized run


def test_bad_protocols_are_value_errors():
    with pytest.raises(ValueError, match="unknown evaluation protocol 'fast'"):
        resolve_protocol("fast")
    with pytest.raises(ValueError, match="unknown calibration method"):
        EvalProtocol(calib_method="max")
    with pytest.raises(ValueError, match="bn_batches must be >= 1"):
        EvalProtocol(bn_batches=0)
    assert resolve_protocol("ghn2").key() == "ghn2"
    assert "calibrated" in EvalProtocol().describe() and "20 training batches" in EvalProtocol().describe()


def test_single_network_has_no_standard_error():
    assert format_accuracy(0.5, 0.0, 1) == "50.0"
    assert format_accuracy(0.5, 0.012, 3) == "50.0 ± 1.2"
    table = markdown_summary([EvalRow("a", "GHN", 32, 0.5)])
    assert "±" not in table and "50.0" in table


def test_image_tensors_match_item_access():
    data = ImageSet(torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8), torch.arange(10),
                    (0.5,), (0.25,))
    x, y = image_tensors(torch.utils.data.Subset(data, [3, 1, 7]))
    torch.testing.assert_close(x[1], data[1][0])
    assert y.tolist() == [3, 1, 7]
    batches = tensor_batches(data, 4, limit=9)
    assert [len(b[1]) for b in batches] == [4, 4, 1]


def test_no_images_is_an_error_not_a_division_by_zero():
    from ghn_pyg.train.evaluate import EvalSetup

    images = load_images("synthetic", "test", synthetic_size=64)
    for bad in ({"max_images": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError, match="max_images and batch_size must be >= 1"):
            EvalSetup.create(images, images, "ghn2", **bad)
