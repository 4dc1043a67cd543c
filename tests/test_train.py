"""Training: steps, resume exactness, NaN handling, QAT bits, DDP, eval and predict."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ghn_pyg.cli import main
from ghn_pyg.data import ArchGraphDataset
from ghn_pyg.nn import GHN, CheckpointError
from ghn_pyg.train import NonFiniteLossError, TrainConfig, Trainer
from ghn_pyg.train.sampling import ArchSampler, ImageBatcher, MixtureSampler, draw_bits

from .test_images import fake_fmnist

ROOT = Path(__file__).resolve().parent.parent


def config(graphs, out, **kwargs):
    settings = dict(graphs=str(graphs), space="blocks", num_archs=8, data="synthetic",
                    meta_batch=2, batch_size=16, steps=4, warmup=1, ckpt_every=2, log_every=1,
                    out=str(out), seed=3)
    settings.update(kwargs)
    return TrainConfig(**settings)


def ghn_state(trainer):
    return {k: v.clone() for k, v in trainer.ghn.state_dict().items()}


def test_resume_continues_exactly(graphs, tmp_path):
    straight = Trainer(config(graphs, tmp_path / "a", steps=4, bits=(8, 4, 2), augment=True))
    straight.train()
    first = Trainer(config(graphs, tmp_path / "b", steps=4, bits=(8, 4, 2), augment=True))
    first.train(until=2)  # as if the run had been killed after step 2
    resumed = Trainer(config(graphs, tmp_path / "b", steps=4, bits=(8, 4, 2), augment=True),
                      resume=True)
    assert resumed.step == 2
    resumed.train()
    a, b = ghn_state(straight), ghn_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.ghn.trained_bits == (2, 4, 8)  # never shown float graphs
    assert GHN.load(tmp_path / "b" / "last.pt").trained_bits == (2, 4, 8)
    rows = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4"]
    with pytest.raises(CheckpointError, match="cannot resume with other settings.*hid"):
        Trainer(config(graphs, tmp_path / "b", hid=16), resume=True)
    with pytest.raises(CheckpointError, match="no such training checkpoint"):
        Trainer(config(graphs, tmp_path / "none"), resume=True)


def test_time_limit_stops_with_a_checkpoint_and_resume_continues(graphs, tmp_path, capsys):
    trainer = Trainer(config(graphs, tmp_path, steps=4, ckpt_every=100, time_limit=1e-9))
    metrics = trainer.train()
    assert trainer.step == 1 and metrics["stopped_by_time_limit"] is True
    assert "stopped at step 1 of 4" in capsys.readouterr().out
    assert torch.load(tmp_path / "last.pt", weights_only=False)["step"] == 1
    assert (tmp_path / "metrics.csv").read_text().splitlines()[-1].startswith("1,")
    resumed = Trainer(config(graphs, tmp_path, steps=4, ckpt_every=100), resume=True)
    assert "stopped_by_time_limit" not in resumed.train() and resumed.step == 4
    with pytest.raises(ValueError, match="time_limit must be >= 0"):
        config(graphs, tmp_path, time_limit=-1)


def test_resume_may_split_the_networks_of_a_step_over_other_processes(graphs, tmp_path):
    Trainer(config(graphs, tmp_path, meta_batch=2)).train(until=2)
    with pytest.raises(CheckpointError, match=r"networks per step \(meta_batch x processes\): "
                       r"checkpoint 2 x 1, now 4 x 1"):
        Trainer(config(graphs, tmp_path, meta_batch=4), resume=True)
    # what two processes with one network each would be allowed to do
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    state["world"], state["config"]["meta_batch"] = 2, 1
    torch.save(state, tmp_path / "last.pt")
    resumed = Trainer(config(graphs, tmp_path, meta_batch=2), resume=True)
    assert resumed.step == 2
    with pytest.raises(CheckpointError, match="checkpoint 1 x 2, now 1 x 1; with 1 processes "
                       "use --meta-batch 2"):
        Trainer(config(graphs, tmp_path, meta_batch=1), resume=True)


def test_a_step_draws_the_same_architectures_however_its_networks_are_split():
    for sampler in (lambda m, r, w: ArchSampler(50, m, 3, r, w),
                    lambda m, r, w: MixtureSampler([30, 20], [3, 1], m, 3, r, w)):
        for step in (0, 1, 7, 13):
            whole = sampler(8, 0, 1).indices(step)
            assert [i for r in range(8) for i in sampler(1, r, 8).indices(step)] == whole
            assert [i for r in range(2) for i in sampler(4, r, 2).indices(step)] == whole


def test_training_lowers_the_loss(graphs, tmp_path):
    trainer = Trainer(config(graphs, tmp_path, steps=40, lr=1e-3, warmup=5, meta_batch=4,
                             batch_size=32, ckpt_every=100))
    losses = [trainer.train_step()["loss"] for _ in range(40)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1


def test_mixed_precision_steps(graphs, tmp_path):
    trainer = Trainer(config(graphs, tmp_path, amp=True, bits=(8, 4), steps=3, ckpt_every=10))
    before = ghn_state(trainer)
    metrics = [trainer.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    assert metrics[-1]["nan_skips"] == 0
    after = ghn_state(trainer)
    assert all(v.dtype == torch.float32 for v in after.values())  # master weights stay float
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_non_finite_losses_are_skipped_then_abort(graphs, tmp_path, monkeypatch):
    trainer = Trainer(config(graphs, tmp_path, max_nan=3))
    original = trainer._runner

    def poisoned(idx, graph):
        runner = original(idx, graph)
        return _NaNRunner(runner)

    monkeypatch.setattr(trainer, "_runner", poisoned)
    before = ghn_state(trainer)
    for _ in range(2):
        assert trainer.train_step()["nan_skips"] in (1, 2)
    assert all(torch.equal(before[k], v) for k, v in trainer.ghn.state_dict().items())
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps.*architectures"):
        trainer.train_step()


class _NaNRunner:
    def __init__(self, runner):
        self.runner = runner

    def set_bits(self, graph):
        self.runner.set_bits(graph)
        return self

    def __call__(self, x, params):
        return self.runner(x, params) * float("nan")


def test_bits_are_drawn_per_network_or_layer(graphs):
    graph = ArchGraphDataset(graphs, "blocks", "train", size=8, progress=False)[0]
    quantizable = torch.tensor([op in ("conv", "dw_conv", "linear") for op in graph.op_names()])
    whole = draw_bits(graph, (4, 2), random.Random(0))
    assert len(set(whole.w_bits[quantizable].tolist())) == 1 and (whole.w_bits[~quantizable] == 32).all()
    mixed = draw_bits(graph, (8, 4, 2), random.Random(1), mixed=True, first_last_8bit=True)
    values = mixed.w_bits[quantizable].tolist()
    assert values[0] == values[-1] == 8 and len(set(values[1:-1])) > 1
    assert torch.equal(mixed.w_bits, mixed.a_bits) and (graph.w_bits == 32).all()
    assert (draw_bits(graph, (), random.Random(0)).w_bits == 32).all()


def test_samplers_are_step_functions_and_rank_disjoint():
    a0, a1 = ArchSampler(10, 3, seed=0, rank=0, world=2), ArchSampler(10, 3, seed=0, rank=1, world=2)
    assert a0.indices(4) == ArchSampler(10, 3, seed=0, rank=0, world=2).indices(4)
    assert not set(a0.indices(0)) & set(a1.indices(0))
    data = [(torch.full((1, 2, 2), float(i)), i) for i in range(20)]
    b0, b1 = ImageBatcher(data, 4, 0, 0, 2), ImageBatcher(data, 4, 0, 1, 2)
    assert not set(b0.batch(1)[1].tolist()) & set(b1.batch(1)[1].tolist())
    assert torch.equal(b0.batch(3)[0], ImageBatcher(data, 4, 0, 0, 2).batch(3)[0])


def test_bad_settings_fail_before_training(graphs, tmp_path):
    with pytest.raises(ValueError, match="unknown image dataset 'imagenet'"):
        config(graphs, tmp_path, data="imagenet")
    with pytest.raises(ValueError, match=r"bits: \[33\] not allowed"):
        config(graphs, tmp_path, bits=(4, 33))
    with pytest.raises(ValueError, match="unknown training settings: colour"):
        TrainConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="optimizer: 'sgd' not one of adam, adamw"):
        config(graphs, tmp_path, optimizer="sgd")
    for key in ("bias_range", "bias_slope", "norm_slope"):
        with pytest.raises(ValueError, match=f"{key} must be > 0"):
            config(graphs, tmp_path, **{key: 0.0})
    # Fashion-MNIST is 1x28x28; architectures for 3x32x32 inputs do not match it
    fake_fmnist(tmp_path, 40)
    with pytest.raises(ValueError, match=r"images are \(1, 28, 28\).*in_shape \(3, 32, 32\)"):
        Trainer(config(graphs, tmp_path, data="fashion-mnist", data_root=str(tmp_path),
                       batch_size=4, in_shape=(3, 32, 32)))
    assert not (tmp_path / "metrics.csv").exists()


def test_init_checkpoint_of_another_space_is_rejected(graphs, tmp_path):
    first = Trainer(config(graphs, tmp_path / "a", steps=1))
    first.train()
    efficient = tmp_path / "efficient-graphs"
    ArchGraphDataset(efficient, "efficient", "train", size=4, progress=False)
    with pytest.raises(CheckpointError, match="another architecture space.*space: checkpoint 'blocks'"):
        Trainer(config(efficient, tmp_path / "b", space="efficient", num_archs=4,
                       init_ckpt=str(tmp_path / "a" / "last.pt")))
    ghn = Trainer(config(graphs, tmp_path / "c", init_ckpt=str(tmp_path / "a" / "last.pt"))).ghn
    assert all(torch.equal(v, first.ghn.state_dict()[k]) for k, v in ghn.state_dict().items())
    assert first.ghn.trained_bits == (32,)
    qat = Trainer(config(graphs, tmp_path / "d", bits=(4, 2), first_last_8bit=True,
                         init_ckpt=str(tmp_path / "a" / "last.pt"))).ghn
    assert qat.trained_bits == (2, 4, 8, 32)  # the float start, this run's bits, the 8-bit ends


def test_validation_images_follow_val_seed_not_seed(graphs, tmp_path):
    def val_images(trainer):  # the training images are the rest
        return trainer._make_curve().val_images.images


    first = Trainer(config(graphs, tmp_path / "a", steps=1, seed=3, eval_archs=2))
    first.train()
    other_seed = Trainer(config(graphs, tmp_path / "b", seed=4, eval_archs=2))
    assert torch.equal(val_images(first), val_images(other_seed))
    assert not torch.equal(val_images(first),
                           val_images(Trainer(config(graphs, tmp_path / "c", val_seed=1, eval_archs=2))))
    start = str(tmp_path / "a" / "last.pt")
    with pytest.warns(UserWarning, match="images the checkpoint trained on; pass --val-seed 0"):
        Trainer(config(graphs, tmp_path / "d", val_seed=2, init_ckpt=start))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(config(graphs, tmp_path / "e", seed=5, init_ckpt=start))  # the same split
    # Runs saved before val_seed existed split the images with their seed.
    assert TrainConfig.from_saved({"seed": 3}).val_seed == 3
    assert TrainConfig.from_saved({"seed": 3, "val_seed": 0}).val_seed == 0


def test_cli_train_eval_predict(graphs, tmp_path, capsys):
    out = tmp_path / "run"
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"graphs": str(graphs), "space": "blocks", "num_archs": 8,
                                    "data": "synthetic", "meta_batch": 2, "batch_size": 16,
                                    "warmup": 1}))
    assert main(["train", "--config", str(cfg_file), "--steps", "2", "--out", str(out)]) == 0
    assert "finished: step=2" in capsys.readouterr().out
    with pytest.warns(UserWarning, match=r"trained with bits \[32\]; evaluating \[4\]"):
        assert main(["eval", "--ckpt", f"GHN={out / 'last.pt'}", "--size", "3", "--bits", "32,4",
                     "--max-images", "64", "--baselines", "he", "--sgd-epochs", "1",
                     "--max-train-images", "256", "--out", str(tmp_path / "eval")]) == 0
    text = capsys.readouterr().out
    assert "| GHN " in text and "| he " in text and "| SGD 1 ep " in text and "W4A4" in text
    rows = (tmp_path / "eval" / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2 * 3
    assert (tmp_path / "eval" / "accuracy_vs_bits.png").is_file()
    assert "protocol calibrated: BN statistics re-estimated on 20 training batches" in text
    assert "; computed on CPU (" in text and torch.__version__ in text
    with pytest.warns(UserWarning, match="trained with bits"):
        code = main(["eval", "--ckpt", str(out / "last.pt"), "--size", "3", "--max-archs", "1",
                     "--bits", "4", "--max-images", "32", "--baselines", "he", "--protocol",
                     "ghn2", "--per-tensor", "--first-last-8bit", "--out", str(tmp_path / "eval2")])
    assert code == 0
    assert "protocol ghn2: BN on each test batch's statistics" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", "--ckpt", str(out / "last.pt"), "--protocol", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err
    params_file = tmp_path / "p.pt"
    assert main(["predict", "--ckpt", str(out / "last.pt"), "--model", "torchvision:resnet18",
                 "--bits", "4", "--out", str(params_file)]) == 0
    params = torch.load(params_file, weights_only=True)
    assert params["conv1.weight"].shape == (64, 1, 7, 7) and params["fc.weight"].shape == (10, 512)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(ArchGraphDataset(graphs, "blocks", "test", size=3,
                                                progress=False).spec(0)))
    assert main(["predict", "--ckpt", str(out / "last.pt"), "--spec", str(spec),
                 "--out", str(tmp_path / "q.pt")]) == 0
    assert main(["predict", "--ckpt", str(tmp_path / "missing.pt"), "--spec", str(spec),
                 "--out", str(tmp_path / "r.pt")]) == 2
    assert main(["train", "--config", str(cfg_file), "--data", "mnist"]) == 2
    assert GHN.load(out / "last.pt").config["hid"] == 32


def test_backend_is_nccl_only_with_a_gpu_per_local_rank():
    from ghn_pyg.train.distributed import backend_for

    assert backend_for(use_cuda=True, local_world=2, gpus=2) == "nccl"
    assert backend_for(use_cuda=True, local_world=4, gpus=1) == "gloo"  # ranks share a GPU
    assert backend_for(use_cuda=False, local_world=2, gpus=0) == "gloo"


def test_ranks_beyond_the_gpus_share_them(monkeypatch):
    from ghn_pyg.train import distributed

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for local_rank in range(5):
        monkeypatch.setenv("LOCAL_RANK", str(local_rank))
        assert distributed.device_for("cuda", 0) == torch.device("cuda", local_rank % 2)
    assert chosen == [0, 1, 0, 1, 0]


def test_close_drops_the_ddp_wrapper_even_in_a_reference_cycle(graphs, tmp_path, monkeypatch):
    """The wrapper holds the process group: it must go before the group is destroyed,
    not at interpreter exit (where gloo's late destructor aborted a rank)."""
    import weakref

    from ghn_pyg.train import distributed

    class Wrapper(torch.nn.Module):  # stands in for DDP, kept alive by a cycle
        def __init__(self, module):
            super().__init__()
            self.module = module
            object.__setattr__(self, "cycle", [self])

    monkeypatch.setattr(distributed, "wrap", lambda module, device, world: Wrapper(module))
    trainer = Trainer(config(graphs, tmp_path / "run", net_threads=2))
    assert isinstance(trainer.model, Wrapper)
    wrapper = weakref.ref(trainer.model)
    trainer.close()
    assert wrapper() is None and trainer.model is trainer.ghn
    assert trainer.networks._pool is None  # the network threads are stopped
    with pytest.raises(RuntimeError, match="closed"):
        trainer.train_step()


def test_close_drops_cached_runners_without_a_full_collection(graphs, tmp_path, monkeypatch):
    """Unwrapped, closing has no DDP wrapper to free: it must not walk the whole heap
    (seconds per thousand cached runners), and the runners it no longer needs go."""
    from ghn_pyg.train import trainer as trainer_module

    trainer = Trainer(config(graphs, tmp_path / "run"))
    trainer.train_step()
    assert trainer._runners and trainer.model is trainer.ghn
    collections = []
    monkeypatch.setattr(trainer_module.gc, "collect", lambda *a: collections.append(a) or 0)
    trainer.close()
    assert trainer._runners == {} and collections == []


def test_torchrun_two_cpu_processes_stay_in_sync(graphs, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", "-m", "ghn_pyg.train", "--graphs", str(graphs), "--space", "blocks",
               "--num-archs", "8", "--data", "synthetic", "--meta-batch", "2", "--batch-size", "16",
               "--steps", "3", "--warmup", "1", "--log-every", "1", "--device", "cpu",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    finished = [line for line in result.stdout.splitlines() if line.startswith("finished")]
    assert len(finished) == 1 and "replicas_in_sync=True" in finished[0]
    loss = float(finished[0].split("loss=")[1].split(",")[0])
    assert loss == loss and loss < 100
    assert (out / "last.pt").is_file() and len((out / "metrics.csv").read_text().splitlines()) == 4
    # One process continues the run with the same 4 networks per step.
    assert main(["train", "--out", str(out), "--resume", "--steps", "4", "--meta-batch", "4",
                 "--device", "cpu"]) == 0
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 4 and state["world"] == 1 and state["config"]["meta_batch"] == 4
    # A time limit is this sitting's: the next --resume runs without it.
    assert main(["train", "--out", str(out), "--resume", "--steps", "6", "--meta-batch", "4",
                 "--device", "cpu", "--time-limit", "1e-9"]) == 0
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 5
    assert main(["train", "--out", str(out), "--resume", "--steps", "6", "--meta-batch", "4",
                 "--device", "cpu"]) == 0
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 6


def test_demo_runs_with_shipped_checkpoints(tmp_path, monkeypatch, capsys):
    import ghn_pyg.nn.ghn as ghn_module

    torch.manual_seed(0)
    for name in ("ghn-fmnist", "ghn-qat-fmnist"):
        GHN(hid=8).save(tmp_path / f"{name}.pt")
    monkeypatch.setattr(ghn_module, "PRETRAINED_DIR", tmp_path)
    fake_fmnist(tmp_path, 40)
    assert main(["demo", "--archs", "2", "--max-images", "16", "--data-root", str(tmp_path),
                 "--torchvision", "resnet18", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "2 unseen efficient test architectures" in out
    assert "the first 16 of 20 test images" in out
    assert f"computed on CPU ({torch.backends.cpu.get_cpu_capability()} kernels)" in out
    assert "protocol calibrated: BN statistics re-estimated on 4 training batches" in out
    assert "| GHN (float) " in out and "| GHN-QAT " in out and "| he " in out and "W2A2" in out
    assert "resnet18 (1x28x28, 10 classes)" in out
    assert (tmp_path / "demo" / "summary.md").is_file()
    rows = (tmp_path / "demo" / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 4 * 3  # unseen archs x bits x methods


def test_cli_train_takes_the_ghn_settings_of_its_init_checkpoint(graphs, tmp_path, capsys):
    def train(out, *flags):
        return main(["train", "--graphs", str(graphs), "--space", "blocks", "--num-archs", "8",
                     "--data", "synthetic", "--meta-batch", "2", "--batch-size", "8", "--steps",
                     "1", "--warmup", "1", "--device", "cpu", "--out", str(tmp_path / out),
                     *flags])

    assert train("float", "--hid", "16", "--message-relu", "--bias-range", "1",
                 "--norm-slope", "0.5") == 0
    start = str(tmp_path / "float" / "last.pt")
    assert train("qat", "--init-ckpt", start, "--bits", "4") == 0  # no GHN flags repeated
    saved = json.loads((tmp_path / "qat" / "config.json").read_text())
    assert (saved["hid"], saved["message_relu"], saved["bias_range"], saved["norm_slope"]) == \
        (16, True, 1.0, 0.5)
    capsys.readouterr()
    assert train("wider", "--init-ckpt", start, "--hid", "32") == 2  # a given flag still wins
    assert "checkpoint of another GHN config (hid: checkpoint 16 vs this GHN 32" in \
        capsys.readouterr().err
    assert train("nothing", "--init-ckpt", str(tmp_path / "missing.pt")) == 2
    assert "missing.pt" in capsys.readouterr().err and not (tmp_path / "nothing").exists()
