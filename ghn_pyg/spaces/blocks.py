"""``blocks``: one building-block family at a time, the architectures of the init study."""

from __future__ import annotations

import random
from typing import Any

from torch import nn

from .base import Space
from .macro import build_macro

__all__ = ["BlocksSpace", "FAMILIES"]

#: Block families: (block type, batch norm, activation, extra block settings).
FAMILIES: dict[str, tuple[str, bool, str, dict[str, Any]]] = {
    "plain": ("conv", True, "relu", {}),
    "plain_nobn": ("conv", False, "relu", {}),
    "dwsep": ("dwsep", True, "relu", {}),
    "dwsep_nobn": ("dwsep", False, "relu", {}),
    "residual": ("residual", True, "relu", {}),
    "inverted_residual": ("mbconv", True, "relu6", {"expand": 6, "se": False}),
}


class BlocksSpace(Space):
    """VGG-like networks of one block family: a stem, three stages of ``depth`` blocks
    at widths w, 2w, 4w (stride 2 at the start of stages 2 and 3), pooling and a
    linear classifier.

    Args:
        family: fix the family (see :data:`FAMILIES`); None draws it.
        depth: (min, max) blocks per stage.
        width: choices of the base width w.
    """

    name = "blocks"

    def __init__(self, family: str | None = None, depth: tuple[int, int] = (1, 3),
                 width: tuple[int, ...] = (8, 16, 24, 32)) -> None:
        if family is not None and family not in FAMILIES:
            raise ValueError(f"unknown block family {family!r}; use one of {', '.join(FAMILIES)}")
        self.family, self.depth, self.width = family, depth, width

    def sample(self, rng: random.Random) -> dict[str, Any]:
        family = self.family or rng.choice(sorted(FAMILIES))
        return self.make_spec(family, rng.randint(*self.depth), rng.choice(self.width))

    def make_spec(self, family: str, depth: int, width: int) -> dict[str, Any]:
        """The spec of ``family`` with ``depth`` blocks per stage and base ``width``.

        Raises:
            ValueError: unknown family.
        """
        if family not in FAMILIES:
            raise ValueError(f"unknown block family {family!r}; use one of {', '.join(FAMILIES)}")
        block, bn, act, extra = FAMILIES[family]
        stages = [{"block": block, "width": width * mult, "depth": depth, "stride": stride,
                   "kernel": 3, "bn": bn, "act": act, **extra}
                  for mult, stride in ((1, 1), (2, 2), (4, 2))]
        return {"space": self.name, "family": family,
                "stem": {"width": width, "kernel": 3, "stride": 1, "bn": bn, "act": act},
                "stages": stages, "head": {"hidden": [], "act": act}}

    def build(self, spec: dict[str, Any], in_channels: int = 3, num_classes: int = 10) -> nn.Module:
        self.check_spec(spec)
        return build_macro(spec, in_channels, num_classes)
