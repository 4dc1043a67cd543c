"""Quantization-aware training of one CNN from a chosen starting point.

The GHN-QAT papers leave as future work whether a GHN-QAT prediction is a better
starting point for quantization-aware training than a random initialization. Here a
network starts from a named initializer (:mod:`ghn_pyg.inits`) or from a shipped
GHN's prediction (``ghn``, ``ghn-qat``; GHN-QAT conditions on the target bits), then
trains with its conv and linear layers fake-quantized at those bits (straight-through
rounding, per-channel weight and per-tensor activation scales from the current
ranges), SGD with momentum on a cosine schedule. Top-1 is recorded before training
(epoch 0) and after every epoch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..graph.tracer import fx_graph
from ..inits import ALIASES, INITIALIZERS, init_params, load_params, seeded
from ..quant.runner import batch_norm_inputs, quantize
from ..graph.bits import FLOAT_BITS, bits_label
from ..quant.spec import QuantSpec
from ..train.evaluate import top1
from ..train.sgd import sgd_loop

__all__ = ["GHN_INITS", "HE_SCALED_GHN_INITS", "QATHistory", "initial_params", "qat_train",
           "start_names", "check_start", "rescale_before_batch_norm"]

#: Starting points predicted by a shipped GHN instead of drawn at random.
GHN_INITS = {"ghn": "ghn-fmnist", "ghn-qat": "ghn-qat-fmnist"}
#: A GHN's prediction with every weight that feeds a batch norm rescaled to He normal's
#: standard deviation (:func:`rescale_before_batch_norm`): the same network function
#: under batch statistics, a larger effective SGD step.
HE_SCALED_GHN_INITS = {f"{name}-he-scale": name for name in GHN_INITS}


def start_names() -> list[str]:
    """Every starting point :func:`initial_params` accepts (plus
    :data:`~ghn_pyg.inits.ALIASES`)."""
    return list(INITIALIZERS) + list(GHN_INITS) + list(HE_SCALED_GHN_INITS)


def check_start(init: str) -> None:
    """Raise ``ValueError`` listing the known starting points if ``init`` is not one."""
    if init not in start_names() and init not in ALIASES:
        raise ValueError(f"unknown initialization {init!r}; known: {', '.join(start_names())}")


@lru_cache(maxsize=4)
def _pretrained(name: str):
    from ..nn.ghn import GHN

    return GHN.from_pretrained(name).eval()


def initial_params(init: str, module: nn.Module, in_shape: Sequence[int], seed: int = 0,
                   bits: int = FLOAT_BITS) -> dict[str, Tensor]:
    """The starting parameters of ``module``.

    Args:
        init: an initializer of :mod:`ghn_pyg.inits` (``he``, ``orthogonal``, ...),
            ``ghn`` / ``ghn-qat`` (the shipped Fashion-MNIST GHNs) or
            ``ghn-he-scale`` / ``ghn-qat-he-scale`` (their predictions through
            :func:`rescale_before_batch_norm`).
        module: the network (not modified).
        in_shape: its input (C, H, W).
        seed: seed of a random draw.
        bits: the bit-width the network will run at; a GHN predicts for a graph
            annotated with it (a GHN snaps bits it was not trained with).

    Returns:
        ``{name: tensor}`` for every parameter.

    Raises:
        ValueError: an unknown starting point (lists the known ones).
    """
    if init in HE_SCALED_GHN_INITS:
        params = initial_params(HE_SCALED_GHN_INITS[init], module, in_shape, seed, bits)
        return rescale_before_batch_norm(module, params)
    if init in GHN_INITS:
        spec = QuantSpec.uniform(bits) if bits < FLOAT_BITS else None
        return _pretrained(GHN_INITS[init]).predict(module, (1, *in_shape), spec)
    check_start(init)
    return init_params(init, module, seed)


def rescale_before_batch_norm(module: nn.Module, params: dict[str, Tensor]) -> dict[str, Tensor]:
    r"""Rescale every conv or linear layer whose only use feeds a batch norm
    (:func:`~ghn_pyg.quant.runner.batch_norm_inputs`) to He normal's standard deviation.

    For such a layer with weight :math:`W` (fan-in :math:`n`) and bias :math:`b`, both
    are multiplied by :math:`c = \sqrt{2 / n} / \operatorname{std}(W)`. Batch norm
    with batch statistics is invariant to that scale,
    :math:`\mathrm{BN}(c(Wx + b)) = \mathrm{BN}(Wx + b)`, and so is a per-channel
    weight quantizer, so the network computes the same function, while SGD's effective
    step on :math:`W` grows by :math:`1 / c^2`. Other parameters are returned as they
    are; running statistics are not parameters and are not touched.

    Args:
        module: the network (traced with torch.fx, not modified).
        params: ``{name: tensor}`` for its parameters.

    Returns:
        A new ``{name: tensor}``.

    Raises:
        GraphBuildError: torch.fx cannot trace ``module``.
    """
    out = dict(params)
    for node, _ in batch_norm_inputs(module, fx_graph(module)):
        weight = params[f"{node.target}.weight"]
        std = float(weight.std()) if weight.numel() > 1 else 0.0
        if std == 0.0:
            continue
        scale = (2.0 / weight[0].numel()) ** 0.5 / std
        out[f"{node.target}.weight"] = weight * scale
        if module.get_submodule(node.target).bias is not None:
            out[f"{node.target}.bias"] = params[f"{node.target}.bias"] * scale
    return out


@dataclass
class QATHistory:
    """Top-1 of one QAT run per epoch.

    Attributes:
        init: the starting point's name.
        bits: weight and activation bits.
        accuracy: test top-1 (fractions) after each epoch, ``accuracy[0]`` before
            training; batch-norm batch statistics (GHN-2's protocol, the only choice
            before training).
        final_running_bn: the final network's top-1 with its running BN statistics
            (how it would be deployed); None without training.
    """

    init: str
    bits: int
    accuracy: list[float] = field(default_factory=list)
    final_running_bn: float | None = None

    def epochs_to(self, target: float) -> int | None:
        """The first epoch whose accuracy reaches ``target`` (a fraction), or None."""
        return next((e for e, a in enumerate(self.accuracy) if a >= target), None)


def qat_train(module: nn.Module, init: str, train_images: Dataset, test_images: Dataset,
              bits: int = 4, epochs: int = 5, batch_size: int = 128, lr: float = 0.05,
              seed: int = 0, first_last_8bit: bool = False, grad_clip: float = 5.0,
              device: str | torch.device = "cpu",
              progress: bool = True) -> tuple[nn.Module, QATHistory]:
    """Quantization-aware training of a copy of ``module`` from ``init``.

    Args:
        module: the network (not modified).
        init: the starting point (see :func:`initial_params`).
        train_images, test_images: ``(image, label)`` datasets.
        bits: weight and activation bits of every conv and linear layer (2..8).
        epochs: passes over ``train_images``.
        batch_size, lr: SGD (momentum 0.9, weight decay 5e-4, cosine schedule).
        seed: seed of the random start and the shuffling.
        first_last_8bit: keep the first and last layer at 8 bits.
        grad_clip: gradient-norm clipping (low bit-widths can spike).
        device: where to train.
        progress: show a progress bar.

    Returns:
        The trained copy (BN running statistics gathered during QAT) and its
        :class:`QATHistory`.

    Raises:
        ValueError: bad bits, epochs or starting point.
    """
    if not 2 <= bits <= 8:
        raise ValueError(f"QAT bits must be 2..8, got {bits}")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    device = torch.device(device)
    in_shape = tuple(train_images[0][0].shape)
    model = copy.deepcopy(module).to(device)
    load_params(model, initial_params(init, model, in_shape, seed, bits))
    spec = QuantSpec.uniform(bits, first_last_8bit=first_last_8bit)
    runner = quantize(model, spec, (1, *in_shape), bn="batch")
    test = DataLoader(test_images, batch_size=256)
    history = QATHistory(init, bits, [top1(runner, None, test, device)])
    with seeded(seed):  # dropout draws from seed; the caller's RNG is kept
        sgd_loop(runner, model.parameters(), train_images, epochs, batch_size, lr, seed, device,
                 grad_clip=grad_clip, before_epoch=lambda: runner.set_bn("update"),
                 after_epoch=lambda: history.accuracy.append(
                     top1(runner.set_bn("batch"), None, test, device)),
                 progress=f"QAT {init} {bits_label(bits)}" if progress else None)
    if epochs > 0:
        history.final_running_bn = top1(runner.set_bn("running"), None, test, device)
    return model.eval(), history
