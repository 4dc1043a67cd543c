"""torch.distributed plumbing: process groups from torchrun, DDP, rank-0 checks."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["setup", "backend_for", "device_for", "wrap", "barrier", "all_finite",
           "replicas_in_sync", "teardown"]


def backend_for(use_cuda: bool, local_world: int, gpus: int) -> str:
    """The process-group backend: NCCL when every local rank has a GPU of its own, else
    gloo (on the CPU, and when several ranks share a GPU, which NCCL refuses: small
    networks leave a GPU mostly idle while each rank's host work launches kernels, so
    ranks sharing one scale the host side)."""
    return "nccl" if use_cuda and local_world <= gpus else "gloo"


def setup(device: str = "auto") -> tuple[int, int]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), once.

    The backend is :func:`backend_for`'s: NCCL on CUDA with a GPU per rank, gloo otherwise.

    Returns:
        ``(rank, world_size)``; ``(0, 1)`` without torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        gpus = torch.cuda.device_count() if use_cuda else 0
        dist.init_process_group(backend_for(use_cuda, local_world, gpus))
    return dist.get_rank(), dist.get_world_size()


def device_for(device: str, rank: int) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU.

    Local rank ``r`` takes GPU ``r mod (GPUs)``, so more ranks than GPUs share them.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    return torch.device(device)


def wrap(module: nn.Module, device: torch.device, world: int) -> nn.Module:
    """DDP-wrap ``module`` when more than one process trains."""
    if world <= 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def barrier(world: int) -> None:
    """Wait for every rank (no-op on one process)."""
    if world > 1:
        dist.barrier()


def all_finite(loss: Tensor, world: int) -> bool:
    """Whether the loss is finite on every rank (all ranks skip a step together)."""
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item() > 0)


def any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank (so that all ranks act on it together)."""
    if world <= 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def replicas_in_sync(module: nn.Module, world: int) -> bool:
    """Whether every rank holds exactly rank 0's parameters."""
    if world <= 1:
        return True
    flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    same = torch.tensor([float(torch.equal(flat, reference))], device=flat.device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item() > 0)


def teardown() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()
