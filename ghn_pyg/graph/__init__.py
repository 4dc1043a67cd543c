"""nn.Module -> ArchGraph: op vocabulary and registries, fx tracing, topology."""

from .archgraph import ArchGraph
from .ops import (ACTIVATIONS, PRIMITIVES, QUANTIZABLE_OPS, register_activation, register_op,
                  register_passthrough, register_primitive)
from .tracer import trace

__all__ = [
    "ArchGraph", "trace", "PRIMITIVES", "ACTIVATIONS", "QUANTIZABLE_OPS", "register_op",
    "register_activation", "register_passthrough", "register_primitive",
]
