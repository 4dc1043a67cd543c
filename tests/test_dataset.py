"""ArchGraphDataset: splits, storage, resume, corruption."""

from __future__ import annotations

import json

import pytest
import torch
from torch_geometric.loader import DataLoader

from ghn_pyg import trace
from ghn_pyg.data import ArchGraphDataset, sample_specs
from ghn_pyg.data import archgraph_dataset as module
from ghn_pyg.errors import DatasetError
from ghn_pyg.quant import QuantSpec, quantize
from ghn_pyg.spaces import get_space, spec_hash


def make(root, **kwargs):
    settings = dict(space="efficient", split="train", size=24, seed=0, shard_size=8,
                    progress=False)
    settings.update(kwargs)
    return ArchGraphDataset(root, **settings)


def test_graphs_match_their_modules_and_survive_reopening(tmp_path):
    data = make(tmp_path)
    assert len(data) == 24 and data.meta["num_shards"] == 3
    for i in (0, 9, 23):
        graph = data[i]
        again = trace(data.build_module(i), (1, 1, 28, 28), s_max=50)
        for key in ("op", "act", "shape", "edge_index", "dist_index", "dist", "level_fw"):
            assert torch.equal(graph[key], again[key]), key
        assert graph.param_names == again.param_names and graph.num_classes == 10
        assert json.loads(graph.spec) == data.spec(i)
    assert data.build_module(3) is data.build_module(3)  # cached
    # on a device: a new module made there (meta tensors: shapes without storage)
    made_there = data.build_module(3, device="meta")
    assert made_there is not data.build_module(3)
    tensors = dict(made_there.state_dict())
    assert tensors.keys() == data.build_module(3).state_dict().keys()
    assert all(t.is_meta and t.shape == data.build_module(3).state_dict()[k].shape
               for k, t in tensors.items())
    # a training runner around it keeps every tensor on that device
    runner = quantize(made_there, QuantSpec.uniform(4), (1, 1, 28, 28), bn="batch",
                      graph=data[3])
    assert runner.layers and all(t.is_meta for t in runner.state_dict().values())
    reopened = make(tmp_path)
    assert len(reopened) == 24 and torch.equal(reopened[5].op, data[5].op)
    assert data.bytes_per_graph() <= 10 * 1024
    batch = next(iter(DataLoader(data, batch_size=5)))
    assert batch.num_graphs == 5 and batch.in_shape.shape == (5, 3)


def test_splits_are_disjoint_and_seeded():
    space = get_space("efficient")
    hashes = {split: {spec_hash(s) for s in sample_specs(space, split, size, seed=0)}
              for split, size in (("train", 400), ("val", 60), ("test", 60))}
    assert all(len(h) == n for h, n in zip(hashes.values(), (400, 60, 60)))  # de-duplicated
    assert not hashes["train"] & hashes["val"] and not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]
    again = {spec_hash(s) for s in sample_specs(space, "val", 60, seed=0)}
    assert again == hashes["val"]
    other = {spec_hash(s) for s in sample_specs(space, "val", 60, seed=1)}
    assert other != hashes["val"]


def test_ood_and_torchvision_splits(tmp_path):
    nobn = make(tmp_path, split="nobn", size=5)
    assert all("batch_norm" not in g.op_names() for g in nobn)
    zoo = make(tmp_path, split="torchvision", size=0, in_shape=(1, 32, 32))
    assert len(zoo) == 18 and zoo[0].name == "resnet18"  # alexnet needs 63x63
    with pytest.raises(ValueError, match="has no split 'wide'"):
        make(tmp_path, space="cells", split="wide")


def test_killed_build_never_loads_as_complete_and_resumes(tmp_path, monkeypatch):
    calls = []
    original = ArchGraphDataset._trace_specs

    def dies_on_second_shard(self, specs, bar, pool=None):
        calls.append(len(specs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, specs, bar, pool)

    monkeypatch.setattr(ArchGraphDataset, "_trace_specs", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path)
    folder = tmp_path / "train"
    assert not (folder / "meta.json").exists()
    assert sorted(p.name for p in folder.glob("shard_*")) == ["shard_00000.pt"]
    assert not list(folder.glob(".*tmp"))  # no half-written file left behind
    monkeypatch.setattr(ArchGraphDataset, "_trace_specs", original)
    traced = []
    original_chunk = module._trace_chunk

    def counting_chunk(args):
        traced.append(len(args[2]))
        return original_chunk(args)

    monkeypatch.setattr(module, "_trace_chunk", counting_chunk)
    data = make(tmp_path)
    assert len(data) == 24 and sum(traced) == 16  # only the two missing shards


def test_corrupted_files_and_other_settings_are_clear_errors(tmp_path):
    data = make(tmp_path)
    shard = tmp_path / "train" / "shard_00001.pt"
    shard.write_bytes(shard.read_bytes()[:100])
    fresh = make(tmp_path)
    with pytest.raises(DatasetError, match="shard_00001.pt is corrupted.*delete it"):
        fresh[10]
    assert torch.equal(fresh[0].op, data[0].op)  # other shards still load
    with pytest.raises(DatasetError, match="other settings.*size: on disk 24, asked 30"):
        make(tmp_path, size=30)
    (tmp_path / "train" / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="meta.json is unreadable"):
        make(tmp_path)
    with pytest.raises(ValueError, match="in_shape must be"):
        make(tmp_path / "x", in_shape=(28, 28))


def test_shard_cache_is_bounded(tmp_path):
    data = make(tmp_path, size=40, shard_size=5)
    for graph in data:
        assert graph.num_nodes > 0
    assert data._load_shard.cache_info().currsize <= 4


def test_sizes_and_indices_out_of_range_are_errors(tmp_path):
    for bad, match in (({"size": 0}, "size must be a positive integer, got 0"),
                       ({"shard_size": 0}, "shard_size must be a positive integer"),
                       ({"size": 2.5}, "size must be a positive integer, got 2.5"),
                       ({"workers": -1}, "workers must be >= 0")):
        with pytest.raises(ValueError, match=match):
            ArchGraphDataset(tmp_path / "bad", "blocks", "train", progress=False, **bad)
    assert not (tmp_path / "bad").exists()  # nothing reported as built
    data = ArchGraphDataset(tmp_path / "ok", "blocks", "train", size=2, progress=False)
    assert isinstance(data.build_module(-1), torch.nn.Module)
    with pytest.raises(IndexError, match="graph 2 out of range for 2 graphs"):
        data.build_module(2)
