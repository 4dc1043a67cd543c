"""``families``: networks mixing the torchvision zoo's block families with the efficient
ones, to widen a GHN's training coverage (grouped convs, shuffles, fire modules,
ConvNeXt blocks with layer norm and GELU, ImageNet-style stems, widths up to 512)."""

from __future__ import annotations

import random
from typing import Any

from torch import nn

from .base import Space, count_params
from .layers import ALL_ACTIVATION_LAYERS, BLOCK_TYPES
from .macro import build_macro
from .zoo_blocks import ZOO_BLOCK_TYPES

__all__ = ["FamiliesSpace"]


def _round(width: float, multiple: int = 8) -> int:
    return max(multiple, int(round(width / multiple)) * multiple)


class FamiliesSpace(Space):
    """VGG-like networks whose stages draw their block from the zoo families
    (:data:`~.zoo_blocks.ZOO_BLOCK_TYPES`: grouped bottleneck with optional SE, ShuffleNet-v2
    unit, fire module, ConvNeXt block) with probability ``zoo_prob``, else from the
    ``efficient`` blocks; a CIFAR-style stem (3x3, stride 1) or, with probability
    ``imagenet_stem_prob``, an ImageNet-style one (3/5/7 kernel, stride 2, max pool);
    1-4 stages of 1-3 blocks, widths 16..512; relu/relu6/hardswish/silu/gelu
    (ConvNeXt stages mostly GELU); batch norm per stage with probability ``bn_prob``
    (fire stages: half that); at most ``max_downsample`` stride-2 steps in all.

    Args:
        zoo_prob: probability that a stage uses a zoo block.
        imagenet_stem_prob: probability of the stride-2 + max-pool stem.
        bn_prob: probability that a stage (and the stem) uses batch norm.
        max_params: parameter budget at 3 input channels and 10 classes.
        max_downsample: most stride-2 steps, stem and pool included (3 keeps 28x28 inputs
            at >= 4x4).
    """

    name = "families"

    def __init__(self, zoo_prob: float = 0.7, imagenet_stem_prob: float = 0.4,
                 bn_prob: float = 0.8, max_params: int = 1_000_000,
                 max_downsample: int = 3) -> None:
        if max_downsample < 2:
            raise ValueError(f"max_downsample must be at least 2 (the ImageNet stem), "
                             f"got {max_downsample}")
        self.zoo_prob, self.imagenet_stem_prob, self.bn_prob = zoo_prob, imagenet_stem_prob, bn_prob
        self.max_params, self.max_downsample = max_params, max_downsample

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """Draw a spec within the budget (rejection sampling, at most 100 draws).

        Raises:
            RuntimeError: no draw fits ``max_params``.
        """
        for _ in range(100):
            spec = self._draw(rng)
            if count_params(self, spec) <= self.max_params:
                return spec
        raise RuntimeError(f"no architecture under {self.max_params} parameters in 100 draws; "
                           "raise max_params")

    def _draw(self, rng: random.Random) -> dict[str, Any]:
        activations = sorted(ALL_ACTIVATION_LAYERS)
        act = rng.choice(activations)
        bn = rng.random() < self.bn_prob
        imagenet = rng.random() < self.imagenet_stem_prob
        width = rng.choice([16, 24, 32, 48, 64])
        stem = {"width": width, "kernel": rng.choice([3, 5, 7]) if imagenet else 3,
                "stride": 2 if imagenet else 1, "bn": bn, "act": act, "pool": imagenet}
        n_stages = rng.randint(1, 4)
        budget = self.max_downsample - (2 if imagenet else 0)
        downsample = sorted(rng.sample(range(n_stages), min(n_stages, budget)))
        stages = []
        for s in range(n_stages):
            width = min(_round(width * rng.choice([1.0, 1.5, 2.0])), 512)
            zoo = rng.random() < self.zoo_prob
            block = rng.choice(ZOO_BLOCK_TYPES if zoo else BLOCK_TYPES)
            stage_bn = rng.random() < (self.bn_prob / 2 if block == "fire" else self.bn_prob)
            stage_act = rng.choice(activations)
            if block == "convnext" and rng.random() < 0.75:
                stage_act = "gelu"
            stages.append({
                "block": block, "width": width, "depth": rng.randint(1, 3),
                "stride": 2 if s in downsample else 1,
                "kernel": 7 if block == "convnext" and rng.random() < 0.75
                else rng.choice([3, 5, 7]),
                "bn": stage_bn, "act": stage_act,
                "expand": 4 if block == "convnext" else rng.choice([1, 3, 6]),
                "se": rng.random() < 0.3, "group_width": rng.choice([4, 8, 16]),
            })
        hidden = [rng.choice([64, 128, 256])] if rng.random() < 0.3 else []
        return {"space": self.name, "stem": stem, "stages": stages,
                "head": {"hidden": hidden, "act": act}}

    def build(self, spec: dict[str, Any], in_channels: int = 3, num_classes: int = 10) -> nn.Module:
        self.check_spec(spec)
        return build_macro(spec, in_channels, num_classes)
