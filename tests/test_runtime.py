"""reuse_freed_memory: glibc keeps freed blocks below 32 MiB in the process."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from ghn_pyg import runtime

PROBE = """
import ctypes, importlib.util, sys
spec = importlib.util.spec_from_file_location("runtime", sys.argv[2])  # without torch
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
applied = module.reuse_freed_memory() if sys.argv[1] == "1" else False
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
block = libc.malloc(16 << 20)
libc.free(block)
print(applied, libc.mallinfo2().fordblks >= 16 << 20)
"""


def _probe(apply: bool) -> str:
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("needs glibc >= 2.33")
    result = subprocess.run([sys.executable, "-c", PROBE, "1" if apply else "0", runtime.__file__],
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_freed_blocks_stay_in_the_heap():
    assert _probe(apply=True) == ["True", "True"]
    assert _probe(apply=False) == ["False", "False"]  # glibc's default: unmapped on free


def test_opt_out_and_other_c_libraries(monkeypatch):
    monkeypatch.setenv(runtime.MALLOC_ENV, "system")
    assert runtime.reuse_freed_memory() is False
    monkeypatch.delenv(runtime.MALLOC_ENV)

    def no_library(path):
        raise OSError("not found")

    monkeypatch.setattr(runtime.ctypes, "CDLL", no_library)
    assert runtime.reuse_freed_memory() is False
