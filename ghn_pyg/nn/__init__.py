"""The Graph HyperNetwork: node encoder, GatedGNN and pluggable layers, decoders, GHN."""

from .decoder import ParameterDecoder, VectorDecoder, WeightDecoder
from .encoder import NodeEncoder
from .gatedgnn import GatedGNN
from .ghn import GHN, CheckpointError
from .registry import GNN_LAYERS, register_gnn, resolve_gnn
from .schedule import SweepSchedule, build_schedule

__all__ = [
    "GHN", "CheckpointError", "NodeEncoder", "GatedGNN", "ParameterDecoder", "WeightDecoder",
    "VectorDecoder", "GNN_LAYERS", "register_gnn", "resolve_gnn", "SweepSchedule",
    "build_schedule",
]
