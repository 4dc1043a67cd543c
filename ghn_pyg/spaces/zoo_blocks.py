"""Blocks of the torchvision zoo's families that the ``efficient`` space lacks.

Grouped-convolution bottlenecks (ResNeXt, RegNet X/Y), ShuffleNet-v2 units (channel
split, concatenation and shuffle), SqueezeNet fire modules (squeeze, two expand
branches, concatenation) and ConvNeXt blocks (depthwise conv, layer norm, GELU and an
inverted MLP): the ``families`` space mixes them with the ``efficient`` blocks so that
a GHN trained on it has seen grouped convolutions, concatenations, layer norms and
GELU, which its ``efficient`` and ``cells`` training spaces never show.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from .layers import ConvNormAct, SqueezeExcite, _Residual, activation

__all__ = ["GroupedBottleneck", "ShuffleUnit", "Fire", "LayerNorm2d", "ConvNeXtBlock",
           "channel_shuffle", "ZOO_BLOCK_TYPES", "make_zoo_block"]


class GroupedBottleneck(_Residual):
    """ResNeXt / RegNet bottleneck of width ratio 1: 1x1 conv, grouped k x k conv of
    ``group_width`` channels per group, optional squeeze-excite (RegNetY), 1x1 conv, and a
    shortcut (a strided 1x1 conv when the shape changes).

    Args:
        cin, cout: input and output channels.
        kernel, stride: of the grouped conv.
        bn: batch norm after every conv (else biases).
        act: activation after the first two convs and after the sum.
        group_width: channels per group; the inner width is ``cout`` rounded down to a
            multiple of it (at least one group).
        se: squeeze-excite after the grouped conv.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bn: bool = True,
                 act: str = "relu", group_width: int = 8, se: bool = False) -> None:
        mid = max(group_width, cout // group_width * group_width)
        layers: list[nn.Module] = [
            ConvNormAct(cin, mid, 1, bn=bn, act=act),
            ConvNormAct(mid, mid, kernel, stride, groups=mid // group_width, bn=bn, act=act)]
        if se:
            layers.append(SqueezeExcite(mid, act=act))
        layers.append(ConvNormAct(mid, cout, 1, bn=bn, act=None))
        super().__init__(nn.Sequential(*layers), cin, cout, stride, bn, act)


def channel_shuffle(x: Tensor, groups: int = 2) -> Tensor:
    """Interleave the channels of ``groups`` equal groups: [N, C, H, W] -> [N, C, H, W]."""
    n, c, h, w = x.size(0), x.size(1), x.size(2), x.size(3)
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet-v2 unit. Stride 1 with ``cin == cout``: half the channels pass through,
    the other half go through 1x1 -> depthwise k x k -> 1x1; otherwise both halves of the
    output come from branches of the whole input (depthwise strided k x k -> 1x1, and
    1x1 -> depthwise strided k x k -> 1x1). The halves are concatenated and shuffled.

    Args:
        cin, cout: input and output channels (even).
        kernel, stride: of the depthwise convs.
        bn, act: batch norm after every conv (else biases) and the activation after the
            1x1 convs.

    Raises:
        ValueError: odd ``cout``, or odd ``cin`` where the input is split.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bn: bool = True,
                 act: str = "relu") -> None:
        super().__init__()
        self.split = stride == 1 and cin == cout
        if cout % 2:
            raise ValueError(f"ShuffleUnit needs an even number of output channels, got {cout}")
        half = cout // 2
        branch_in = cin // 2 if self.split else cin
        self.left = nn.Identity() if self.split else nn.Sequential(
            ConvNormAct(cin, cin, kernel, stride, groups=cin, bn=bn, act=None),
            ConvNormAct(cin, half, 1, bn=bn, act=act))
        self.right = nn.Sequential(
            ConvNormAct(branch_in, half, 1, bn=bn, act=act),
            ConvNormAct(half, half, kernel, stride, groups=half, bn=bn, act=None),
            ConvNormAct(half, half, 1, bn=bn, act=act))

    def forward(self, x: Tensor) -> Tensor:
        if self.split:
            left, right = x.chunk(2, dim=1)
        else:
            left, right = x, x
        return channel_shuffle(torch.cat((self.left(left), self.right(right)), dim=1))


class Fire(nn.Module):
    """SqueezeNet fire module: optional 3x3 stride-2 max pool, a 1x1 squeeze to
    ``cout // 8`` channels, then 1x1 and k x k expand branches concatenated (``cout``
    channels in all).

    Args:
        cin, cout: input and output channels.
        kernel: of the second expand branch.
        stride: 2 puts a max pool in front.
        bn, act: batch norm after every conv (else biases) and the activation after each.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bn: bool = True,
                 act: str = "relu") -> None:
        super().__init__()
        squeeze, half = max(cout // 8, 4), cout // 2
        self.pool = nn.MaxPool2d(3, 2, 1) if stride != 1 else nn.Identity()
        self.squeeze = ConvNormAct(cin, squeeze, 1, bn=bn, act=act)
        self.expand1 = ConvNormAct(squeeze, half, 1, bn=bn, act=act)
        self.expand_k = ConvNormAct(squeeze, cout - half, kernel, bn=bn, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze(self.pool(x))
        return torch.cat((self.expand1(x), self.expand_k(x)), dim=1)


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of [N, C, H, W] maps (traced as ``layer_norm``)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: ``y = d(x);  y + W_2 act(W_1 LN(DW_k(y)))`` with ``d`` a layer norm
    and a 2x2 stride-2 conv when downsampling (a 1x1 conv when only the width changes),
    depthwise k x k, layer norm, 1x1 to ``expand * cout``, activation, 1x1 back.

    Args:
        cin, cout: input and output channels.
        kernel: of the depthwise conv.
        stride: 1 or 2.
        act: the MLP's activation (ConvNeXt: ``"gelu"``).
        expand: the MLP's width ratio.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 7, stride: int = 1,
                 act: str = "gelu", expand: int = 4) -> None:
        super().__init__()
        if stride != 1:
            self.down: nn.Module = nn.Sequential(LayerNorm2d(cin), nn.Conv2d(cin, cout, 2, 2))
        elif cin != cout:
            self.down = nn.Conv2d(cin, cout, 1)
        else:
            self.down = nn.Identity()
        self.block = nn.Sequential(
            nn.Conv2d(cout, cout, kernel, padding=kernel // 2, groups=cout), LayerNorm2d(cout),
            nn.Conv2d(cout, expand * cout, 1), activation(act), nn.Conv2d(expand * cout, cout, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        return x + self.block(x)


def _grouped(cin: int, cout: int, kernel: int, stride: int, bn: bool, act: str,
             stage: dict[str, Any]) -> nn.Module:
    return GroupedBottleneck(cin, cout, kernel, stride, bn, act, stage.get("group_width", 8),
                             stage.get("se", False))


#: Builders of the zoo block types by spec name: (cin, cout, kernel, stride, bn, act,
#: stage spec) -> module.
_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "grouped": _grouped,
    "shuffle": lambda cin, cout, kernel, stride, bn, act, stage: ShuffleUnit(
        cin, cout, kernel, stride, bn, act),
    "fire": lambda cin, cout, kernel, stride, bn, act, stage: Fire(
        cin, cout, kernel, stride, bn, act),
    "convnext": lambda cin, cout, kernel, stride, bn, act, stage: ConvNeXtBlock(
        cin, cout, kernel, stride, act, stage.get("expand", 4)),
}

#: Block type names of the zoo families in specs.
ZOO_BLOCK_TYPES: tuple[str, ...] = tuple(_BUILDERS)


def make_zoo_block(kind: str, cin: int, cout: int, kernel: int, stride: int, bn: bool,
                   act: str, stage: dict[str, Any]) -> nn.Module:
    """Build one zoo block of a spec (``stage`` holds its extra settings:
    ``group_width``, ``se``, ``expand``).

    Raises:
        ValueError: unknown block kind.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"unknown zoo block {kind!r}; use one of {', '.join(ZOO_BLOCK_TYPES)}")
    return _BUILDERS[kind](cin, cout, kernel, stride, bn, act, stage)
