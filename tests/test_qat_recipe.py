"""The GHN-QAT recipe: seeded bit embeddings, the collapse guard, per-network gradient
clipping, float networks and sampling weights in the bit mix, per-bit metrics."""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import random

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from ghn_pyg.data import ArchGraphDataset
from ghn_pyg.graph.tracer import trace
from ghn_pyg.nn import GHN
from ghn_pyg.nn.ghn import PRETRAINED_DIR
from ghn_pyg.quant import QuantSpec, quantize
from ghn_pyg.quant.layers import detach_collapsed_channels
from ghn_pyg.train import TrainConfig, Trainer
from ghn_pyg.train.config import add_config_arguments, config_from_args, init_ghn_settings
from ghn_pyg.train.sampling import draw_bits, network_bits

from .test_images import needs_fmnist

FLOAT_GHN = PRETRAINED_DIR / "ghn-fmnist.pt"


@pytest.fixture(scope="module")
def efficient(tmp_path_factory):
    """The first 8 training architectures of the efficient space (those the shipped GHNs
    were trained on first)."""
    root = tmp_path_factory.mktemp("efficient")
    ArchGraphDataset(root, "efficient", "train", size=8, progress=False)
    return root


def efficient_config(root, out, **kwargs) -> TrainConfig:
    settings = dict(graphs=str(root), space="efficient", num_archs=8, data="fashion-mnist",
                    meta_batch=1, batch_size=64, steps=10, warmup=1, ckpt_every=100,
                    log_every=1, out=str(out), seed=0, init_ckpt=str(FLOAT_GHN),
                    **init_ghn_settings(FLOAT_GHN))
    settings.update(kwargs)
    return TrainConfig(**settings)


def small_graph(bits: int = 32):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 26 * 26, 10))
    return trace(model, (1, 1, 28, 28), QuantSpec.uniform(bits) if bits < 32 else None)


def test_seeded_bit_rows_reproduce_the_float_predictions():
    torch.manual_seed(0)
    ghn = GHN(hid=16, max_shape=(8, 8, 3, 3)).set_trained_bits([32])
    before = {b: ghn(small_graph(b))[0] for b in (32, 8, 4, 2)}
    rows = ghn.encoder.w_bits.weight.detach().clone()
    assert ghn.seed_untrained_bits() == (2, 3, 4, 5, 6, 7, 8, 16)
    ghn.set_trained_bits([32, 8, 4, 2])  # the rows are now read, not snapped to 32
    for b in (32, 8, 4, 2):
        after = ghn(small_graph(b))[0]
        assert all(torch.equal(before[b][k], after[k]) for k in after)
    w = ghn.encoder.w_bits.weight
    assert not torch.equal(w, rows) and torch.equal(w[0], w[-1])  # 2 bits copies 32 bits
    ghn.set_trained_bits(None)
    assert ghn.seed_untrained_bits() == ()  # nothing recorded: every row is trusted


def test_qat_step_zero_predicts_what_the_float_ghn_predicts(efficient, tmp_path):
    graph = draw_bits(ArchGraphDataset(efficient, "efficient", "train", size=8, progress=False)[1],
                      (4,), random.Random(0))
    reference = GHN.load(FLOAT_GHN)(graph)[0]
    seeded = Trainer(efficient_config(efficient, tmp_path / "a", bits=(8, 4, 2), data="synthetic",
                                      in_shape=(1, 28, 28)))
    assert seeded.ghn.trained_bits == (2, 4, 8, 32)
    assert all(torch.equal(v, reference[k]) for k, v in seeded.ghn(graph)[0].items())
    unseeded = Trainer(efficient_config(efficient, tmp_path / "b", bits=(8, 4, 2), seed_bits=False,
                                        data="synthetic"))
    assert any(not torch.equal(v, reference[k]) for k, v in unseeded.ghn(graph)[0].items())


