"""Architecture spaces: seeded samplers of CNN specs that rebuild their modules.

``get_space(name)`` gives ``efficient`` (the GHN training space), ``cells`` (DARTS
cells as in DeepNets-1M), ``families`` (the torchvision zoo's block families mixed
with the efficient ones), ``blocks`` (one block family at a time, for the init study)
or ``torchvision`` (the CNN zoo); ``register_space(name, factory)`` adds your own.
"""

from .base import (OOD_SPLITS, SPACES, SPLITS, Space, count_params, get_space, register_space,
                   spec_hash)
from .blocks import FAMILIES, BlocksSpace
from .cells import CellsSpace
from .efficient import EfficientSpace
from .families import FamiliesSpace
from .refs import resolve_model
from .torchvision_zoo import (ZOO, TorchvisionSpace, adapt_input_channels, build_torchvision,
                              zoo_input_shape)

for _space in (EfficientSpace, CellsSpace, FamiliesSpace, BlocksSpace, TorchvisionSpace):
    register_space(_space.name, _space)

__all__ = [
    "Space", "get_space", "register_space", "SPACES", "SPLITS", "OOD_SPLITS", "spec_hash",
    "count_params", "EfficientSpace", "CellsSpace", "FamiliesSpace", "BlocksSpace", "FAMILIES", "TorchvisionSpace",
    "ZOO", "build_torchvision", "zoo_input_shape", "adapt_input_channels", "resolve_model",
]
