"""Checkpoint formats: one safe loader, format tags and versions."""

from __future__ import annotations

import pytest
import torch

from ghn_pyg.formats import (GHN_FORMAT, TRAIN_FORMAT, CheckpointError, ghn_payload,
                             read_checkpoint)
from ghn_pyg.graph.archgraph import ArchGraph
from ghn_pyg.nn import GHN
from ghn_pyg.nn.ghn import PRETRAINED_DIR


def test_shipped_checkpoints_load_through_the_one_loader():
    for name in ("ghn-fmnist", "ghn-qat-fmnist"):
        payload = read_checkpoint(PRETRAINED_DIR / f"{name}.pt", (GHN_FORMAT,))
        assert payload["format"] == GHN_FORMAT
        assert GHN.from_pretrained(name).config["hid"] == payload["config"]["hid"]


def test_tags_versions_and_code_are_checked(tmp_path):
    ghn = GHN(hid=8)
    path = ghn.save(tmp_path / "ghn.pt")
    with pytest.raises(CheckpointError, match="not a ghn_pyg training checkpoint"):
        read_checkpoint(path, (TRAIN_FORMAT,))
    newer = ghn.payload() | {"version": 99}
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="version 99 is newer than this installation"):
        GHN.load(tmp_path / "newer.pt")
    training = {"format": TRAIN_FORMAT, "version": 1, "ghn": ghn.payload()}
    torch.save(training, tmp_path / "train.pt")
    assert ghn_payload(tmp_path / "train.pt")["config"] == ghn.config
    torch.save({"format": TRAIN_FORMAT, "version": 1}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="training checkpoint without a GHN"):
        ghn_payload(tmp_path / "empty.pt")

    # anything beyond tensors and plain containers is never unpickled
    torch.save({"format": GHN_FORMAT, "x": ArchGraph()}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="corrupted or not a torch checkpoint"):
        read_checkpoint(tmp_path / "code.pt", (GHN_FORMAT,))


def test_archgraph_create_checks_node_field_lengths():
    fields = dict(op=torch.zeros(3, dtype=torch.long), act=torch.zeros(3, dtype=torch.long),
                  shape=torch.zeros(3, 4, dtype=torch.long), stride=torch.ones(3),
                  groups=torch.ones(3), param_names=[[], [], []], param_shapes=[[], [], []],
                  edge_index=torch.tensor([[0, 1], [1, 2]]), name="chain", spec="",
                  in_shape=(1, 4, 4), num_classes=2, s_max=3)
    graph = ArchGraph.create(**fields)
    assert graph.dist.tolist() == [1, 2, 1] and graph.level_fw.tolist() == [0, 1, 2]
    assert graph.w_bits.tolist() == [32, 32, 32] and graph.in_shape.tolist() == [[1, 4, 4]]
    with pytest.raises(ValueError, match="'act': 2"):
        ArchGraph.create(**(fields | {"act": torch.zeros(2, dtype=torch.long)}))
