"""The torchvision CNN zoo used as an out-of-distribution test set."""

from __future__ import annotations

import random
from typing import Any

from torch import nn

from .base import Space

__all__ = ["ZOO", "build_torchvision", "zoo_input_shape", "TorchvisionSpace", "adapt_input_channels"]

#: torchvision classification CNNs that ghn_pyg traces with every parameter mapped.
ZOO: tuple[str, ...] = (
    "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2",
    "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_v2_s",
    "mnasnet1_0", "shufflenet_v2_x1_0", "squeezenet1_0", "densenet121", "regnet_x_400mf",
    "regnet_y_400mf", "googlenet", "vgg11_bn", "alexnet", "convnext_tiny",
)

# Constructor arguments that make a model traceable and cheap to build without weights.
_BUILD_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": False},
}
# Smallest input sides: AlexNet's stride-4 stem and max pools need 63 pixels; VGG's five
# max pools, DenseNet's and ConvNeXt's downsampling need 32.
_MIN_SIZE: dict[str, int] = {"alexnet": 64, "vgg11_bn": 32, "densenet121": 32, "convnext_tiny": 32}


def build_torchvision(name: str, num_classes: int = 1000, **kwargs: Any) -> nn.Module:
    """Build torchvision model ``name`` with random weights (never downloads).

    Args:
        name: a torchvision classification model name, e.g. ``"resnet18"``.
        num_classes: size of the classifier output.
        **kwargs: passed to the constructor, overriding ghn_pyg's defaults.

    Raises:
        ValueError: ``name`` is not a torchvision classification model.
    """
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(f"unknown torchvision model {name!r}; known CNNs include: "
                         f"{', '.join(ZOO)}")
    args = {**_BUILD_KWARGS.get(name, {}), **kwargs}
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **args)


def zoo_input_shape(name: str, size: int = 32, channels: int = 3) -> tuple[int, int, int, int]:
    """The input shape (1, C, H, W) to trace ``name`` at: ``size``, or its minimum."""
    side = max(size, _MIN_SIZE.get(name, 0))
    return (1, channels, side, side)


def adapt_input_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Replace the first 3-channel ``nn.Conv2d`` of ``model`` by one taking ``in_channels``.

    Everything else (its kernel, stride, padding, groups, bias) stays as it was.
    """
    if in_channels == 3:
        return model
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            parent_path, _, attr = path.rpartition(".")
            parent = model.get_submodule(parent_path) if parent_path else model
            setattr(parent, attr, nn.Conv2d(
                in_channels, module.out_channels, module.kernel_size, module.stride,
                module.padding, module.dilation, module.groups, module.bias is not None,
                module.padding_mode))
            return model
    raise ValueError(f"{type(model).__name__} has no 3-channel first conv to adapt")


class TorchvisionSpace(Space):
    """The torchvision CNN zoo, adapted to the input channels and number of classes
    (first conv and classifier replaced, nothing else): an out-of-distribution test set.

    Args:
        names: the models (default :data:`ZOO`).
    """

    name = "torchvision"

    def __init__(self, names: tuple[str, ...] = ZOO) -> None:
        self.names = tuple(names)

    def specs(self, image_size: int | None = None) -> list[dict[str, Any]]:
        """One spec per model that accepts ``image_size`` x ``image_size`` inputs."""
        return [{"space": self.name, "name": n} for n in self.names
                if image_size is None or _MIN_SIZE.get(n, 0) <= image_size]

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {"space": self.name, "name": rng.choice(self.names)}

    def for_split(self, split: str) -> Space:
        """Every split is the zoo itself."""
        return self

    def splits(self) -> tuple[str, ...]:
        return ("torchvision",)

    def build(self, spec: dict[str, Any], in_channels: int = 3, num_classes: int = 10) -> nn.Module:
        self.check_spec(spec)
        return adapt_input_channels(build_torchvision(spec["name"], num_classes=num_classes),
                                    in_channels)
