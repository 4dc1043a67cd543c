"""``ArchMixture``: several architecture-graph datasets (e.g. of different spaces) as one."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from typing import Sequence

import torch
from torch import nn

from ..graph.archgraph import ArchGraph
from .archgraph_dataset import ArchGraphDataset

__all__ = ["ArchMixture"]


class ArchMixture:
    r"""Architecture datasets concatenated, with a sampling weight per dataset.

    Index :math:`i` of the mixture is index :math:`i - o_k` of dataset :math:`k`, where
    :math:`o_k` is the number of architectures before it. The weights are what a
    :class:`~ghn_pyg.train.sampling.MixtureSampler` draws datasets with: dataset
    :math:`k` fills a slot of a meta-batch with probability :math:`w_k / \sum_j w_j`.

    Args:
        datasets: the datasets; their networks must share the input shape and number of
            classes, since one image batch feeds them all.
        weights: one non-negative weight per dataset, not all zero; empty: each
            dataset's size (every architecture equally likely).

    Raises:
        ValueError: no dataset, mismatched inputs or classes (naming the datasets), or
            bad weights.
    """

    def __init__(self, datasets: Sequence[ArchGraphDataset],
                 weights: Sequence[float] = ()) -> None:
        if not datasets:
            raise ValueError("ArchMixture needs at least one dataset")
        first = datasets[0]
        for other in datasets[1:]:
            if (other.in_shape, other.num_classes) != (first.in_shape, first.num_classes):
                raise ValueError(
                    f"{other.root} builds networks for {other.in_shape} with "
                    f"{other.num_classes} classes, {first.root} for {first.in_shape} with "
                    f"{first.num_classes}: mixed datasets must share both")
        sizes = [len(d) for d in datasets]
        weights = tuple(float(w) for w in weights) or tuple(float(n) for n in sizes)
        if len(weights) != len(datasets) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights {list(weights)} must be one non-negative weight per "
                             f"dataset ({len(datasets)}), not all zero")
        self.datasets = list(datasets)
        self.weights = weights
        self.sizes = sizes
        #: Index of each dataset's first architecture in the mixture.
        self.offsets = [0, *accumulate(sizes)][:-1]

    def __len__(self) -> int:
        return sum(self.sizes)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """The networks' input (C, H, W)."""
        return self.datasets[0].in_shape

    @property
    def num_classes(self) -> int:
        """The networks' number of classes."""
        return self.datasets[0].num_classes

    def locate(self, idx: int) -> tuple[int, int]:
        """``(dataset, index in it)`` of mixture index ``idx``.

        Raises:
            IndexError: ``idx`` out of range.
        """
        if not 0 <= idx < len(self):
            raise IndexError(f"architecture {idx} out of range for a mixture of {len(self)}")
        k = bisect_right(self.offsets, idx) - 1
        return k, idx - self.offsets[k]

    def __getitem__(self, idx: int) -> ArchGraph:
        k, local = self.locate(idx)
        return self.datasets[k][local]

    def build_module(self, idx: int, device: torch.device | str | None = None) -> nn.Module:
        """The network of architecture ``idx`` (see :meth:`ArchGraphDataset.build_module`)."""
        k, local = self.locate(idx)
        return self.datasets[k].build_module(local, device=device)