def test_detach_collapsed_channels_keeps_values_and_stops_their_gradient():
    x = torch.randn(8, 3, 4, 4)
    x[:, 1] = 0.5  # a channel quantization collapsed to one level
    x.requires_grad_(True)
    out = detach_collapsed_channels(x, 1e-5)
    assert torch.equal(out, x)
    (out * torch.randn_like(out)).sum().backward()
    assert (x.grad[:, 1] == 0).all() and (x.grad[:, 0] != 0).all() and (x.grad[:, 2] != 0).all()
    y = torch.randn(8, 3, requires_grad=True)
    assert detach_collapsed_channels(y, 1e-5) is y  # nothing collapsed: the input itself


def test_collapse_guard_removes_the_batch_norm_amplification():
    """An outlier channel sets the 2-bit activation range, the other channel rounds to one
    level, and the batch norm after the depthwise conv divides its gradient by sqrt(eps)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, groups=2), nn.BatchNorm2d(2), nn.ReLU(),
                          nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 8 * 8, 4))
    x = torch.cat([100 * torch.rand(16, 1, 8, 8), 0.1 * torch.rand(16, 1, 8, 8)], dim=1)
    y = torch.randint(0, 4, (16,))

    def input_grad(guard: bool) -> torch.Tensor:
        runner = quantize(model, QuantSpec.uniform(2), (1, 2, 8, 8), bn="batch")
        runner.set_collapse_guard(guard)
        inputs = x.clone().requires_grad_()
        nn.functional.cross_entropy(runner(inputs), y).backward()
        return inputs.grad

    unguarded, guarded = input_grad(False), input_grad(True)
    assert unguarded[:, 1].norm() > 50 * unguarded[:, 0].norm()  # the amplified channel
    assert (guarded[:, 1] == 0).all() and torch.equal(guarded[:, 0], unguarded[:, 0])


@needs_fmnist
@pytest.mark.parametrize("arch", [1, 4, 7])
def test_two_bit_gradients_stay_within_10x_of_eight_bit(efficient, tmp_path, arch):
    """Networks whose 2-bit GHN gradient was 100x-100,000x the 8-bit one (the shipped
    GHN-QAT recipe) stay within 10x with the collapse guard and per-network clipping."""

    def grad_norm(bits: int, **kwargs) -> float:
        trainer = Trainer(efficient_config(efficient, tmp_path / f"{bits}", bits=(bits,), **kwargs))
        trainer.arch_sampler.indices = lambda step: [arch]
        return trainer.train_step()["grad_norm"]

    eight = grad_norm(8, net_grad_clip=5.0)
    assert grad_norm(2, net_grad_clip=5.0) < 10 * eight
    assert grad_norm(2, collapse_guard=False, net_grad_clip=0.0) > 10 * eight


def test_per_network_clipping_equals_plain_backward_below_the_clip(efficient, tmp_path):
    common = dict(bits=(8, 4, 2), data="synthetic", meta_batch=3, batch_size=16)
    plain = Trainer(efficient_config(efficient, tmp_path / "a", net_grad_clip=0.0, **common))
    clipped = Trainer(efficient_config(efficient, tmp_path / "b", net_grad_clip=1e6, **common))
    tiny = Trainer(efficient_config(efficient, tmp_path / "c", net_grad_clip=1e-3, **common))
    metrics = [t.train_step() for t in (plain, clipped, tiny)]
    assert metrics[0]["grad_norm"] == pytest.approx(metrics[1]["grad_norm"], rel=1e-4)
    assert metrics[2]["grad_norm"] < 0.01 * metrics[0]["grad_norm"]
    drawn = [b for b in (8, 4, 2) if metrics[0][f"loss_{b}bit"] == metrics[0][f"loss_{b}bit"]]
    assert drawn and all(metrics[0][f"param_grad_{b}bit"] > 0 for b in drawn)


def test_bits_with_32_and_weights(efficient, tmp_path):
    graph = ArchGraphDataset(efficient, "efficient", "train", size=8, progress=False)[0]
    rng = random.Random(0)
    drawn = [network_bits(draw_bits(graph, (32, 4), rng, weights=(1.0, 3.0))) for _ in range(400)]
    assert set(drawn) == {32, 4} and 0.65 < drawn.count(4) / 400 < 0.85
    assert [network_bits(draw_bits(graph, (32, 4), rng, weights=(0.0, 1.0))) for _ in range(20)] \
        == [4] * 20
    ends = draw_bits(graph, (32,), rng, first_last_8bit=True)
    assert (ends.w_bits == 32).all()  # a float network keeps float first/last layers
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--bits", "32:1,8:1,4:2,2:1"]))
    assert cfg.bits == (32, 8, 4, 2) and cfg.bit_weights == (1.0, 1.0, 2.0, 1.0) and cfg.quantized
    plain = config_from_args(parser.parse_args(["--bits", "8,4"]), {"bits": [8, 4, 2],
                                                                    "bit_weights": [1, 1, 1]})
    assert plain.bits == (8, 4) and plain.bit_weights == ()
    assert not TrainConfig(bits=(32,)).quantized
    for bad in ("32:1,8", "8,x", "8,,4", "4:a"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--bits", bad])
    assert config_from_args(parser.parse_args(["--bits", "float"])).bits == ()
    for bad, match in (({"bits": (4, 33)}, r"bits: \[33\] not allowed"),
                       ({"bits": (4, 4)}, "repeats a bit-width"),
                       ({"bits": (8, 4), "bit_weights": (1.0,)}, "one non-negative weight"),
                       ({"bits": (8, 4), "bit_weights": (0.0, 0.0)}, "not all zero"),
                       ({"net_grad_clip": -1.0}, "net_grad_clip >= 0")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)


def test_metrics_log_loss_and_gradient_per_bit_width(efficient, tmp_path):
    trainer = Trainer(efficient_config(efficient, tmp_path, bits=(32, 4), data="synthetic",
                                       meta_batch=4, batch_size=16, steps=3))
    trainer.train()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 3
    for column in ("loss_32bit", "param_grad_32bit", "loss_4bit", "param_grad_4bit"):
        assert column in rows[0]
    values = [float(r["loss_4bit"]) for r in rows] + [float(r["loss_32bit"]) for r in rows]
    assert any(v == v and v > 0 for v in values)  # some drawn (NaN marks bits not drawn)


def test_range_images_calibrate_activation_ranges_each_step(efficient, tmp_path):
    trainer = Trainer(efficient_config(efficient, tmp_path, bits=(4,), data="synthetic",
                                       meta_batch=2, batch_size=16, range_images=32))
    trainer.arch_sampler.indices = lambda step: [0, 1]
    trainer.train_step()
    calibration = trainer.range_batcher.batch(0)[0]
    for idx in (0, 1):
        first = next(iter(trainer._runners[idx].layers.values())).act_quant
        assert first.mode == "frozen"  # the stem sees the calibration images themselves
        assert float(first.high) == pytest.approx(float(calibration.max()))
        assert float(first.low) == pytest.approx(float(calibration.min()))
    dynamic = Trainer(efficient_config(efficient, tmp_path / "d", bits=(4,), data="synthetic",
                                       meta_batch=2, batch_size=16))
    dynamic.train_step()
    assert all(q.act_quant.mode == "dynamic" for r in dynamic._runners.values()
               for q in r.layers.values())
    with pytest.raises(ValueError, match="range_images must be >= 0"):
        TrainConfig(range_images=-1)


def test_train_bn_calibrated_trains_the_networks_as_the_calibrated_protocol_deploys_them(
        efficient, tmp_path):
    """The step's loss is what the networks give with BN statistics and frozen ranges from
    the range images (the GHN's predictions before the step), not with batch statistics."""
    trainer = Trainer(efficient_config(efficient, tmp_path, bits=(4,), data="synthetic",
                                       meta_batch=2, batch_size=16, range_images=32,
                                       train_bn="calibrated"))
    trainer.arch_sampler.indices = lambda step: [0, 1]
    ghn_before = copy.deepcopy(trainer.ghn)
    loss = trainer.train_step()["loss"]
    runners = [trainer._runners[0], trainer._runners[1]]
    assert all(r.bn == "running" and r.batch_norms() for r in runners)
    assert all(q.act_quant.mode == "frozen" for r in runners for q in r.layers.values())
    images, labels = trainer.image_batcher.batch(0)
    with torch.no_grad():
        predicted = ghn_before(Batch.from_data_list([r.graph for r in runners]))
        deployed = [nn.functional.cross_entropy(r(images, p), labels)
                    for r, p in zip(runners, predicted)]
        batch_stats = [nn.functional.cross_entropy(r.set_bn("batch")(images, p), labels)
                       for r, p in zip(runners, predicted)]
    assert loss == pytest.approx(float(torch.stack(deployed).mean()), rel=1e-4)
    assert loss != pytest.approx(float(torch.stack(batch_stats).mean()), rel=1e-4)
    # one network twice in a step: the second estimate must not break the first's backward
    trainer.arch_sampler.indices = lambda step: [0, 0]
    assert math.isfinite(trainer.train_step()["grad_norm"])
    with pytest.raises(ValueError, match="set range_images >= 1"):
        TrainConfig(train_bn="calibrated")
    with pytest.raises(ValueError, match="train_bn: 'eval' not one of batch, calibrated"):
        TrainConfig(train_bn="eval", range_images=8)


def test_train_bn_deploys_in_the_calibration_order_it_names(efficient, tmp_path):
    """``calibrated`` trains as the protocol's default (float-first) order deploys;
    ``calibrated-quantized-bn`` as the earlier order did: the same step, other BN
    statistics, another loss."""
    losses, statistics = {}, {}
    for train_bn in ("calibrated", "calibrated-quantized-bn"):
        trainer = Trainer(efficient_config(efficient, tmp_path / train_bn, bits=(4,),
                                           data="synthetic", meta_batch=1, batch_size=16,
                                           range_images=32, train_bn=train_bn))
        trainer.arch_sampler.indices = lambda step: [0]
        losses[train_bn] = trainer.train_step()["loss"]
        statistics[train_bn] = torch.cat([bn.running_var for bn in
                                          trainer._runners[0].batch_norms()])
    assert losses["calibrated"] != pytest.approx(losses["calibrated-quantized-bn"], rel=1e-4)
    assert not torch.allclose(statistics["calibrated"], statistics["calibrated-quantized-bn"])
    with pytest.raises(ValueError, match="'calibrated-quantized-bn' estimates BN"):
        TrainConfig(train_bn="calibrated-quantized-bn")


def test_collapse_guard_under_running_statistics_detaches_channels_of_no_running_variance():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).eval()
    bn.running_var[1] = 0.0  # a channel quantization collapsed when the statistics were taken
    runner = quantize(nn.Sequential(nn.Conv2d(1, 3, 1), bn), None, (1, 1, 4, 4), bn="running")
    x = torch.randn(8, 1, 4, 4)

    def conv_weight_grad(guard: bool) -> torch.Tensor:
        runner.set_collapse_guard(guard)
        runner.module.zero_grad()
        runner(x).square().sum().backward()
        return next(runner.parameters()).grad.flatten().clone()
    guarded, unguarded = conv_weight_grad(True), conv_weight_grad(False)
    assert guarded[1] == 0 and unguarded[1].abs() > 100 * unguarded[0].abs()
    assert torch.equal(guarded[[0, 2]], unguarded[[0, 2]])
    variance = torch.tensor([1.0, 0.0])
    y = torch.randn(4, 2, requires_grad=True)
    detach_collapsed_channels(y, 1e-5, variance).sum().backward()
    assert (y.grad[:, 1] == 0).all() and (y.grad[:, 0] == 1).all()


