"""Fake-quant primitives and quantizers against PyTorch's quantized tensors."""

from __future__ import annotations

import pytest
import torch

from ghn_pyg.quant import ActQuantizer, WeightQuantizer, fake_quant_act, fake_quant_weight
from ghn_pyg.quant.fakequant import act_qparams, quant_noise_share, weight_scale
from ghn_pyg.quant.quantizers import clip_range
from ghn_pyg.quant.layers import QuantLayer

pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")


def test_8bit_weights_match_quantize_per_channel_exactly():
    torch.manual_seed(0)
    w = torch.randn(32, 16, 3, 3) * torch.rand(32, 1, 1, 1)
    ours = WeightQuantizer(8)(w)
    scale = weight_scale(w, 8)
    ref = torch.quantize_per_channel(w, scale.double(), torch.zeros(32, dtype=torch.long), 0,
                                     torch.qint8).dequantize()
    assert torch.equal(ours, ref)


def test_8bit_activations_match_quantize_per_tensor_exactly():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 10, 10) * 3 + 1
    ours = ActQuantizer(8)(x)
    low, high = torch.aminmax(x)
    scale, zero_point = act_qparams(low, high, 8)
    ref = torch.quantize_per_tensor(x, float(scale), int(zero_point), torch.quint8).dequantize()
    assert torch.equal(ours, ref)


def test_straight_through_gradient_is_one_inside_zero_outside():
    # 8-bit weights with scale 1/127: integers -128..127 cover [-1.008, 1.0].
    inside_w = torch.tensor([-1.0, -0.5, 0.0, 0.3, 0.99])
    outside_w = torch.tensor([-2.0, -1.05, 1.02, 1.5, 3.0])
    w = torch.cat([inside_w, outside_w]).view(1, -1).requires_grad_()
    fake_quant_weight(w, 8, scale=torch.tensor([1.0 / 127])).sum().backward()
    assert w.grad.view(-1).tolist() == [1.0] * 5 + [0.0] * 5

    # 4-bit activations on [-1, 2]: step 0.2, integers 0..15 cover [-1, 2].
    inside_a = torch.tensor([-0.95, -0.2, 0.0, 1.0, 1.95])
    outside_a = torch.tensor([-3.0, -1.2, 2.2, 2.5, 10.0])
    x = torch.cat([inside_a, outside_a]).requires_grad_()
    fake_quant_act(x, 4, torch.tensor(-1.0), torch.tensor(2.0)).sum().backward()
    assert x.grad.tolist() == [1.0] * 5 + [0.0] * 5


@pytest.mark.parametrize("bits, levels", [(2, 4), (3, 8), (4, 16)])
def test_low_bit_weights_have_few_distinct_values_per_channel(bits, levels):
    torch.manual_seed(1)
    w = torch.randn(8, 32, 3, 3)
    q = WeightQuantizer(bits)(w)
    counts = [int(torch.unique(q[c]).numel()) for c in range(8)]
    assert max(counts) <= levels and min(counts) >= 2
    assert int(torch.unique(w[0]).numel()) == w[0].numel()  # the float tensor had many


def test_32_bits_is_skipped_not_simulated():
    w = torch.randn(4, 3)
    assert fake_quant_weight(w, 32) is w and fake_quant_act(w, 32) is w
    assert WeightQuantizer(32)(w) is w and ActQuantizer(32)(w) is w


def test_constant_and_zero_tensors_quantize_without_nan():
    for value in (0.0, 3.0, -2.0):
        w = torch.full((4, 3, 3, 3), value)
        x = torch.full((2, 3, 5, 5), value)
        for bits in (2, 4, 8):
            assert torch.isfinite(WeightQuantizer(bits)(w)).all()
            assert torch.isfinite(ActQuantizer(bits)(x)).all()
            assert torch.allclose(ActQuantizer(bits)(x), x, atol=1e-6)


