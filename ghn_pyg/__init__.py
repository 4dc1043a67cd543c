"""ghn_pyg: Graph HyperNetworks on PyTorch Geometric for quantization-robust CNN parameters.

Main entry points::

    from ghn_pyg import trace, QuantSpec
    graph = trace(model, input_shape=(1, 3, 32, 32), spec=QuantSpec.uniform(4))
"""

import warnings

with warnings.catch_warnings():
    # torch_geometric's import calls the deprecated torch.jit.script (its own concern,
    # not our users'); only that message is silenced, and only during this import.
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated",
                            category=FutureWarning)
    import torch_geometric  # noqa: F401

from .errors import GraphBuildError
from .graph import (ArchGraph, register_activation, register_op, register_passthrough,
                    register_primitive, trace)
from .nn import GHN
from .quant import QuantSpec, annotate

__version__ = "0.1.0"

__all__ = [
    "ArchGraph", "GHN", "GraphBuildError", "QuantSpec", "annotate", "trace", "register_op",
    "register_activation", "register_passthrough", "register_primitive", "__version__",
]
