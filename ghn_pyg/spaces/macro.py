"""The VGG-like macro-architecture of the ``efficient`` and ``blocks`` spaces.

A spec is::

    {"space": ..., "stem": {"width", "kernel", "stride", "bn", "act", ["pool"]},
     "stages": [{"block", "width", "depth", "stride", "kernel", "bn", "act",
                 "expand", "se", ["group_width"]}, ...],
     "head": {"hidden": [widths of hidden linear layers], "act"}}

and builds ``stem (with "pool": a 3x3 stride-2 max pool after it) -> stages (the first
block of a stage has its stride) -> global average pooling -> hidden linear layers ->
classifier``. Blocks are the ``efficient`` ones (:data:`~.layers.BLOCK_TYPES`) or the
zoo families' (:data:`~.zoo_blocks.ZOO_BLOCK_TYPES`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .layers import ConvNormAct, activation, make_block
from .zoo_blocks import ZOO_BLOCK_TYPES, make_zoo_block

__all__ = ["MacroNet", "build_macro", "macro_param_count"]


class MacroNet(nn.Module):
    """Stem, stages of blocks, and a pooling + MLP head."""

    def __init__(self, stem: nn.Module, stages: nn.Sequential, head: nn.Sequential) -> None:
        super().__init__()
        self.stem, self.stages, self.head = stem, stages, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)))


def build_macro(spec: dict[str, Any], in_channels: int, num_classes: int) -> MacroNet:
    """Build a :class:`MacroNet` from a spec.

    Raises:
        ValueError: a missing field or an unknown block or activation.
    """
    try:
        stem_spec, stage_specs, head_spec = spec["stem"], spec["stages"], spec["head"]
        stem: nn.Module = ConvNormAct(in_channels, stem_spec["width"], stem_spec["kernel"],
                                      stem_spec["stride"], bn=stem_spec["bn"],
                                      act=stem_spec["act"])
        if stem_spec.get("pool", False):
            stem = nn.Sequential(stem, nn.MaxPool2d(3, 2, 1))
        width = stem_spec["width"]
        stages = []
        for stage in stage_specs:
            blocks = []
            for i in range(stage["depth"]):
                blocks.append(_make_stage_block(stage, width, stage["stride"] if i == 0 else 1))
                width = stage["width"]
            stages.append(nn.Sequential(*blocks))
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        for hidden in head_spec["hidden"]:
            layers += [nn.Linear(width, hidden), activation(head_spec["act"])]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
    except (KeyError, TypeError) as err:
        raise ValueError(f"malformed {spec.get('space', '?')} spec: {type(err).__name__}: {err}") from err
    return MacroNet(stem, nn.Sequential(*stages), nn.Sequential(*layers))


def _make_stage_block(stage: dict[str, Any], cin: int, stride: int) -> nn.Module:
    """One block of ``stage`` taking ``cin`` channels, an efficient or a zoo block."""
    args = (stage["block"], cin, stage["width"], stage["kernel"], stride, stage["bn"],
            stage["act"])
    if stage["block"] in ZOO_BLOCK_TYPES:
        return make_zoo_block(*args, stage)
    return make_block(*args, stage.get("expand", 6), stage.get("se", False))


def _conv_params(cin: int, cout: int, kernel: int, groups: int, bn: bool) -> int:
    """Parameters of a :class:`ConvNormAct`: weight, then BN (2 per channel) or a bias."""
    return cout * (cin // groups) * kernel * kernel + (2 * cout if bn else cout)


def _block_params(kind: str, cin: int, cout: int, kernel: int, stride: int, bn: bool,
                  expand: int, se: bool) -> int:
    shortcut = _conv_params(cin, cout, 1, 1, bn) if stride != 1 or cin != cout else 0
    if kind == "conv":
        return _conv_params(cin, cout, kernel, 1, bn)
    if kind == "dwsep":
        return _conv_params(cin, cin, kernel, cin, bn) + _conv_params(cin, cout, 1, 1, bn)
    if kind == "residual":
        return _conv_params(cin, cout, kernel, 1, bn) + _conv_params(cout, cout, kernel, 1, bn) \
            + shortcut
    if kind == "bottleneck":
        mid = max(cout // 4, 4)
        return (_conv_params(cin, mid, 1, 1, bn) + _conv_params(mid, mid, kernel, 1, bn)
                + _conv_params(mid, cout, 1, 1, bn) + shortcut)
    if kind == "mbconv":
        mid = cin * expand
        hidden = max(mid // 4, 4)
        return ((_conv_params(cin, mid, 1, 1, bn) if expand != 1 else 0)
                + _conv_params(mid, mid, kernel, mid, bn)
                + (2 * mid * hidden + hidden + mid if se else 0)
                + _conv_params(mid, cout, 1, 1, bn))
    raise ValueError(f"unknown block {kind!r}")


def macro_param_count(spec: dict[str, Any], in_channels: int = 3, num_classes: int = 10) -> int:
    """The parameter count of :func:`build_macro`'s network, computed from the spec
    (about 100x faster than building it; the tests check both agree)."""
    stem = spec["stem"]
    total = _conv_params(in_channels, stem["width"], stem["kernel"], 1, stem["bn"])
    width = stem["width"]
    for stage in spec["stages"]:
        for i in range(stage["depth"]):
            total += _block_params(stage["block"], width, stage["width"], stage["kernel"],
                                   stage["stride"] if i == 0 else 1, stage["bn"],
                                   stage.get("expand", 6), stage.get("se", False))
            width = stage["width"]
    for hidden in spec["head"]["hidden"]:
        total += width * hidden + hidden
        width = hidden
    return total + width * num_classes + num_classes
