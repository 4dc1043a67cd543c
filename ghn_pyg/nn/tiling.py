r"""Cropping and tiling decoded tensors to the real parameter shapes.

A decoder emits a tensor of at most its maximum shape; :func:`fit_to_shape` turns it
into the requested shape: dims that are too large keep their leading part (spatial
dims of a 5-D weight batch: their centre), dims that are too small are tiled,

.. math::
    W_{j_1 \dots j_d} = C_{(j_1 \bmod c_1) \dots (j_d \bmod c_d)}.

The tiled tensor is written once, exactly at its size and contiguous (no oversized
``repeat`` that is then narrowed), and its backward sums the tiles of the incoming
gradient straight into the core's gradient, reading it once. For a weight of
:math:`10^7` entries this is the difference between one and three passes over it.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["fit_to_shape", "tile"]


def fit_to_shape(tensor: Tensor, shape: Sequence[int], start_dim: int = 1) -> Tensor:
    """Crop or tile the dims of ``tensor`` from ``start_dim`` on to ``shape``.

    Args:
        tensor: the decoded tensor, e.g. [n, o, i, kh, kw] for a batch of weights.
        shape: the wanted sizes of the dims from ``start_dim`` on.
        start_dim: leading dims kept as they are (batch dims).

    Returns:
        The tensor with dims ``start_dim:`` equal to ``shape``: spatial dims (the last
        two of a 5-D tensor) centre-cropped, other dims cropped to their leading part,
        dims that are too small tiled.
    """
    if tensor.dim() != start_dim + len(shape):
        raise ValueError(f"cannot fit a tensor of shape {tuple(tensor.shape)} from dim "
                         f"{start_dim} on to {tuple(shape)}")
    out = tensor
    for dim, size in enumerate(shape, start=start_dim):
        have = out.shape[dim]
        if have > size:
            spatial = out.dim() == 5 and dim >= 3
            out = out.narrow(dim, (have - size) // 2 if spatial else 0, size)
    return tile(out, tuple(out.shape[:start_dim]) + tuple(int(s) for s in shape))


def tile(core: Tensor, shape: Sequence[int], out: Tensor | None = None) -> Tensor:
    """Tile ``core`` to ``shape`` (every size at least the core's): entry ``j`` of a dim
    is the core's entry ``j mod`` its size.

    Args:
        core: any tensor.
        shape: the target shape, same number of dims, each size >= the core's.
        out: write the result into this tensor of ``shape`` (any dtype and device)
            instead of a new one; not differentiable.

    Returns:
        A new contiguous tensor of ``shape`` (``core`` itself when the shapes agree),
        or ``out``.

    Raises:
        ValueError: a size smaller than the core's, or ``out`` of another shape.
        RuntimeError: ``out`` given while autograd records ``core``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != core.dim() or any(s < c for s, c in zip(shape, core.shape)):
        raise ValueError(f"cannot tile a tensor of shape {tuple(core.shape)} to {shape}")
    if out is not None:
        if tuple(out.shape) != shape:
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {shape}")
        if core.requires_grad and torch.is_grad_enabled():
            raise RuntimeError("tile(..., out=) is not differentiable: call it under "
                               "torch.no_grad()")
        return _fill_tiles(core, out)
    if shape == tuple(core.shape):
        return core
    return _Tile.apply(core, shape)


def _fill_tiles(core: Tensor, out: Tensor) -> Tensor:
    """Write the tiling of ``core`` into ``out`` block by block; returns ``out``."""
    for index, split, source in _regions(core, tuple(out.shape)):
        out[index].view(split).copy_(source.expand(split))
    return out


class _Tile(torch.autograd.Function):
    """Exact-size tiling with a one-pass backward (see :func:`tile`)."""

    @staticmethod
    def forward(ctx: Any, core: Tensor, shape: tuple[int, ...]) -> Tensor:
        ctx.core_shape = core.shape
        return _fill_tiles(core, core.new_empty(shape))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous()
        grad_core = grad.new_zeros(ctx.core_shape)
        for index, split, source in _regions(grad_core, tuple(grad.shape)):
            part = grad[index].view(split)
            # one tile axis at a time, outermost first: several times faster than one
            # reduction over all of them, as each pass reads contiguous blocks
            for dim, size in enumerate(source.shape):
                if size == 1 and split[dim] > 1:
                    part = part.sum(dim, keepdim=True)
            source.add_(part)  # a view of grad_core: the region's shape, tile axes of size 1
        return grad_core, None


def _regions(core: Tensor, shape: tuple[int, ...]
             ) -> Iterator[tuple[tuple[slice, ...], tuple[int, ...], Tensor]]:
    """The blocks of the tiled tensor, each a strided view of whole tiles or remainders.

    Per dim of core size ``c`` and target size ``s = q c + r``, the whole tiles
    ``[0, q c)`` (viewed as ``(q, c)``) and the remainder ``[q c, s)`` (the core's first
    ``r`` entries). Yields, per combination: the index into the tiled tensor, the shape
    to view that block as, and the matching view of ``core`` (size 1 on tile axes).
    """
    per_dim = []
    for c, s in zip(core.shape, shape):
        q, r = divmod(s, c)
        options = [(slice(0, q * c), (q, c), c)] if q else []
        if r:
            options.append((slice(q * c, s), (1, r), r))
        per_dim.append(options)
    for combo in itertools.product(*per_dim):
        index = tuple(option[0] for option in combo)
        split = tuple(size for option in combo for size in option[1])
        source = core
        for dim, option in enumerate(combo):
            source = source.narrow(dim, 0, option[2])
        source = source.reshape(tuple(size for option in combo for size in (1, option[2])))
        yield index, split, source
