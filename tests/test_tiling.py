"""Exact-size tiling against repeat-and-crop, values and gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ghn_pyg.nn.tiling import fit_to_shape, tile


def repeat_and_crop(core: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    reps = [-(-s // c) for s, c in zip(shape, core.shape)]
    out = core.repeat(*reps)
    for dim, size in enumerate(shape):
        out = out.narrow(dim, 0, size)
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 9)), min_size=1, max_size=4),
       st.integers(0, 1000))
def test_tile_matches_repeat_and_crop(dims, seed):
    core_shape = tuple(c for c, _ in dims)
    shape = tuple(c + extra for c, extra in dims)
    torch.manual_seed(seed)
    core = torch.randn(core_shape, dtype=torch.float64, requires_grad=True)
    ours = tile(core, shape)
    ref = repeat_and_crop(core, shape)
    assert ours.shape == shape and ours.is_contiguous()
    assert torch.equal(ours, ref)
    weight = torch.randn(shape, dtype=torch.float64)
    grad_ours, = torch.autograd.grad((ours * weight).sum(), core)
    grad_ref, = torch.autograd.grad((ref * weight).sum(), core)
    assert torch.allclose(grad_ours, grad_ref, atol=1e-12)


def test_tile_gradcheck_and_identity():
    core = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: tile(c, (5, 3, 7)), (core,))
    assert tile(core, core.shape) is core


def test_fit_to_shape_crops_then_tiles():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float).view(1, 2, 3, 5, 5)
    out = fit_to_shape(x, (5, 2, 3, 3))
    assert out.shape == (1, 5, 2, 3, 3)
    assert torch.equal(out[0, :2], x[0, :, :2, 1:4, 1:4])  # leading channels, centred kernel
    assert torch.equal(out[0, 2:4], out[0, :2]) and torch.equal(out[0, 4], out[0, 0])


def test_tile_into_a_given_tensor():
    core = torch.randn(2, 3)
    out = torch.empty(5, 7, dtype=torch.float64)
    assert tile(core, (5, 7), out=out) is out
    assert torch.equal(out, repeat_and_crop(core, (5, 7)).double())
    with pytest.raises(ValueError, match="out has shape"):
        tile(core, (5, 7), out=torch.empty(5, 6))
    with pytest.raises(RuntimeError, match="no_grad"):
        tile(core.requires_grad_(), (5, 7), out=out)


def test_bad_shapes():
    with pytest.raises(ValueError, match="cannot tile"):
        tile(torch.zeros(3, 3), (2, 3))
    with pytest.raises(ValueError, match="cannot tile"):
        tile(torch.zeros(3, 3), (3, 3, 1))
    with pytest.raises(ValueError, match="cannot fit"):
        fit_to_shape(torch.zeros(2, 3), (3, 3))
