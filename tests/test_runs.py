"""Run folders: never overwritten by accident, resumed with their own settings, logs
without duplicate steps."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from ghn_pyg.cli import main
from ghn_pyg.data import ArchGraphDataset
from ghn_pyg.nn import CheckpointError
from ghn_pyg.train import TrainConfig, Trainer, load_train_checkpoint
from ghn_pyg.train.config import resume_config
from ghn_pyg.train.trainer import RunExistsError


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("graphs")
    ArchGraphDataset(root, "blocks", "train", size=6, progress=False)
    return root


def settings(graphs, out, **kwargs) -> dict:
    values = dict(graphs=str(graphs), space="blocks", num_archs=6, data="synthetic",
                  meta_batch=2, batch_size=16, steps=4, warmup=1, ckpt_every=2, log_every=1,
                  out=str(out), seed=1)
    values.update(kwargs)
    return values


def logged_steps(out) -> list[int]:
    with open(out / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_a_new_run_never_overwrites_one(graphs, tmp_path, capsys):
    out = tmp_path / "run"
    Trainer(TrainConfig(**settings(graphs, out, steps=2))).train()
    before = (out / "last.pt").read_bytes()
    with pytest.raises(RunExistsError, match=r"already holds a run \(last.pt, metrics.csv, "
                                             r"config.json.*--resume.*--overwrite"):
        Trainer(TrainConfig(**settings(graphs, out, steps=3)))
    assert (out / "last.pt").read_bytes() == before
    assert main(["train", "--graphs", str(graphs), "--space", "blocks", "--num-archs", "6",
                 "--data", "synthetic", "--steps", "1", "--out", str(out)]) == 2
    Trainer(TrainConfig(**settings(graphs, out, steps=1)), overwrite=True).train()
    aside = list(out.glob("replaced-*"))
    assert len(aside) == 1 and (aside[0] / "last.pt").read_bytes() == before
    assert load_train_checkpoint(out / "last.pt")["step"] == 1 and logged_steps(out) == [1]
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err


def test_resume_reads_the_runs_own_settings(graphs, tmp_path, capsys):
    out = tmp_path / "run"
    first = settings(graphs, out, steps=4, lr=1e-3, hid=16)
    Trainer(TrainConfig(**first)).train(until=2)
    # only --out and --resume: every other setting comes from the checkpoint
    assert main(["train", "--out", str(out), "--resume", "--steps", "6", "--lr", "5e-4"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["hid"] == 16 and saved["steps"] == 6 and saved["lr"] == 5e-4
    state = load_train_checkpoint(out / "last.pt")
    assert state["step"] == 6 and state["config"]["lr"] == 5e-4
    assert logged_steps(out) == [1, 2, 3, 4, 5, 6]
    capsys.readouterr()
    code = main(["train", "--out", str(out), "--resume", "--hid", "32", "--meta-batch", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot change settings when resuming" in err
    assert "hid: checkpoint 16, given 32" in err and "meta_batch: checkpoint" not in err
    # the meta-batch may change only with the number of processes (networks per step)
    code = main(["train", "--out", str(out), "--resume", "--meta-batch", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "networks per step (meta_batch x processes): checkpoint 2 x 1, now " \
        "3 x 1; with 1 processes use --meta-batch 2" in err


def test_a_new_lr_on_resume_reshapes_the_schedule(graphs, tmp_path):
    out = tmp_path / "run"
    Trainer(TrainConfig(**settings(graphs, out, steps=8, lr=1e-3))).train(until=4)
    changed = resume_config(load_train_checkpoint(out / "last.pt")["config"], {"lr": 1e-4})
    resumed = Trainer(changed, resume=True)
    factor = resumed._lr_factor(4)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * factor)
    resumed.train_step()
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * resumed._lr_factor(5))


def test_resume_checks_settings_before_building_anything(graphs, tmp_path):
    out = tmp_path / "run"
    Trainer(TrainConfig(**settings(graphs, out, steps=2))).train()
    missing = tmp_path / "not-built"
    with pytest.raises(CheckpointError, match="cannot resume with other settings.*num_archs"):
        Trainer(TrainConfig(**settings(missing, out, steps=3, num_archs=100000)), resume=True)
    assert not missing.exists()


def test_killed_after_logging_past_the_checkpoint_logs_each_step_once(graphs, tmp_path):
    out = tmp_path / "run"
    Trainer(TrainConfig(**settings(graphs, out, steps=4))).train(until=2)
    checkpoint = (out / "last.pt").read_bytes()
    resumed = Trainer(TrainConfig(**settings(graphs, out, steps=4)), resume=True)
    resumed.train(until=3)  # logs step 3, checkpoints at 3 ...
    (out / "last.pt").write_bytes(checkpoint)  # ... but suppose it died before that write
    assert logged_steps(out) == [1, 2, 3]
    again = Trainer(TrainConfig(**settings(graphs, out, steps=4)), resume=True)
    assert again.step == 2
    again.train()
    assert logged_steps(out) == [1, 2, 3, 4]
    shutil.rmtree(out)
    assert torch.isfinite(torch.tensor(again.train_step()["loss"]))


def test_yaml_and_json_configs_are_validated_alike(graphs, tmp_path, capsys):
    good = tmp_path / "run.yaml"
    good.write_text(f"graphs: {graphs}\nspace: blocks\nnum_archs: 6\ndata: synthetic\n"
                    f"meta_batch: 2\nbatch_size: 16\nsteps: 1\nwarmup: 1\nout: {tmp_path / 'y'}\n")
    assert main(["train", "--config", str(good)]) == 0
    assert load_train_checkpoint(tmp_path / "y" / "last.pt")["step"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: '2'\n")
    capsys.readouterr()
    assert main(["train", "--config", str(bad)]) == 2
    assert "steps: expected an integer, got '2'" in capsys.readouterr().err
    misspelt = tmp_path / "bad.json"
    misspelt.write_text(json.dumps({"stepz": 2}))
    assert main(["train", "--config", str(misspelt)]) == 2
    assert "unknown training settings: stepz" in capsys.readouterr().err


def test_runs_saved_before_the_recipe_switches_resume_with_their_old_recipe():
    from ghn_pyg.train.config import LEGACY_SETTINGS

    saved = TrainConfig(bits=(8, 4, 2)).to_dict()
    for key in LEGACY_SETTINGS:
        del saved[key]
    resumed = resume_config(saved, {"steps": 5})
    assert (resumed.seed_bits, resumed.collapse_guard, resumed.net_grad_clip) == (False, False, 0.0)
    assert resumed.steps == 5 and TrainConfig().net_grad_clip == 5.0  # new runs: the new recipe
