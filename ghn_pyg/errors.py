"""Typed errors raised by ghn_pyg."""

from __future__ import annotations

__all__ = ["GraphBuildError"]


class GraphBuildError(RuntimeError):
    """A model could not be turned into an :class:`~ghn_pyg.graph.ArchGraph`.

    The message names the model, the module or construct at fault and what to do
    (register the module type, make it a leaf, change the input shape, ...).
    """
