"""ptq_evaluate: accuracy and QMSE per bit-width."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghn_pyg.quant import ptq_evaluate


def trained_tiny_cnn():
    """A tiny CNN fitted to a separable toy task, so accuracy is meaningful."""
    torch.manual_seed(0)
    x = torch.randn(256, 1, 8, 8)
    y = (x.mean((1, 2, 3)) > 0).long()
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 256, 64)]
    return model, batches


def test_results_per_setting():
    model, batches = trained_tiny_cnn()
    with torch.no_grad():
        float_acc = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in batches) / 256
    results = ptq_evaluate(model, batches, bits=(32, 8, 4, 2, (8, 32)), progress=False)
    assert [r.label for r in results] == ["FP32", "W8A8", "W4A4", "W2A2", "W8A32"]
    fp32, w8, w4, w2, w8only = results
    assert fp32.accuracy == pytest.approx(float_acc) and fp32.accuracy > 0.8
    assert fp32.qmse_w == fp32.qmse_a == 0.0 and fp32.num_samples == 256
    assert abs(w8.accuracy - fp32.accuracy) <= 0.03
    assert 0 < w8.qmse_w < w4.qmse_w < w2.qmse_w
    assert 0 < w8.qmse_a < w4.qmse_a < w2.qmse_a
    assert w8only.qmse_a == 0.0 and w8only.qmse_w == pytest.approx(w8.qmse_w)
    assert set(w4.layers) == {"0", "3", "8"}
    assert w4.qmse_w == pytest.approx(sum(v[0] for v in w4.layers.values()) / 3)


def test_calibration_methods_and_bad_input():
    model, batches = trained_tiny_cnn()
    for method in ("minmax", "percentile", "mse", None):
        (result,) = ptq_evaluate(model, batches, bits=(8,), calibration=method, progress=False)
        assert result.accuracy > 0.75
    with pytest.raises(ValueError, match="invalid bit-width 1"):
        ptq_evaluate(model, batches, bits=(8, 1), progress=False)
    with pytest.raises(ValueError, match="empty"):
        ptq_evaluate(model, [], bits=(8,), progress=False)
