"""Registry of GNN layers a GHN can use: names, or ``"package.module:Class"``."""

from __future__ import annotations

from torch import nn

from ..imports import import_attribute
from .gatedgnn import GatedGNN
from .layers import GATv2Layer, GGNNLayer, GINELayer, TransformerLayer

__all__ = ["GNN_LAYERS", "register_gnn", "resolve_gnn"]

#: Built-in GNN layers by name.
GNN_LAYERS: dict[str, type[nn.Module]] = {
    "gatedgnn": GatedGNN,
    "ggnn": GGNNLayer,
    "gatv2": GATv2Layer,
    "transformer": TransformerLayer,
    "gine": GINELayer,
}


def register_gnn(name: str, layer: type[nn.Module]) -> None:
    """Make ``layer`` available as ``GHN(gnn=name)``.

    The class must accept ``(hid, T=..., s_max=...)`` and implement
    ``forward(x, graph, s_max=None) -> Tensor`` ([N, hid] -> [N, hid]).
    """
    if not (isinstance(layer, type) and issubclass(layer, nn.Module)):
        raise TypeError(f"a GNN layer must be an nn.Module subclass, got {layer!r}")
    GNN_LAYERS[name] = layer


def resolve_gnn(spec: str) -> type[nn.Module]:
    """The layer class of a registered name or an importable ``"pkg.module:Class"``.

    Raises:
        ValueError: unknown name, or a path that does not import to an nn.Module class.
    """
    if spec in GNN_LAYERS:
        return GNN_LAYERS[spec]
    module_name, sep, class_name = spec.partition(":")
    if not sep:
        raise ValueError(f"unknown GNN {spec!r}; use one of {', '.join(GNN_LAYERS)} or "
                         "'package.module:Class'")
    try:
        layer = import_attribute(module_name, class_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import GNN layer {spec!r}: {err}") from err
    if not (isinstance(layer, type) and issubclass(layer, nn.Module)):
        raise ValueError(f"{spec!r} is not an nn.Module class")
    return layer
