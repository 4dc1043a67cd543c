"""Training on a mixture of architecture datasets (ArchMixture, MixtureSampler) and the learning curve."""

from __future__ import annotations

import argparse
import csv
from collections import Counter

import pytest
import torch

from ghn_pyg.data import ArchGraphDataset, ArchMixture
from ghn_pyg.errors import DatasetError
from ghn_pyg.nn import CheckpointError
from ghn_pyg.train import TrainConfig, Trainer
from ghn_pyg.train.config import add_config_arguments, config_from_args
from ghn_pyg.train import curve
from ghn_pyg.train.curve import LearningCurve, plot_curve
from ghn_pyg.train.protocol import EvalProtocol
from ghn_pyg.train.sampling import MixtureSampler

from .test_train import config, ghn_state


@pytest.fixture(scope="module")
def efficient(tmp_path_factory):
    """6 efficient-space training architectures (the other dataset of the mixtures)."""
    root = tmp_path_factory.mktemp("efficient")
    ArchGraphDataset(root, "efficient", "train", size=6, progress=False)
    return root


def test_mixture_indexes_its_datasets_in_order(graphs, efficient):
    blocks, other = ArchGraphDataset.open(graphs), ArchGraphDataset.open(efficient)
    mixture = ArchMixture([blocks, other])
    assert len(mixture) == 14 and mixture.sizes == [8, 6] and mixture.weights == (8.0, 6.0)
    assert mixture.locate(7) == (0, 7) and mixture.locate(8) == (1, 0)
    assert mixture[9].name == other[1].name and mixture[2].name == blocks[2].name
    module = mixture.build_module(10, device="meta")
    assert all(p.is_meta for p in module.parameters())
    assert [p.shape for p in module.parameters()] == \
        [p.shape for p in other.build_module(2).parameters()]
    assert mixture.in_shape == (1, 28, 28) and mixture.num_classes == 10
    with pytest.raises(IndexError, match="architecture 14 out of range"):
        mixture[14]


def test_mixture_rejects_bad_datasets_and_weights(graphs, efficient, tmp_path):
    blocks = ArchGraphDataset.open(graphs)
    five = ArchGraphDataset(tmp_path / "five", "efficient", "train", size=2, num_classes=5,
                            progress=False)
    with pytest.raises(ValueError, match="with 5 classes.*must share both"):
        ArchMixture([blocks, five])
    for weights in ((1.0,), (1.0, -1.0), (0.0, 0.0)):
        with pytest.raises(ValueError, match="one non-negative weight per dataset"):
            ArchMixture([blocks, ArchGraphDataset.open(efficient)], weights)
    with pytest.raises(ValueError, match="at least one dataset"):
        ArchMixture([])
    with pytest.raises(DatasetError, match="no architecture dataset at .*make-dataset --root"):
        ArchGraphDataset.open(tmp_path / "missing")


def test_mixture_sampler_draws_by_weight_and_resumes_exactly():
    sampler = MixtureSampler([5, 20], [3.0, 1.0], meta_batch=4, seed=1)
    steps = [sampler.indices(t) for t in range(100)]
    datasets = Counter(0 if i < 5 else 1 for step in steps for i in step)
    assert 0.7 < datasets[0] / 400 < 0.8  # weight 3 of 4
    first = [i for step in steps for i in step if i < 5]
    assert sorted(first[:5]) == list(range(5)) and sorted(first[5:10]) == list(range(5))  # epochs
    fresh = MixtureSampler([5, 20], [3.0, 1.0], meta_batch=4, seed=1)
    assert fresh.indices(57) == steps[57]  # a resumed run replays the draws
    other_seed = MixtureSampler([5, 20], [3.0, 1.0], meta_batch=4, seed=2)
    assert [other_seed.indices(t) for t in range(10)] != steps[:10]
    never = MixtureSampler([5, 20], [0.0, 1.0], meta_batch=4, seed=1)
    assert all(i >= 5 for t in range(20) for i in never.indices(t))
    ranks = [MixtureSampler([5, 20], [1.0, 1.0], 2, 0, rank, 2).indices(3) for rank in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])
    with pytest.raises(ValueError, match="one weight per non-empty dataset"):
        MixtureSampler([5, 20], [1.0], 2, 0)