def test_runners_are_cached_per_architecture_without_their_parameters(efficient, tmp_path):
    trainer = Trainer(efficient_config(efficient, tmp_path, bits=(4,), data="synthetic",
                                       meta_batch=2, batch_size=16, runner_cache=2))
    draws = {0: [0, 1], 1: [0, 2], 2: [2, 1]}
    trainer.arch_sampler.indices = draws.__getitem__
    trainer.train_step()
    first = trainer._runners[0]
    assert all(p.is_meta for p in first.parameters())  # the GHN's predictions replace them
    trainer.train_step()
    trainer.train_step()
    # the first 2 architectures drawn keep their runners; 2 is built for its steps only
    assert list(trainer._runners) == [0, 1] and trainer._runners[0] is first
    uncached = Trainer(efficient_config(efficient, tmp_path / "u", bits=(4,), data="synthetic",
                                        meta_batch=2, batch_size=16, runner_cache=0))
    uncached.arch_sampler.indices = draws.__getitem__
    uncached.train_step()
    assert not uncached._runners
    with pytest.raises(ValueError, match="runner_cache must be >= 0"):
        TrainConfig(runner_cache=-1)


def test_config_values_of_the_wrong_type_name_the_setting():
    import numpy as np

    for bad, match in (({"steps": "2"}, "steps: expected an integer, got '2'"),
                       ({"steps": 2.7}, "steps: expected an integer, got 2.7"),
                       ({"amp": "false"}, "amp: expected true or false, got 'false'"),
                       ({"lr": "fast"}, "lr: expected a number"),
                       ({"bits": [8, "x"]}, r"bits\[1\]: expected an integer"),
                       ({"bits": 8}, "bits: expected a list of int values"),
                       ({"in_shape": "1x28x28"}, "in_shape: expected a list"),
                       ({"data_root": 3}, "data_root: expected a string"),
                       ({"lr": 0.0}, "lr must be > 0"),
                       ({"warmup": -1}, "warmup must be >= 0")):
        with pytest.raises(ValueError, match=match):
            TrainConfig.from_dict(bad)
    cfg = TrainConfig.from_dict({"bits": [np.int64(4), 2], "steps": np.int32(3), "lr": 1,
                                 "amp": np.bool_(False), "data_root": None})
    assert cfg.bits == (4, 2) and type(cfg.bits[0]) is int and cfg.steps == 3
    assert cfg.lr == 1.0 and cfg.amp is False and json.dumps(cfg.to_dict())


