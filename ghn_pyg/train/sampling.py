"""Step-indexed sampling: what a training step sees is a pure function of its step.

Architectures, images and bit-widths of step ``t`` on rank ``r`` depend only on the
seed, ``t``, ``r`` and the world size, so a resumed run sees exactly what an
uninterrupted one would, and ranks never draw the same architecture in a step.
"""

from __future__ import annotations

import random
from functools import lru_cache
from itertools import accumulate
from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..graph.archgraph import ArchGraph
from ..graph.bits import FLOAT_BITS

__all__ = ["ArchSampler", "MixtureSampler", "ImageBatcher", "draw_bits", "network_bits"]


@lru_cache(maxsize=8)  # one epoch's order per dataset of a mixture
def _permutation(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


class ArchSampler:
    """Meta-batches of architecture indices: epochs of seeded permutations, each step
    taking the next ``meta_batch * world`` entries, ``meta_batch`` per rank."""

    def __init__(self, num_archs: int, meta_batch: int, seed: int, rank: int = 0,
                 world: int = 1) -> None:
        if num_archs < 1:
            raise ValueError("the architecture dataset is empty")
        self.n, self.m, self.seed, self.rank, self.world = num_archs, meta_batch, seed, rank, world

    def indices(self, step: int) -> list[int]:
        """The dataset indices rank ``rank`` trains on at ``step``."""
        first = (step * self.world + self.rank) * self.m
        out = []
        for j in range(first, first + self.m):
            epoch, pos = divmod(j, self.n)
            out.append(_permutation(self.n, self.seed * 100003 + epoch)[pos])
        return out


class MixtureSampler:
    r"""Meta-batches from several architecture datasets (an
    :class:`~ghn_pyg.data.ArchMixture`'s indices).

    Slot :math:`j` of the run (slots are numbered as :class:`ArchSampler` numbers them,
    ``meta_batch`` per rank and step) takes dataset :math:`k` with probability
    :math:`w_k / \sum_i w_i`, drawn with a generator seeded by the run's seed and
    :math:`j`; the slot then takes that dataset's next architecture in its own epochs of
    seeded permutations. Every run with the same seed draws the same architectures, and
    a resumed one continues where it stopped (the datasets' draw counts are replayed
    from slot 0, a few microseconds per slot).

    Args:
        sizes: architectures per dataset.
        weights: sampling weight per dataset (non-negative, not all zero).
        meta_batch, seed, rank, world: as for :class:`ArchSampler`.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], meta_batch: int,
                 seed: int, rank: int = 0, world: int = 1) -> None:
        if len(sizes) != len(weights) or not sizes or min(sizes) < 1:
            raise ValueError(f"one weight per non-empty dataset, got sizes {list(sizes)} and "
                             f"weights {list(weights)}")
        self.sizes, self.weights = list(sizes), list(weights)
        self.offsets = [0, *accumulate(self.sizes)][:-1]  # as ArchMixture's
        self.m, self.seed, self.rank, self.world = meta_batch, seed, rank, world
        self._slots: list[tuple[int, int]] = []  # (dataset, its draw count) of each slot
        self._draws = [0] * len(self.sizes)

    def _extend(self, slots: int) -> None:
        choices = range(len(self.sizes))
        while len(self._slots) < slots:
            j = len(self._slots)
            k = random.Random(self.seed * 1_000_003 + j).choices(choices, self.weights)[0]
            self._slots.append((k, self._draws[k]))
            self._draws[k] += 1

    def indices(self, step: int) -> list[int]:
        """The mixture indices rank ``rank`` trains on at ``step``."""
        first = (step * self.world + self.rank) * self.m
        self._extend(first + self.m)
        out = []
        for k, draw in self._slots[first:first + self.m]:
            epoch, pos = divmod(draw, self.sizes[k])
            order = _permutation(self.sizes[k], (self.seed * 100003 + epoch) * 1009 + k)
            out.append(self.offsets[k] + order[pos])
        return out


class ImageBatcher:
    """Image batches by step: seeded per-epoch permutations, disjoint across ranks."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1) -> None:
        if len(dataset) < batch_size:
            raise ValueError(f"the image dataset has {len(dataset)} images, fewer than one "
                             f"batch of {batch_size}")
        self.data, self.b, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world
        self.per_epoch = len(dataset) // batch_size

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """``(images [B, C, H, W], labels [B])`` of ``step`` on this rank."""
        epoch, pos = divmod(step * self.world + self.rank, self.per_epoch)
        order = _permutation(len(self.data), self.seed * 7919 + epoch)
        items = [self.data[i] for i in order[pos * self.b:(pos + 1) * self.b]]
        return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def draw_bits(graph: ArchGraph, bits: tuple[int, ...], rng: random.Random, mixed: bool = False,
              first_last_8bit: bool = False, weights: tuple[float, ...] = ()) -> ArchGraph:
    """A copy of ``graph`` whose conv/linear layers get bits drawn from ``bits``.

    Args:
        graph: the float graph.
        bits: the set to draw from (32 is float); empty keeps everything at 32.
        rng: the step's random source.
        mixed: draw per layer instead of once for the whole network.
        first_last_8bit: quantized first and last layers get 8 bits (float ones stay
            float).
        weights: sampling weight of each of ``bits`` (empty: uniform).

    Returns:
        The annotated copy (the input graph is unchanged).
    """
    quantizable = graph.quantizable_nodes()
    values = torch.full((graph.num_nodes,), FLOAT_BITS, dtype=torch.long)
    if bits and quantizable:
        def draw() -> int:
            return rng.choices(bits, weights)[0] if weights else rng.choice(bits)

        whole = draw()
        for v in quantizable:
            values[v] = draw() if mixed else whole
        if first_last_8bit:
            for v in graph.first_last():
                if values[v] < FLOAT_BITS:
                    values[v] = 8
    return graph.with_bits(values, values.clone())


def network_bits(graph: ArchGraph) -> int:
    """The lowest weight bit-width of ``graph``'s conv/linear layers (32 if none is
    quantized): the bit-width a network drawn by :func:`draw_bits` is logged under."""
    w_bits = graph.w_bits.tolist()
    return min((w_bits[v] for v in graph.quantizable_nodes()), default=FLOAT_BITS)