def test_calibration_methods_and_freeze():
    torch.manual_seed(0)
    quant = ActQuantizer(4)
    quant.observe("minmax")
    batches = [torch.randn(1000) * s for s in (1.0, 2.0, 0.5)]
    for b in batches:
        assert torch.equal(quant(b), b)  # observing passes values through
    quant.freeze()
    everything = torch.cat(batches)
    assert float(quant.low) == float(everything.min()) and float(quant.high) == float(everything.max())
    big = torch.tensor([100.0])
    frozen = quant(big)  # clipped to the frozen range (up to half a step of rounding)
    assert torch.equal(frozen, fake_quant_act(big, 4, everything.min(), everything.max()))
    assert float(frozen) < float(everything.max()) * 1.1

    heavy = torch.cat([torch.randn(20000), torch.tensor([50.0, -50.0])])
    lo_p, hi_p = clip_range(heavy, 4, "percentile", 99.9)
    lo_m, hi_m = clip_range(heavy, 4, "mse")
    assert hi_p < 10 and lo_p > -10 and hi_m < 50 and lo_m > -50
    err = lambda lo, hi: float((fake_quant_act(heavy, 4, torch.tensor(lo), torch.tensor(hi)) - heavy).pow(2).mean())  # noqa: E731
    assert err(lo_m, hi_m) < err(-50.0, 50.0)


def test_calibration_errors():
    quant = ActQuantizer(4)
    with pytest.raises(RuntimeError, match="observe"):
        quant.freeze()
    quant.observe("minmax")
    with pytest.raises(RuntimeError, match="at least one forward pass"):
        quant.freeze()  # observing, but nothing seen yet
    with pytest.raises(ValueError, match="unknown calibration method"):
        quant.observe("entropy")
    with pytest.raises(ValueError, match="percentile"):
        quant.observe("percentile", percentile=40)


def test_learnable_scales_get_gradients():
    torch.manual_seed(0)
    wq, aq = WeightQuantizer(4, learnable=True), ActQuantizer(4, learnable=True)
    w = torch.randn(6, 3, 3, 3, requires_grad=True)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = torch.nn.functional.conv2d(aq(x), wq(w))
    out.pow(2).mean().backward()
    for t in (w, x, wq.scale, aq.scale, aq.zero_point):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    assert wq.scale.shape == (6,) and float(wq.scale.grad.abs().sum()) > 0
    # initialised from the first tensor: the min/max quantizer, up to a rounding tie
    # at a channel's extreme value (x / s versus x * (1 / s))
    diff = (wq(w) - fake_quant_weight(w, 4)).detach().abs().flatten(1)
    step = float(wq.scale.detach().max())
    assert float(diff.max()) <= step + 1e-6 and int((diff > 0).sum(dim=1).max()) <= 1


