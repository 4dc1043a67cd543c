"""Architecture spaces. For now: the torchvision CNN zoo and model references."""

from .refs import resolve_model
from .torchvision_zoo import ZOO, build_torchvision, zoo_input_shape

__all__ = ["ZOO", "build_torchvision", "zoo_input_shape", "resolve_model"]
