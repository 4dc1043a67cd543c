"""Architecture spaces: the interface, the registry and spec utilities."""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["Space", "register_space", "get_space", "SPACES", "spec_hash", "count_params",
           "SPLITS", "OOD_SPLITS"]

#: In-distribution splits, drawn from a space's base distribution with distinct seeds.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Out-of-distribution splits a space may support.
OOD_SPLITS: tuple[str, ...] = ("wide", "deep", "nobn", "torchvision")


class Space(ABC):
    """A distribution of CNN architectures, each described by a JSON spec.

    Subclasses implement :meth:`sample` and :meth:`build`. Building is deterministic:
    the same spec always gives the same module structure, and so the same graph.
    """

    #: Registry name, also stored in every spec as ``spec["space"]``.
    name: str = ""

    @abstractmethod
    def sample(self, rng: random.Random) -> dict[str, Any]:
        """Draw one architecture spec (JSON-serialisable) using only ``rng``."""

    @abstractmethod
    def build(self, spec: dict[str, Any], in_channels: int = 3, num_classes: int = 10) -> nn.Module:
        """Build the network of ``spec``.

        Raises:
            ValueError: the spec is malformed or belongs to another space.
        """

    def for_split(self, split: str) -> "Space":
        """The space to draw ``split`` from: itself for train/val/test.

        Raises:
            ValueError: an out-of-distribution split this space does not define.
        """
        if split in SPLITS:
            return self
        raise ValueError(f"space {self.name!r} has no split {split!r}; it supports "
                         f"{', '.join(self.splits())}")

    def splits(self) -> tuple[str, ...]:
        """The splits :meth:`for_split` accepts."""
        return SPLITS

    def check_spec(self, spec: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless ``spec`` names this space."""
        if not isinstance(spec, dict) or spec.get("space") != self.name:
            found = spec.get("space") if isinstance(spec, dict) else type(spec).__name__
            raise ValueError(f"spec of space {found!r} given to space {self.name!r}")


SPACES: dict[str, Callable[..., Space]] = {}


def register_space(name: str, factory: Callable[..., Space]) -> None:
    """Register a space class (or factory) under ``name`` for :func:`get_space`."""
    if not callable(factory):
        raise TypeError(f"space factory for {name!r} must be callable, got {factory!r}")
    SPACES[name] = factory


def get_space(name: str, **kwargs: Any) -> Space:
    """Instantiate the registered space ``name``.

    Raises:
        ValueError: unknown name (lists the known ones).
    """
    if name not in SPACES:
        raise ValueError(f"unknown architecture space {name!r}; known: {', '.join(sorted(SPACES))}")
    return SPACES[name](**kwargs)


def spec_hash(spec: dict[str, Any]) -> int:
    """A stable 63-bit hash of a spec's canonical JSON form."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def count_params(space: Space, spec: dict[str, Any], in_channels: int = 3,
                 num_classes: int = 10) -> int:
    """Parameter count of a spec's network, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = space.build(spec, in_channels, num_classes)
    return sum(p.numel() for p in model.parameters())
