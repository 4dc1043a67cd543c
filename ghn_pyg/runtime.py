"""Process-wide settings that make long CPU jobs faster.

A GHN training step allocates the predicted parameters of its networks and their
gradients (about 500 MB for the 8 torchvision networks of ``scripts/bench_train.py``)
and frees them again. glibc's malloc serves blocks above a dynamic threshold with
``mmap`` and gives them back to the OS on ``free``, so every step page-faults the same
memory in again, which is expensive in a virtual machine. :func:`reuse_freed_memory`
keeps freed memory in the process instead. ``ghn-pyg`` calls it at start; call it
yourself in scripts that train or predict in a loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["reuse_freed_memory", "MALLOC_ENV"]

#: Set this environment variable to ``system`` to leave malloc's defaults alone.
MALLOC_ENV = "GHN_PYG_MALLOC"

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems
_TRIM_THRESHOLD = 2**31 - 1


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the OS.

    Sets ``M_MMAP_THRESHOLD`` to its maximum (32 MiB: smaller blocks come from the
    heap, where freed memory is reused) and ``M_TRIM_THRESHOLD`` to 2 GiB (the heap is
    not shrunk after frees). It affects the whole process, raises its resident memory
    to about its peak use, and does not change any result.

    Returns:
        True if the settings were applied; False where the C library is not glibc
        (macOS, Windows, musl) or the environment variable ``GHN_PYG_MALLOC`` is
        ``system``.
    """
    if os.environ.get(MALLOC_ENV, "").lower() == "system":
        return False
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
        _ = libc.gnu_get_libc_version  # only glibc has it
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