def test_act_noise_adds_the_weighted_noise_share_of_quantized_networks_to_their_loss(
        efficient, tmp_path):
    """Each quantized network's loss is its cross-entropy plus act_noise times its
    activation-noise share; float networks' loss is their cross-entropy alone; the
    logged loss stays the cross-entropy, and the share is logged as act_noise."""
    config = efficient_config(efficient, tmp_path, bits=(32, 4), data="synthetic",
                              meta_batch=2, batch_size=16, range_images=32, act_noise=5.0)
    trainer = Trainer(config)
    images, labels = trainer.image_batcher.batch(0)
    calibration = trainer.range_batcher.batch(0)[0]
    for bits, idx in ((4, 0), (32, 1)):
        graph = draw_bits(trainer.archs[idx], (bits,), random.Random(0))
        runner = trainer._runner(idx, graph).set_bits(graph)
        params = trainer.model(Batch.from_data_list([graph]))[0]
        logits, loss, cross_entropy, noise = trainer._network_forward(
            runner, params, images, labels, calibration)
        assert float(cross_entropy) == pytest.approx(
            float(nn.functional.cross_entropy(logits.detach(), labels)))
        if bits == 32:
            assert noise is None and float(loss.detach()) == pytest.approx(float(cross_entropy))
        else:
            assert 0 < float(noise) < 1 and loss.requires_grad
            assert float(loss.detach()) == pytest.approx(float(cross_entropy) + 5.0 * float(noise))
    metrics = trainer.train_step()
    assert 0 <= metrics["act_noise"] < 1 or math.isnan(metrics["act_noise"])
    # the penalty changes the update: the same step without it moves the GHN elsewhere
    ghns = {}
    for weight in (0.0, 50.0):
        step = Trainer(efficient_config(efficient, tmp_path / f"w{weight}", bits=(4,),
                                        data="synthetic", meta_batch=2, batch_size=16,
                                        act_noise=weight))
        step.arch_sampler.indices = lambda s: [0, 1]
        logged = step.train_step()
        assert ("act_noise" in logged) == (weight > 0)
        assert weight == 0 or 0 < logged["act_noise"] < 1  # both networks at 4 bits
        ghns[weight] = torch.cat([p.detach().flatten() for p in step.ghn.parameters()])
    assert not torch.equal(ghns[0.0], ghns[50.0])
    with pytest.raises(ValueError, match="act_noise must be >= 0"):
        TrainConfig(bits=(4,), act_noise=-1.0)
    with pytest.raises(ValueError, match="no bit-width below 32 is drawn"):
        TrainConfig(bits=(32,), act_noise=1.0)
