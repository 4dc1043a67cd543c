"""Shared fixtures: zoo models and their graphs are built once per test session."""

from __future__ import annotations

import functools
import os

import pytest
import torch

from ghn_pyg import trace
from ghn_pyg.spaces import build_torchvision, zoo_input_shape

# The CI machine has 2 cores; OMP_NUM_THREADS=1 leaves one to a job running beside.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


@functools.lru_cache(maxsize=None)
def zoo_model(name: str) -> torch.nn.Module:
    """A randomly initialised torchvision model, built once."""
    torch.manual_seed(0)
    return build_torchvision(name)


@functools.lru_cache(maxsize=None)
def zoo_graph(name: str):
    """The ArchGraph of a zoo model at its default input shape, built once."""
    return trace(zoo_model(name), zoo_input_shape(name), name=name)


@pytest.fixture
def registry_guard():
    """Restore the op registries after a test that registers its own types."""
    from ghn_pyg.graph import ops

    saved = ops.snapshot_registries()
    yield
    ops.restore_registries(saved)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """A small blocks-space architecture dataset for training tests (built once per module)."""
    from ghn_pyg.data import ArchGraphDataset

    root = tmp_path_factory.mktemp("graphs")
    ArchGraphDataset(root, "blocks", "train", size=8, progress=False)
    ArchGraphDataset(root, "blocks", "test", size=3, progress=False)
    return root
