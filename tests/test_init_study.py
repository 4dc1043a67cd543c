"""The initialization study: smoke preset, resume, initializer statistics, bad names."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from ghn_pyg.cli import main
from ghn_pyg.inits import init_params, register_initializer
from ghn_pyg.study.init_study import PRESETS, StudyConfig, bn_family_table


def test_smoke_preset_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["init-study", "--preset", "smoke", "--data", "synthetic", "--out", str(out)]
    assert main(args) == 0
    rows = list(csv.DictReader((out / "runs.csv").open()))
    config = PRESETS["smoke"]
    assert len(rows) == len(config.families) * len(config.inits) * config.seeds * 4
    assert {r["setting"] for r in rows} == {"W8A8", "W4A4", "W2A2", "W8A32"}
    for r in rows:
        assert 0 <= float(r["accuracy"]) <= 1 and float(r["qmse_w"]) >= 0
    assert "init \\ family" in capsys.readouterr().out
    for name in ("drop_W4A4.png", "accuracy_vs_bits.png", "qat_curves.png"):
        assert (out / name).is_file()
    summary = (out / "summary.md").read_text()
    assert "## Top-1 per initializer" in summary and "| he_normal " in summary
    assert "## QAT from each starting point" in summary and "| ghn-qat " in summary
    assert "## Block families with batch norm" in summary  # plain and dwsep have BN
    qat_rows = list(csv.DictReader((out / "qat.csv").open()))
    assert [(r["init"], r["epoch"]) for r in qat_rows] == [("ghn-qat", "0"), ("ghn-qat", "1"),
                                                           ("he_normal", "0"), ("he_normal", "1")]
    layers = list(csv.DictReader((out / "layers.csv").open()))
    runs = {(r["family"], r["init"], r["seed"]) for r in rows}
    assert {(r["family"], r["init"], r["seed"]) for r in layers} == runs
    for run in runs:  # stem, three stages, head at least
        assert sum((r["family"], r["init"], r["seed"]) == run for r in layers) >= 5
    for r in layers:
        assert float(r["absmax"]) >= max(-float(r["min"]), float(r["max"])) - 1e-6
        assert 0 < float(r["qmse_w_W8A8"]) < float(r["qmse_w_W2A2"])
    assert main(args) == 0  # everything done: nothing runs again
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == len(rows)
    assert len(list(csv.DictReader((out / "layers.csv").open()))) == len(layers)
    assert len(list(csv.DictReader((out / "qat.csv").open()))) == len(qat_rows)


def test_initializers_have_their_statistics():
    conv = nn.Conv2d(64, 128, 3)
    he = init_params("he_normal", conv, seed=0)["weight"]
    assert abs(float(he.std()) - math.sqrt(2 / (64 * 9))) < 0.02 * math.sqrt(2 / (64 * 9)) * 5
    xavier = init_params("xavier_uniform", conv, seed=0)["weight"]
    bound = math.sqrt(6 / (64 * 9 + 128 * 9))
    assert float(xavier.abs().max()) <= bound and float(xavier.abs().max()) > 0.95 * bound
    rows = init_params("orthogonal", nn.Linear(32, 16), seed=0)["weight"]
    assert torch.allclose(rows @ rows.t(), torch.eye(16), atol=1e-5)
    uniform = init_params("uniform_0.01", conv, seed=0)
    assert float(uniform["weight"].abs().max()) <= 0.01 and torch.equal(uniform["bias"],
                                                                        torch.zeros(128))
    for name, std in (("normal_0.1", 0.1), ("normal_0.01", 0.01),
                      ("xavier_normal", math.sqrt(2 / (64 * 9 + 128 * 9)))):
        weight = init_params(name, conv, seed=0)["weight"]
        assert abs(float(weight.std()) / std - 1) < 0.02 and abs(float(weight.mean())) < 0.05 * std
    for name, bound in (("uniform_0.1", 0.1), ("he_uniform", math.sqrt(6 / (64 * 9)))):
        weight = init_params(name, conv, seed=0)["weight"]
        assert bound * 0.99 < float(weight.abs().max()) <= bound
        assert abs(float(weight.std()) / (bound / math.sqrt(3)) - 1) < 0.02
    default = init_params("default", conv, seed=3)
    assert torch.equal(default["weight"], init_params("default", conv, seed=3)["weight"])
    register_initializer("constant_half", lambda w, g: torch.full_like(w, 0.5))
    assert float(init_params("constant_half", conv)["weight"].mean()) == 0.5


def test_bad_names_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown initializer 'glorious'"):
        init_params("glorious", nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown block family 'transformer'"):
        StudyConfig(families=("transformer",)).validate()
    assert main(["init-study", "--inits", "nope", "--data", "synthetic",
                 "--out", str(tmp_path)]) == 2


def test_bn_family_table_averages_only_the_families_with_batch_norm(tmp_path):
    path = tmp_path / "runs.csv"
    fields = ["family", "init", "seed", "setting", "start_fp32", "end_fp32", "accuracy", "drop"]
    runs = [("plain", "he", 0, "W4A4", 0.1, 0.8, 0.6), ("residual", "he", 0, "W4A4", 0.1, 0.6, 0.5),
            ("plain_nobn", "he", 0, "W4A4", 0.1, 0.2, 0.2), ("plain", "he", 0, "W8A8", 0.1, 0.8, 0.8),
            ("plain", "ghn", 0, "W4A4", 0.7, 0.9, 0.5)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        writer.writerows([*run, run[5] - run[6]] for run in runs)
    lines = bn_family_table(path, "W4A4").splitlines()
    assert lines[0].split("|")[1:-1] == [" init ", " runs ", " start ", " trained FP32 ", " W4A4 ",
                                         " W4A4 drop "]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert cells == [["he", "2", "10.0", "70.0", "55.0", "15.0"],
                     ["ghn", "1", "70.0", "90.0", "50.0", "40.0"]]
    with pytest.raises(ValueError, match="no run of a block family with batch norm at W2A2"):
        bn_family_table(path, "W2A2")
