"""Step-indexed sampling: what a training step sees is a pure function of its step.

Architectures, images and bit-widths of step ``t`` on rank ``r`` depend only on the
seed, ``t``, ``r`` and the world size, so a resumed run sees exactly what an
uninterrupted one would, and ranks never draw the same architecture in a step.
"""

from __future__ import annotations

import random
from functools import lru_cache

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..graph.archgraph import ArchGraph
from ..graph.bits import FLOAT_BITS

__all__ = ["ArchSampler", "ImageBatcher", "draw_bits", "network_bits"]


@lru_cache(maxsize=4)
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
