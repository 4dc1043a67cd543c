"""``cells``: DeepNets-1M-style networks of DARTS cells, for comparability with GHN-2.

A spec is ``{"space": "cells", "C": channels, "layers": cells, "nodes": nodes per cell,
"normal": genotype, "reduce": genotype}``, a genotype being, per node, two
``[op, input]`` pairs (input 0 and 1 are the two previous cells, 2.. earlier nodes).
Cells at 1/3 and 2/3 of the depth reduce the resolution and double the channels; a
cell's output concatenates its nodes.
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Space, count_params
from .layers import SqueezeExcite

__all__ = ["CellsSpace", "CELL_OPS"]

CELL_OPS: tuple[str, ...] = (
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "conv_1x1", "conv_3x3",
    "conv_5x5", "conv_7x1_1x7", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "chan_se",
)


def _relu_conv_bn(cin: int, cout: int, kernel: Any, stride: int = 1, padding: Any = 0,
                  dilation: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.ReLU(), nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups, bias=False),
            nn.BatchNorm2d(cout)]


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 stride-2 convs, concatenated."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(cin, cout - cout // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv1(x), self.conv2(shifted)], dim=1))


def _cell_op(name: str, c: int, stride: int) -> nn.Module:
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        k = int(name[-1])
        return nn.Sequential(*_relu_conv_bn(c, c, k, stride, k // 2, groups=c)[:2],
                             nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c),
                             *_relu_conv_bn(c, c, k, 1, k // 2, groups=c)[:2],
                             nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        k = int(name[-1])
        return nn.Sequential(*_relu_conv_bn(c, c, k, stride, k - 1, dilation=2, groups=c)[:2],
                             nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
    if name in ("conv_1x1", "conv_3x3", "conv_5x5"):
        k = int(name[-1])
        return nn.Sequential(*_relu_conv_bn(c, c, k, stride, k // 2))
    if name == "conv_7x1_1x7":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, (1, 7), (1, stride), (0, 3), bias=False),
                             nn.Conv2d(c, c, (7, 1), (stride, 1), (3, 0), bias=False),
                             nn.BatchNorm2d(c))
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    if name == "chan_se":
        return SqueezeExcite(c) if stride == 1 else FactorizedReduce(c, c)
    raise ValueError(f"unknown cell op {name!r}; use one of {', '.join(CELL_OPS)}")


class Cell(nn.Module):
    """One DARTS cell over the outputs of the two previous cells."""

    def __init__(self, genotype: list, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.pre0 = (FactorizedReduce(c_prev_prev, c) if reduction_prev
                     else nn.Sequential(*_relu_conv_bn(c_prev_prev, c, 1)))
        self.pre1 = nn.Sequential(*_relu_conv_bn(c_prev, c, 1))
        self.inputs = [inp for node in genotype for _, inp in node]
        self.ops = nn.ModuleList(
            _cell_op(op, c, 2 if reduction and inp < 2 else 1) for node in genotype for op, inp in node)

    def forward(self, s0: Tensor, s1: Tensor) -> Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(0, len(self.ops), 2):
            states.append(self.ops[i](states[self.inputs[i]])
                          + self.ops[i + 1](states[self.inputs[i + 1]]))
        return torch.cat(states[2:], dim=1)


class CellNet(nn.Module):
    """Stem, a stack of cells, global pooling and a classifier."""

    def __init__(self, spec: dict[str, Any], in_channels: int, num_classes: int) -> None:
        super().__init__()
        c, layers, nodes = spec["C"], spec["layers"], spec["nodes"]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 3 * c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(3 * c))
        c_pp, c_p, c_cur = 3 * c, 3 * c, c
        cells, reduction_prev = [], False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_cur *= 2
            genotype = spec["reduce"] if reduction else spec["normal"]
            cells.append(Cell(genotype, c_pp, c_p, c_cur, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, nodes * c_cur
        self.cells = nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(self.pool(s1), 1))


class CellsSpace(Space):
    """DARTS cells with the DeepNets-1M op set; 4..18 cells of 1..4 nodes.

    Args:
        channels: choices of the initial channels C.
        layers: (min, max) number of cells.
        max_params: parameter budget at 3 input channels and 10 classes.
    """

    name = "cells"

    def __init__(self, channels: tuple[int, ...] = (8, 12, 16, 24),
                 layers: tuple[int, int] = (4, 18), max_params: int = 1_000_000) -> None:
        self.channels, self.layers, self.max_params = channels, layers, max_params

    def _genotype(self, rng: random.Random, nodes: int, reduction: bool) -> list:
        ops = [op for op in CELL_OPS if not (reduction and op == "chan_se")]
        return [[[rng.choice(ops), rng.randrange(2 + i)] for _ in range(2)] for i in range(nodes)]

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """Draw a spec within the budget (rejection sampling, at most 100 draws)."""
        for _ in range(100):
            nodes = rng.randint(1, 4)
            spec = {"space": self.name, "C": rng.choice(self.channels),
                    "layers": rng.randint(*self.layers), "nodes": nodes,
                    "normal": self._genotype(rng, nodes, False),
                    "reduce": self._genotype(rng, nodes, True)}
            if count_params(self, spec) <= self.max_params:
                return spec
        raise RuntimeError(f"no cell network under {self.max_params} parameters in 100 draws")

    def build(self, spec: dict[str, Any], in_channels: int = 3, num_classes: int = 10) -> nn.Module:
        self.check_spec(spec)
        try:
            return CellNet(spec, in_channels, num_classes)
        except (KeyError, TypeError, IndexError) as err:
            raise ValueError(f"malformed cells spec: {type(err).__name__}: {err}") from err
