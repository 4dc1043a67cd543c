"""Linear probes: how much of a predicted network's failure lies in its classifier.

A network with predicted parameters can fail in two places: its features (everything
before the classifier) or the classifier that maps them to classes. A linear probe
keeps the features and refits only the classifier, a multinomial logistic regression
on training images; its top-1 against the network's own top-1 on the same validation
images separates the two. A probe far above the network means the features carry the
classes and the predicted classifier does not read them.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import Tensor

from ..quant.runner import QuantizedModel

__all__ = ["classifier_features", "linear_probe_top1"]


@torch.no_grad()
def classifier_features(runner: QuantizedModel, params: Mapping[str, Tensor] | None,
                        batches: Iterable[tuple[Tensor, Tensor]]
                        ) -> tuple[Tensor, Tensor, Tensor]:
    """The input of a network's classifier (its last conv/linear layer run), per image.

    Args:
        runner: the quantized network, its bits, BN mode and ranges already set (e.g. by
            :meth:`~ghn_pyg.train.protocol.EvalProtocol.apply`).
        params: its parameters (None: the model's own).
        batches: ``(images [B, C, H, W], labels [B])`` batches.

    Returns:
        ``(features [N, F], logits [N, K], labels [N])``: a 4-D classifier input (e.g.
        SqueezeNet's final 1x1 convolution) is averaged over its spatial positions.

    Raises:
        ValueError: no batches, or a network without conv/linear layers.
    """
    if not runner.layers:
        raise ValueError(f"{runner.graph.name} has no conv/linear layer to probe")
    calls: list[Tensor] = []
    hooks = [layer.register_forward_hook(lambda mod, inputs, out: calls.append(inputs[0]))
             for layer in runner.layers.values()]
    features, logits, labels = [], [], []
    try:
        for images, y in batches:
            calls.clear()
            logits.append(runner(images, params).flatten(1))
            last = calls[-1]
            features.append(last.mean(dim=(2, 3)) if last.dim() == 4 else last.flatten(1))
            labels.append(y)
    finally:
        for hook in hooks:
            hook.remove()
    if not labels:
        raise ValueError("classifier_features needs at least one batch of images")
    return torch.cat(features).float(), torch.cat(logits).float(), torch.cat(labels)


def linear_probe_top1(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                      test_labels: Tensor, num_classes: int, weight_decay: float = 1e-3,
                      max_iter: int = 200) -> float:
    r"""Top-1 of a linear classifier fitted on fixed features.

    Features are standardised with the training set's mean and standard deviation, then

    .. math::
        \min_{W, b} \; \frac{1}{N} \sum_i \mathrm{CE}(W x_i + b, y_i)
        + \lambda \lVert W \rVert_2^2

    is solved with L-BFGS from zero (deterministic for fixed inputs).

    Args:
        train_features: [N, F] features the probe is fitted on.
        train_labels: [N] their classes.
        test_features: [M, F] features it is judged on.
        test_labels: [M] their classes.
        num_classes: K, the number of classes.
        weight_decay: :math:`\lambda`.
        max_iter: L-BFGS iterations.

    Returns:
        The fraction of ``test_features`` classified correctly.

    Raises:
        ValueError: mismatched shapes, labels outside ``[0, num_classes)``, fewer than
            two classes among the training labels, or a negative ``weight_decay``.
    """
    if train_features.dim() != 2 or test_features.dim() != 2 \
            or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"features must be [N, F] and [M, F] with the same F, got "
                         f"{tuple(train_features.shape)} and {tuple(test_features.shape)}")
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise ValueError(f"{len(train_features)} / {len(test_features)} feature rows for "
                         f"{len(train_labels)} / {len(test_labels)} labels")
    for labels in (train_labels, test_labels):
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}), got "
                             f"{int(labels.min())}..{int(labels.max())}")
    if train_labels.unique().numel() < 2:
        raise ValueError("a linear probe needs training images of at least two classes")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    x_train, x_test = (train_features - mean) / std, (test_features - mean) / std
    weight = torch.zeros(x_train.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x_train @ weight + bias, train_labels) \
            + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        correct = ((x_test @ weight + bias).argmax(1) == test_labels).float()
    return correct.mean().item() if len(correct) else 0.0
