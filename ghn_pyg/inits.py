"""Named weight initializers, as parameter dicts for the fake-quant runner.

An initializer maps ``(module, generator)`` to a ``{name: tensor}`` dict keyed like
``module.named_parameters()``, leaving the module itself untouched. Conv and linear
weights (2-D and more) follow the initializer; norm weights are 1 and every bias and
norm shift is 0, except for ``default``, which is PyTorch's own initialisation of each
layer. Register your own with :func:`register_initializer`.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["INITIALIZERS", "ALIASES", "register_initializer", "init_params", "initializer_names",
           "seeded", "default_init", "load_params"]

WeightInit = Callable[[Tensor, torch.Generator], Tensor]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Random draws inside come from ``seed`` (CPU, and CUDA when initialised); the
    caller's random state is restored afterwards, so nothing outside is reseeded."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def default_init(module: nn.Module, seed: int | None = None) -> nn.Module:
    """Re-draw the parameters of ``module``'s submodules (not of ``module`` itself) with
    PyTorch's own initialisation (``reset_parameters``), in place, from ``seed`` (as
    :func:`seeded`) or, without one, from the current random state; returns ``module``."""
    if seed is not None:
        with seeded(seed):
            return default_init(module)
    for sub in module.modules():
        if hasattr(sub, "reset_parameters") and sub is not module:
            sub.reset_parameters()
    return module


@torch.no_grad()
def load_params(module: nn.Module, params: dict[str, Tensor]) -> nn.Module:
    """Copy ``params`` (``{name: tensor}``, e.g. from :func:`init_params` or a GHN) into
    ``module``'s parameters in place; returns ``module``.

    Raises:
        KeyError: a parameter of ``module`` that ``params`` lacks (named).
    """
    for name, param in module.named_parameters():
        if name not in params:
            raise KeyError(f"no value for parameter {name!r}")
        param.copy_(params[name])
    return module


def _fans(weight: Tensor) -> tuple[int, int]:
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _uniform(bound: float) -> WeightInit:
    return lambda w, g: torch.empty_like(w).uniform_(-bound, bound, generator=g)


def _normal(std: float) -> WeightInit:
    return lambda w, g: torch.empty_like(w).normal_(0.0, std, generator=g)


def _glorot_uniform(w: Tensor, g: torch.Generator) -> Tensor:
    fan_in, fan_out = _fans(w)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return torch.empty_like(w).uniform_(-bound, bound, generator=g)


def _glorot_normal(w: Tensor, g: torch.Generator) -> Tensor:
    fan_in, fan_out = _fans(w)
    return torch.empty_like(w).normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=g)


def _he_uniform(w: Tensor, g: torch.Generator) -> Tensor:
    bound = math.sqrt(6.0 / _fans(w)[0])
    return torch.empty_like(w).uniform_(-bound, bound, generator=g)


def _he_normal(w: Tensor, g: torch.Generator) -> Tensor:
    return torch.empty_like(w).normal_(0.0, math.sqrt(2.0 / _fans(w)[0]), generator=g)


def _orthogonal(w: Tensor, g: torch.Generator) -> Tensor:
    rows, cols = w.shape[0], w.numel() // w.shape[0]
    flat = torch.empty(max(rows, cols), min(rows, cols)).normal_(0.0, 1.0, generator=g)
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    q = q if rows >= cols else q.t()
    return q[:rows, :cols].reshape(w.shape).to(w.dtype)


#: Weight initializers by name (``default`` is handled by :func:`init_params`).
INITIALIZERS: dict[str, WeightInit | None] = {
    "default": None,
    "uniform_0.01": _uniform(0.01), "uniform_0.1": _uniform(0.1),
    "normal_0.01": _normal(0.01), "normal_0.1": _normal(0.1),
    "xavier_uniform": _glorot_uniform, "xavier_normal": _glorot_normal,
    "he_uniform": _he_uniform, "he_normal": _he_normal,
    "orthogonal": _orthogonal,
}


#: Short names accepted by :func:`init_params`.
ALIASES: dict[str, str] = {"he": "he_normal", "kaiming": "he_normal", "xavier": "xavier_uniform",
                           "glorot": "xavier_uniform"}


def register_initializer(name: str, weight_init: WeightInit) -> None:
    """Add ``weight_init(weight, generator) -> new weight`` under ``name``."""
    if not callable(weight_init):
        raise TypeError(f"initializer {name!r} must be callable")
    INITIALIZERS[name] = weight_init


def initializer_names() -> list[str]:
    """The registered initializer names."""
    return list(INITIALIZERS)


@torch.no_grad()
def init_params(name: str, module: nn.Module, seed: int = 0) -> dict[str, Tensor]:
    """Fresh parameters for ``module`` from initializer ``name``.

    Args:
        name: a name in :data:`INITIALIZERS` (``"he"`` and ``"xavier"`` are accepted
            for ``he_normal`` and ``xavier_uniform``).
        module: the network (not modified).
        seed: seed of the draw.

    Returns:
        ``{name: tensor}`` for every parameter.

    Raises:
        ValueError: unknown initializer (lists the known ones).
    """
    name = ALIASES.get(name, name)
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; known: {', '.join(INITIALIZERS)}")
    if INITIALIZERS[name] is None:
        fresh = default_init(copy.deepcopy(module), seed)
        return {k: v.detach().clone() for k, v in fresh.named_parameters()}
    weight_init = INITIALIZERS[name]
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, param in module.named_parameters():
        if param.dim() >= 2:
            out[key] = weight_init(param.detach().cpu(), gen).to(param.device)
        elif key.endswith("bias"):
            out[key] = torch.zeros_like(param)
        else:
            out[key] = torch.ones_like(param)
    return out
