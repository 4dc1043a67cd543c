"""Architecture spaces: seeded sampling, building, tracing, spec round trips."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

from ghn_pyg import trace
from ghn_pyg.spaces import (FAMILIES, BlocksSpace, EfficientSpace, Space, TorchvisionSpace,
                            count_params, get_space, register_space, spec_hash)
from ghn_pyg.spaces.macro import macro_param_count


def check_spec(space: Space, spec: dict, in_shape=(1, 28, 28), classes=10):
    """Builds, runs, traces with every parameter mapped, and round-trips through JSON."""
    again = json.loads(json.dumps(spec))
    assert again == spec
    model = space.build(again, in_shape[0], classes)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, *in_shape)).shape == (2, classes)
    graph = trace(model, (1, *in_shape))  # raises if a parameter has no node
    twin = trace(space.build(spec, in_shape[0], classes), (1, *in_shape))
    assert torch.equal(graph.op, twin.op) and torch.equal(graph.edge_index, twin.edge_index)
    return model, graph


@pytest.mark.parametrize("name, seeds", [("efficient", 120), ("cells", 25), ("blocks", 40)])
def test_every_sampled_architecture_builds_runs_and_traces(name, seeds):
    space = get_space(name)
    for seed in range(seeds):
        spec = space.sample(random.Random(seed))
        assert spec["space"] == name
        check_spec(space, spec)


@pytest.mark.parametrize("split", ["wide", "deep", "nobn"])
def test_efficient_ood_variants(split):
    base, space = EfficientSpace(), EfficientSpace().for_split(split)
    for seed in range(8):
        spec = space.sample(random.Random(seed))
        model, graph = check_spec(space, spec)
        if split == "nobn":
            assert "batch_norm" not in graph.op_names()
        if split == "deep":
            assert all(s["depth"] >= 5 for s in spec["stages"])
    wide = [max(s["width"] for s in EfficientSpace().for_split("wide").sample(random.Random(i))["stages"])
            for i in range(20)]
    narrow = [max(s["width"] for s in base.sample(random.Random(i))["stages"]) for i in range(20)]
    assert sum(wide) > 1.8 * sum(narrow)
    with pytest.raises(ValueError, match="has no split 'tall'"):
        base.for_split("tall")


def test_sampling_is_seeded():
    for name in ("efficient", "cells", "blocks"):
        space = get_space(name)
        first = [space.sample(random.Random(3)) for _ in range(2)]
        assert first[0] == first[1]
        assert space.sample(random.Random(4)) != first[0]


def test_budget_and_analytic_parameter_count():
    space = EfficientSpace(max_params=300_000)
    rng = random.Random(0)
    for _ in range(60):
        spec = space._draw(rng)
        built = sum(p.numel() for p in space.build(spec, 1, 7).parameters())
        assert macro_param_count(spec, 1, 7) == built == count_params(space, spec, 1, 7)
    assert all(macro_param_count(space.sample(rng)) <= 300_000 for _ in range(30))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_block_families(family):
    space = BlocksSpace(family)
    spec = space.sample(random.Random(0))
    assert spec["family"] == family
    model, graph = check_spec(space, spec)
    ops = graph.op_names()
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert has_bn == (not family.endswith("nobn"))
    assert ("dw_conv" in ops) == (family.startswith("dwsep") or family == "inverted_residual")
    assert ("add" in ops) == (family in ("residual", "inverted_residual"))
    spec3 = space.make_spec(family, depth=3, width=8)
    assert [s["depth"] for s in spec3["stages"]] == [3, 3, 3]


def test_torchvision_space_adapts_channels_and_classes():
    space = TorchvisionSpace()
    names = [s["name"] for s in space.specs(28)]
    assert "resnet18" in names and "alexnet" not in names and "vgg11_bn" not in names
    assert len(space.specs()) == len(space.names)
    model = space.build({"space": "torchvision", "name": "mobilenet_v2"}, 1, 10)
    graph = trace(model, (1, 1, 28, 28))
    assert graph.shape[1].tolist()[:2] == [32, 1] and graph.num_classes == 10


def test_bad_specs_and_names_are_clear():
    with pytest.raises(ValueError, match="unknown architecture space 'nope'"):
        get_space("nope")
    with pytest.raises(ValueError, match="spec of space 'cells' given to space 'efficient'"):
        get_space("efficient").build({"space": "cells"})
    with pytest.raises(ValueError, match="malformed efficient spec"):
        get_space("efficient").build({"space": "efficient", "stem": {}})
    with pytest.raises(ValueError, match="unknown block family 'wide'"):
        BlocksSpace("wide")
    bad = BlocksSpace("plain").make_spec("plain", 1, 8)
    bad["stages"][0]["block"] = "transformer"
    with pytest.raises(ValueError, match="unknown block 'transformer'"):
        BlocksSpace().build(bad)


def test_register_your_own_space():
    class Tiny(Space):
        name = "tiny"

        def sample(self, rng):
            return {"space": "tiny", "width": rng.choice([4, 8])}

        def build(self, spec, in_channels=3, num_classes=10):
            self.check_spec(spec)
            return nn.Sequential(nn.Conv2d(in_channels, spec["width"], 3), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(spec["width"], num_classes))

    register_space("tiny", Tiny)
    space = get_space("tiny")
    check_spec(space, space.sample(random.Random(0)))
    assert spec_hash({"a": 1, "b": 2}) == spec_hash({"b": 2, "a": 1})


def test_model_factories_import_from_the_current_directory(tmp_path, monkeypatch):
    import sys

    from ghn_pyg.nn.registry import resolve_gnn
    from ghn_pyg.spaces.refs import resolve_model

    (tmp_path / "my_nets_here.py").write_text(
        "from torch import nn\n"
        "def small(num_classes=10):\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(num_classes))\n"
        "class NotALayer:\n"
        "    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert isinstance(resolve_model("my_nets_here:small", num_classes=3), nn.Module)
    with pytest.raises(ValueError, match="is not an nn.Module class"):
        resolve_gnn("my_nets_here:NotALayer")
    with pytest.raises(ValueError, match="cannot load model factory 'no_such_mod_xyz:f'"):
        resolve_model("no_such_mod_xyz:f")
    assert str(tmp_path) in sys.path  # added once, for the module that needed it
