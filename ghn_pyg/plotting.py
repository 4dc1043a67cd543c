"""Matplotlib helpers shared by the reports: a headless pyplot and atomic figure saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .fileio import atomic_path

__all__ = ["pyplot", "save_figure"]


def pyplot(required: bool = False) -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend, or None when matplotlib is missing.

    Args:
        required: raise instead of returning None.

    Raises:
        ImportError: matplotlib is missing and ``required`` (says how to install it).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        if required:
            raise ImportError("drawing images needs matplotlib: pip install 'ghn_pyg[plots]'") from err
        return None
    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120,
                rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay out ``fig``, write it to ``path`` atomically (format from the suffix), close it.

    Args:
        fig: the figure.
        path: where to write.
        dpi: resolution.
        rect: the part of the figure the axes are laid out in (``tight_layout``'s
            ``rect``; leave room for a figure legend or title).

    Returns:
        ``path``.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        if rect is None:
            fig.tight_layout()
        else:
            fig.tight_layout(rect=rect)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    finally:
        plt.close(fig)
    return path
