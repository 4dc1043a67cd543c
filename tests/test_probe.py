"""Linear probes on the classifier's input (ghn_pyg.train.probe)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghn_pyg.quant import quantize
from ghn_pyg.train.probe import classifier_features, linear_probe_top1


def clusters(n: int, seed: int, shift: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian clusters in 5-d, ``shift`` apart along the first axes."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    x = torch.randn(n, 5, generator=g)
    x[torch.arange(n), labels] += shift
    return x, labels


def test_probe_separates_clusters_and_stays_at_chance_on_random_labels():
    train_x, train_y = clusters(300, 0)
    test_x, test_y = clusters(150, 1)
    assert linear_probe_top1(train_x, train_y, test_x, test_y, 3) > 0.95
    shuffled = train_y[torch.randperm(300, generator=torch.Generator().manual_seed(2))]
    assert linear_probe_top1(train_x, shuffled, test_x, test_y, 3) < 0.6
    # deterministic: same inputs, same answer
    assert linear_probe_top1(train_x, train_y, test_x, test_y, 3) == \
        linear_probe_top1(train_x, train_y, test_x, test_y, 3)


def test_probe_rejects_bad_inputs():
    x, y = clusters(30, 0)
    with pytest.raises(ValueError, match="same F"):
        linear_probe_top1(x, y, x[:, :4], y, 3)
    with pytest.raises(ValueError, match="labels"):
        linear_probe_top1(x, y[:10], x, y, 3)
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        linear_probe_top1(x, y, x, y, 2)
    with pytest.raises(ValueError, match="two classes"):
        linear_probe_top1(x, torch.zeros(30, dtype=torch.long), x, y, 3)
    with pytest.raises(ValueError, match="weight_decay"):
        linear_probe_top1(x, y, x, y, 3, weight_decay=-1.0)


def batches(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 1])) for _ in range(2)]


def test_classifier_features_are_the_linear_heads_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(6, 3))
    runner = quantize(model, input_shape=(1, 1, 8, 8))
    data = batches()
    features, logits, labels = classifier_features(runner, None, data)
    images = torch.cat([x for x, _ in data])
    expected = model[:4](images)
    assert features.shape == (8, 6) and torch.allclose(features, expected, atol=1e-6)
    assert torch.allclose(logits, model(images), atol=1e-6)
    assert labels.tolist() == [0, 1, 2, 1] * 2


def test_classifier_features_average_a_convolutional_heads_input_over_space():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 5, 3), nn.ReLU(), nn.Conv2d(5, 3, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    runner = quantize(model, input_shape=(1, 1, 8, 8))
    data = batches(1)
    features, logits, _ = classifier_features(runner, None, data)
    images = torch.cat([x for x, _ in data])
    assert torch.allclose(features, model[:2](images).mean(dim=(2, 3)), atol=1e-6)
    assert logits.shape == (8, 3)
    params = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    zeros, _, _ = classifier_features(runner, params, data)  # given params are the ones run
    assert torch.count_nonzero(zeros) == 0


def test_classifier_features_need_batches():
    runner = quantize(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), input_shape=(1, 1, 2, 2))
    with pytest.raises(ValueError, match="at least one batch"):
        classifier_features(runner, None, [])
