"""nn.Module -> ArchGraph: op vocabulary and registries, fx tracing, topology."""

from .archgraph import ArchGraph
from .ops import (ACTIVATIONS, PRIMITIVES, QUANTIZABLE_OPS, Vocabulary, register_activation,
                  register_activation_name, register_op, register_passthrough,
                  register_primitive, vocabulary)
from .tracer import trace

__all__ = [
    "ArchGraph", "trace", "PRIMITIVES", "ACTIVATIONS", "QUANTIZABLE_OPS", "register_op",
    "register_activation", "register_passthrough", "register_primitive",
    "register_activation_name", "Vocabulary", "vocabulary",
]
