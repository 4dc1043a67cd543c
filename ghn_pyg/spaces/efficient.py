"""``efficient``: VGG-like networks of the blocks efficient CNNs use (the training space)."""

from __future__ import annotations

import random
from typing import Any

from torch import nn

from .base import Space
from .layers import ACTIVATION_LAYERS, BLOCK_TYPES
from .macro import build_macro, macro_param_count

__all__ = ["EfficientSpace"]


def _round(width: float, multiple: int = 4) -> int:
    return max(multiple, int(round(width / multiple)) * multiple)


class EfficientSpace(Space):
    """Plain conv (+-BN), depthwise-separable (+-BN), basic and bottleneck residual and
    inverted residual (MBConv, expansion 1/3/6, optional squeeze-excite) blocks;
    relu / relu6 / hardswish / silu; kernels 3/5/7; 1..5 stages of 1..4 blocks, stage
    widths 8..128, stride-2 downsampling (at most ``max_downsample`` times), a stem and a
    head of global pooling and 1-2 linear layers, under a parameter budget.

    Args:
        width_mult: (min, max) multiplier of all widths (the ``wide`` split uses 2..4).
        depth: (min, max) blocks per stage (the ``deep`` split uses 5..8).
        bn_prob: probability that a stage (and the stem) uses batch norm.
        max_params: parameter budget at 3 input channels and 10 classes.
        max_downsample: most stride-2 steps (3 keeps 28x28 inputs at >= 4x4).
    """

    name = "efficient"

    def __init__(self, width_mult: tuple[float, float] = (1.0, 1.0),
                 depth: tuple[int, int] = (1, 4), bn_prob: float = 0.85,
                 max_params: int = 1_000_000, max_downsample: int = 3) -> None:
        self.width_mult, self.depth, self.bn_prob = width_mult, depth, bn_prob
        self.max_params, self.max_downsample = max_params, max_downsample

    def for_split(self, split: str) -> Space:
        """``wide`` (2-4x widths), ``deep`` (5-8 blocks per stage), ``nobn`` (no BN)."""
        variants = {
            "wide": dict(width_mult=(2.0, 4.0), max_params=16 * self.max_params),
            "deep": dict(depth=(5, 8), max_params=4 * self.max_params),
            "nobn": dict(bn_prob=0.0),
        }
        if split in variants:
            settings = dict(width_mult=self.width_mult, depth=self.depth, bn_prob=self.bn_prob,
                            max_params=self.max_params, max_downsample=self.max_downsample)
            settings.update(variants[split])
            return EfficientSpace(**settings)
        return super().for_split(split)

    def splits(self) -> tuple[str, ...]:
        return ("train", "val", "test", "wide", "deep", "nobn")

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """Draw a spec within the budget (rejection sampling, at most 100 draws)."""
        for _ in range(100):
            spec = self._draw(rng)
            if macro_param_count(spec) <= self.max_params:
                return spec
        raise RuntimeError(f"no architecture under {self.max_params} parameters in 100 draws; "
                           "raise max_params")

    def _draw(self, rng: random.Random) -> dict[str, Any]:
        mult = rng.uniform(*self.width_mult)
        bn = rng.random() < self.bn_prob
        act = rng.choice(sorted(ACTIVATION_LAYERS))
        width = _round(rng.choice([8, 12, 16, 24, 32]) * mult)
        stem = {"width": width, "kernel": 3, "stride": 1, "bn": bn, "act": act}
        n_stages = rng.randint(1, 5)
        downsample = sorted(rng.sample(range(n_stages), min(n_stages, self.max_downsample)))
        stages = []
        for s in range(n_stages):
            width = min(_round(width * rng.choice([1.0, 1.5, 2.0])), _round(128 * mult))
            width = max(width, _round(8 * mult))
            stage_bn = rng.random() < self.bn_prob
            stages.append({
                "block": rng.choice(BLOCK_TYPES), "width": width,
                "depth": rng.randint(*self.depth), "stride": 2 if s in downsample else 1,
                "kernel": rng.choice([3, 5, 7]), "bn": stage_bn,
                "act": rng.choice(sorted(ACTIVATION_LAYERS)),
                "expand": rng.choice([1, 3, 6]), "se": rng.random() < 0.3,
            })
        hidden = [rng.choice([64, 128, 256])] if rng.random() < 0.5 else []
        return {"space": self.name, "stem": stem, "stages": stages,
                "head": {"hidden": hidden, "act": act}}

    def build(self, spec: dict[str, Any], in_channels: int = 3, num_classes: int = 10) -> nn.Module:
        self.check_spec(spec)
        return build_macro(spec, in_channels, num_classes)
