"""Typed errors raised by ghn_pyg."""

from __future__ import annotations

__all__ = ["GraphBuildError", "DatasetError", "ExportError", "UnfittedModelError",
           "UnsupportedBitsError"]


class GraphBuildError(RuntimeError):
    """A model could not be turned into an :class:`~ghn_pyg.graph.ArchGraph`.

    The message names the model, the module or construct at fault and what to do
    (register the module type, make it a leaf, change the input shape, ...).
    """


class DatasetError(ValueError):
    """An architecture-graph dataset on disk is incomplete, corrupted or built with other
    settings; the message names the file and how to rebuild it."""


class ExportError(ValueError):
    """A network could not be exported (e.g. to ONNX); the message names the culprit and
    what to do."""


class UnfittedModelError(ExportError):
    """A quantized network is exported before its batch-norm statistics are fixed
    (``"running"`` mode) or its activation ranges are calibrated; names the layers."""


class UnsupportedBitsError(ExportError):
    """A layer's bit-width has no integer type in the export format; names the layers."""