def test_trainer_steps_on_a_mixture_and_resumes_exactly(graphs, efficient, tmp_path):
    mix = dict(mix_graphs=(str(efficient),), mix_weights=(1.0, 3.0), steps=3)
    straight = Trainer(config(graphs, tmp_path / "a", **mix))
    assert isinstance(straight.archs, ArchMixture) and len(straight.archs) == 14
    drawn = [i for t in range(3) for i in straight.arch_sampler.indices(t)]
    assert any(i >= 8 for i in drawn)  # efficient networks are trained on
    straight.train()
    first = Trainer(config(graphs, tmp_path / "b", **mix))
    first.train(until=1)
    resumed = Trainer(config(graphs, tmp_path / "b", **mix), resume=True)
    resumed.train()
    a, b = ghn_state(straight), ghn_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CheckpointError, match="cannot resume with other settings.*mix_weights"):
        Trainer(config(graphs, tmp_path / "b", **{**mix, "mix_weights": (1.0, 1.0)}), resume=True)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    flags = parser.parse_args(["--mix-graphs", "a, b", "--mix-weights", "2,1,1"])
    given = config_from_args(flags)
    assert given.mix_graphs == ("a", "b") and given.mix_weights == (2.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="mix_weights: .* one non-negative weight for graphs "
                                         "and one per mix_graphs root \\(2 in all\\)"):
        TrainConfig(mix_graphs=(str(efficient),), mix_weights=(1.0,))


def test_learning_curve_goes_to_metrics_and_a_plot_without_changing_training(graphs, efficient,
                                                                             tmp_path, monkeypatch):
    # a cheaper protocol than the 4 + 2 batches of 256 images the curve uses
    monkeypatch.setattr(curve, "CURVE_PROTOCOL", EvalProtocol("calibrated", 1, 1, batch_size=16))
    mix = dict(mix_graphs=(str(efficient),), steps=4, log_every=3)
    plain = Trainer(config(graphs, tmp_path / "plain", **mix))
    plain.train()
    curved = Trainer(config(graphs, tmp_path / "curve", eval_every=2, eval_archs=2,
                            eval_images=32, eval_bits=(32, 4), **mix))
    curved.train()
    a, b = ghn_state(plain), ghn_state(curved)
    assert all(torch.equal(a[k], b[k]) for k in a)  # evaluating draws no training randomness
    with open(tmp_path / "curve" / "metrics.csv", newline="") as f:
        rows = {int(r["step"]): r for r in csv.DictReader(f)}
    assert sorted(rows) == [2, 3, 4]  # curve points are logged whatever log_every says
    for column in ("val_acc_32bit", "val_acc_4bit", "val_blocks_32bit", "val_efficient_4bit"):
        assert 0.0 <= float(rows[2][column]) <= 100.0 and 0.0 <= float(rows[4][column]) <= 100.0
        assert rows[3][column] == ""
    assert (tmp_path / "curve" / "learning_curve.png").stat().st_size > 0
    assert curved.curve.archs.graphs[0].name == "val-blocks-00" and len(curved.curve.archs) == 4
    with pytest.raises(ValueError, match="eval_bits: \\[3, 1\\] must be bit-widths"):
        TrainConfig(eval_bits=(3, 1))


def test_plot_curve_needs_curve_points(tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("step,loss,val_acc_32bit\n1,2.0,\n")
    assert plot_curve(metrics, tmp_path / "curve.png") is None
    metrics.write_text("step,loss,val_acc_32bit\n1,2.0,\n2,1.9,31.5\n")
    assert plot_curve(metrics, tmp_path / "curve.png") == tmp_path / "curve.png"
    with pytest.raises(ValueError, match="must be >= 1"):
        LearningCurve(["blocks"], 0, (1, 28, 28), 10, None, None)
    with pytest.raises(ValueError, match="space 'blocks' cannot give 50 validation "
                                         "architectures.*lower eval_archs"):
        LearningCurve(["blocks"], 50, (1, 28, 28), 10, None, None)
