"""Resolve textual model references such as ``torchvision:resnet18``."""

from __future__ import annotations

from torch import nn

from ..imports import import_attribute
from .torchvision_zoo import build_torchvision

__all__ = ["resolve_model"]


def resolve_model(ref: str, num_classes: int | None = None) -> nn.Module:
    """Build the model a reference names.

    Args:
        ref: ``"torchvision:NAME"`` or ``"package.module:factory"``, where ``factory``
            is a callable (function or class) that returns an ``nn.Module``.
        num_classes: for torchvision models, the classifier size (default 1000); for
            factories, passed as ``num_classes=`` when given.

    Raises:
        ValueError: the reference is malformed, cannot be imported, or does not give
            an ``nn.Module``.
    """
    source, sep, target = ref.partition(":")
    if not sep or not source or not target:
        raise ValueError(f"model reference {ref!r} must look like 'torchvision:NAME' or "
                         "'package.module:factory'")
    if source == "torchvision":
        return build_torchvision(target, num_classes=num_classes or 1000)
    try:
        factory = import_attribute(source, target)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load model factory {ref!r}: {err}") from err
    model = factory(num_classes=num_classes) if num_classes is not None else factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"{ref!r} returned {type(model).__name__}, not an nn.Module")
    return model
