"""The torchvision CNN zoo used as an out-of-distribution test set."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["ZOO", "build_torchvision", "zoo_input_shape"]

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
# AlexNet's stride-4 stem and three max pools need at least 63x63 pixels.
_MIN_SIZE: dict[str, int] = {"alexnet": 64}


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
