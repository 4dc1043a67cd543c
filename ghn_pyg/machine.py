"""Where a result was computed, in the terms that change low-bit accuracies.

At 4 bits and below a network's accuracy depends on the float kernels that computed it:
PyTorch's vectorized CPU kernels (AVX-512, AVX2, none) and GPUs sum in different
orders, a rounding to a quantization level flips, and one network moved by about 4
points between two CPU kernel sets of one machine (README, "How much a 4-bit number
moves between machines"). :func:`compute_signature` names those kernels so that cached
results record where they came from and tables that mix machines can say so.
"""

from __future__ import annotations

import torch

__all__ = ["compute_signature", "UNRECORDED"]

#: The signature of results cached before signatures were recorded.
UNRECORDED = "unrecorded"


def compute_signature(device: str | torch.device = "cpu") -> str:
    """A short description of the kernels that compute on ``device``.

    The thread count is left out: it does not change results (checked on the
    ``nobn`` networks with 1 and 2 threads).

    Args:
        device: where the computation runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).

    Returns:
        ``"CPU (AVX512 kernels), torch 2.14.1"`` for the CPU (the kernels of
        ``torch.backends.cpu.get_cpu_capability()``, which ``ATEN_CPU_CAPABILITY``
        can lower), ``"NVIDIA H200, torch 2.11.0"`` for a CUDA device.

    Raises:
        RuntimeError: ``device`` is a CUDA device but CUDA is not available.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device} asked for, but CUDA is not available here")
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    if device.type != "cpu":
        return f"{device.type}, torch {torch.__version__}"
    return f"CPU ({torch.backends.cpu.get_cpu_capability()} kernels), torch {torch.__version__}"
