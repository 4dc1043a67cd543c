"""Building the network a command names (``--model`` or ``--spec``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from torch import nn

__all__ = ["network_from_args"]


def network_from_args(model: str | None, spec: str | None, input_shape: Sequence[int],
                      num_classes: int, adapt: bool = True) -> nn.Module:
    """The network of ``--model`` (``torchvision:NAME`` / ``package.module:factory``) or
    ``--spec`` (a JSON file of an architecture-space spec).

    Args:
        model, spec: exactly one is given.
        input_shape: (1, C, H, W) the network will take.
        num_classes: classifier size.
        adapt: give a torchvision model a first conv of ``C`` input channels.

    Raises:
        ValueError: an unreadable spec file or an unknown space or model.
    """
    from ..spaces import adapt_input_channels, get_space, resolve_model

    if spec:
        try:
            content = json.loads(Path(spec).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read spec {spec}: {err}") from None
        return get_space(content.get("space", "")).build(content, input_shape[1], num_classes)
    network = resolve_model(model, num_classes=num_classes)
    if model.startswith("torchvision:") and adapt:
        network = adapt_input_channels(network, input_shape[1])
    return network