def test_learnable_weight_scales_round_trip_into_fresh_quantizers():
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3)
    for channels in (6, None):
        trained = WeightQuantizer(4, learnable=True, channels=channels)
        trained(w)
        fresh = WeightQuantizer(4, learnable=True, channels=channels)
        assert fresh.scale.shape == ((6,) if channels else (1,))
        fresh.load_state_dict(trained.state_dict())
        assert torch.equal(fresh.scale, trained.scale) and bool(fresh.initialized)
        assert torch.equal(fresh(w), trained(w))
    conv = torch.nn.Conv2d(3, 6, 3)
    layer = QuantLayer(conv, 4, 4, learnable=True)
    assert layer.weight_quant.scale.shape == (6,)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_fused_kernels_match_the_five_op_path(monkeypatch, bits):
    """The accelerator path (PyTorch's fused kernels, forced here on the CPU) gives the
    same values and straight-through gradients as the CPU path."""
    from ghn_pyg.quant import fakequant

    g = torch.Generator().manual_seed(bits)
    weight = torch.randn(16, 8, 3, 3, generator=g)
    acts = torch.randn(32, 8, 6, 6, generator=g) * 3 + 1
    low, high = torch.tensor(-2.0), torch.tensor(5.0)

    def run() -> list[torch.Tensor]:
        w = weight.clone().requires_grad_()
        a = acts.clone().requires_grad_()
        outs = [fake_quant_weight(w, bits), fake_quant_weight(w, bits, per_channel=False),
                fake_quant_act(a, bits), fake_quant_act(a, bits, low, high)]
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        return outs + [w.grad, a.grad]

    monkeypatch.setattr(fakequant, "FUSED_KERNELS", "never")
    five_op = run()
    monkeypatch.setattr(fakequant, "FUSED_KERNELS", "always")
    fused = run()
    for ours, theirs in zip(five_op[:2] + five_op[4:5], fused[:2] + fused[4:5]):
        assert torch.equal(ours, theirs)  # weights: zero point 0, identical
    for ours, theirs in zip(five_op[2:4], fused[2:4]):  # activations: x/s + z rounds alike
        step = float((theirs.max() - theirs.min()).detach() / (2 ** bits - 1))
        differ = (ours != theirs)
        assert differ.float().mean() < 1e-3
        assert (ours - theirs).abs().max() <= step * 1.01
    assert (five_op[5] != fused[5]).float().mean() < 1e-3  # the same straight-through mask


def test_quant_noise_share_is_each_channels_noise_share_of_its_power():
    # channel 0 spans the whole range [0, 3], channel 1 is constant (below one step)
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    noise = (3.0 / 15) ** 2 / 12  # 4 bits: 15 steps over the range [0, 3]
    expected = (noise / (noise + 1.25) + 1.0) / 2  # Var([0, 1, 2, 3]) = 1.25
    assert float(quant_noise_share(x, 4)) == pytest.approx(expected, rel=1e-5)
    # [B, C, H, W]: channels on dim 1; more bits, less noise; [B]: one channel
    images = torch.randn(8, 3, 5, 5)
    assert 0 < float(quant_noise_share(images, 8)) < float(quant_noise_share(images, 2)) < 1
    assert float(quant_noise_share(torch.tensor([0.0, 3.0]), 2)) == pytest.approx(
        1 / 12 / (1 / 12 + 2.25), rel=1e-5)
    assert float(quant_noise_share(torch.zeros(4, 2), 4)) == 0.0  # no range, no noise


def test_quant_noise_share_gradient_pulls_an_outlier_in_and_weak_channels_up():
    torch.manual_seed(0)
    x = torch.rand(64, 4)
    x[0, 0] = 20.0  # one large value stretches the step of every channel
    x[:, 3] *= 0.01  # a weak channel
    x.requires_grad_(True)
    quant_noise_share(x, 4).backward()
    assert x.grad[0, 0] > 0  # descent lowers the outlier
    weak = x.detach()[:, 3]
    # descent spreads the weak channel: its gradient opposes the deviation from its mean
    assert float((x.grad[:, 3] * (weak - weak.mean())).sum()) < 0


def test_act_quantizer_records_the_noise_share_of_quantizing_passes_only():
    x = torch.randn(16, 3, 4, 4, requires_grad=True)
    quantizer = ActQuantizer(4)
    quantizer(x)
    assert quantizer.noise_share is None  # off by default
    quantizer.record_noise = True
    quantizer(x)
    assert quantizer.noise_share.requires_grad
    assert float(quantizer.noise_share.detach()) == pytest.approx(
        float(quant_noise_share(x.detach(), 4)))
    quantizer.noise_share = None
    quantizer.observe()
    quantizer(x)
    assert quantizer.noise_share is None  # observing passes values through
    quantizer.freeze()
    quantizer(x)
    assert quantizer.noise_share is not None
    float_quantizer = ActQuantizer(32)
    float_quantizer.record_noise = True
    float_quantizer(x)
    assert float_quantizer.noise_share is None
