"""Building blocks of efficient CNNs, shared by the ``efficient`` and ``blocks`` spaces."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ACTIVATION_LAYERS", "ALL_ACTIVATION_LAYERS", "activation", "ConvNormAct",
           "DepthwiseSeparable", "BasicResidual",
           "Bottleneck", "InvertedResidual", "SqueezeExcite", "make_block", "BLOCK_TYPES"]

#: The activations the ``efficient`` space draws from (its sampling order depends on it).
ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "silu": nn.SiLU,
}
#: Every activation a spec may name: the above and GELU (ConvNeXt, ``families`` space).
ALL_ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {**ACTIVATION_LAYERS, "gelu": nn.GELU}


def activation(name: str | None) -> nn.Module:
    """An activation module by name (``None`` or ``"none"``: identity)."""
    if name in (None, "none"):
        return nn.Identity()
    try:
        return ALL_ACTIVATION_LAYERS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; use one of "
                         f"{', '.join(ALL_ACTIVATION_LAYERS)}") from None


class ConvNormAct(nn.Sequential):
    """Conv2d (same padding) -> optional BatchNorm2d -> optional activation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 bn: bool = True, act: str | None = "relu") -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2,
                                             groups=groups, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        if act not in (None, "none"):
            layers.append(activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel squeeze-excite: ``x * sigmoid(W2 act(W1 avgpool(x)))``."""

    def __init__(self, channels: int, reduction: int = 4, act: str = "relu") -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = activation(act)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class DepthwiseSeparable(nn.Sequential):
    """Depthwise k x k conv -> pointwise 1x1 conv, each with optional BN and activation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bn: bool = True,
                 act: str = "relu") -> None:
        super().__init__(ConvNormAct(cin, cin, kernel, stride, groups=cin, bn=bn, act=act),
                         ConvNormAct(cin, cout, 1, bn=bn, act=act))


class _Residual(nn.Module):
    """``act(body(x) + shortcut(x))``; the shortcut is a 1x1 conv when shapes change."""

    def __init__(self, body: nn.Module, cin: int, cout: int, stride: int, bn: bool,
                 act: str | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = (ConvNormAct(cin, cout, 1, stride, bn=bn, act=None)
                         if stride != 1 or cin != cout else nn.Identity())
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class BasicResidual(_Residual):
    """ResNet basic block: two k x k convs and a shortcut."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bn: bool = True,
                 act: str = "relu") -> None:
        body = nn.Sequential(ConvNormAct(cin, cout, kernel, stride, bn=bn, act=act),
                             ConvNormAct(cout, cout, kernel, bn=bn, act=None))
        super().__init__(body, cin, cout, stride, bn, act)


class Bottleneck(_Residual):
    """ResNet bottleneck: 1x1 reduce (by 4), k x k, 1x1 expand, and a shortcut."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bn: bool = True,
                 act: str = "relu") -> None:
        mid = max(cout // 4, 4)
        body = nn.Sequential(ConvNormAct(cin, mid, 1, bn=bn, act=act),
                             ConvNormAct(mid, mid, kernel, stride, bn=bn, act=act),
                             ConvNormAct(mid, cout, 1, bn=bn, act=None))
        super().__init__(body, cin, cout, stride, bn, act)


class InvertedResidual(nn.Module):
    """MBConv: 1x1 expand (unless expansion 1), depthwise k x k, optional SE, 1x1 project;
    identity shortcut when stride 1 and channels match."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bn: bool = True,
                 act: str = "relu6", expand: int = 6, se: bool = False) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvNormAct(cin, mid, 1, bn=bn, act=act))
        layers.append(ConvNormAct(mid, mid, kernel, stride, groups=mid, bn=bn, act=act))
        if se:
            layers.append(SqueezeExcite(mid))
        layers.append(ConvNormAct(mid, cout, 1, bn=bn, act=None))
        self.block = nn.Sequential(*layers)
        self.use_shortcut = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.use_shortcut else out


#: Block type names of specs.
BLOCK_TYPES: tuple[str, ...] = ("conv", "dwsep", "residual", "bottleneck", "mbconv")


def make_block(kind: str, cin: int, cout: int, kernel: int, stride: int, bn: bool, act: str,
               expand: int = 6, se: bool = False) -> nn.Module:
    """Build one block of a spec.

    Raises:
        ValueError: unknown block kind.
    """
    if kind == "conv":
        return ConvNormAct(cin, cout, kernel, stride, bn=bn, act=act)
    if kind == "dwsep":
        return DepthwiseSeparable(cin, cout, kernel, stride, bn=bn, act=act)
    if kind == "residual":
        return BasicResidual(cin, cout, kernel, stride, bn=bn, act=act)
    if kind == "bottleneck":
        return Bottleneck(cin, cout, kernel, stride, bn=bn, act=act)
    if kind == "mbconv":
        return InvertedResidual(cin, cout, kernel, stride, bn=bn, act=act, expand=expand, se=se)
    raise ValueError(f"unknown block {kind!r}; use one of {', '.join(BLOCK_TYPES)}")
