"""The example scripts run end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ghn_pyg import trace

from .test_images import fake_fmnist, needs_fmnist

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # PyG's MessagePassing inspects its defining module
    spec.loader.exec_module(module)
    return module


def test_custom_layer_trains(capsys):
    losses = load("custom_layer").main(["--steps", "15", "--seed", "0"])
    assert len(losses) == 15 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < losses[0] - 0.3  # it learns the synthetic task
    assert "step  15" in capsys.readouterr().out


def test_custom_layer_trains_quantized():
    losses = load("custom_layer").main(["--steps", "3", "--bits", "4"])
    assert all(math.isfinite(v) for v in losses)


def test_init_study_script_is_the_cli_command(tmp_path, capsys):
    out = tmp_path / "study"
    assert load("init_study").main(["--preset", "smoke", "--data", "synthetic", "--families",
                                    "plain", "--inits", "orthogonal", "--qat-archs", "0",
                                    "--out", str(out)]) == 0
    assert "| orthogonal " in capsys.readouterr().out
    assert (out / "runs.csv").read_text().count("\n") == 1 + 4 and not (out / "qat.csv").exists()


def run_script(name: str, *args: str) -> str:
    """Run ``scripts/NAME.py`` in its own process (the benchmarks change malloc settings)."""
    result = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def table_rows(output: str) -> list[list[str]]:
    lines = [line for line in output.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_bench_ghn_prints_its_table():
    rows = table_rows(run_script("bench_ghn", "--runs", "1", "--threads", "1", "--malloc", "system"))
    assert rows[0][:3] == ["graph", "nodes", "levels"] and len(rows) == 1 + 5
    resnet50 = dict(zip(rows[0], rows[2]))
    assert resnet50["graph"] == "resnet50" and resnet50["nodes"] == "126"
    assert all(float(resnet50[k]) > 0 for k in ("gnn fwd", "predict-all", "predict-all (load)"))


def test_bench_graph_prints_build_and_its_parts():
    rows = table_rows(run_script("bench_graph", "--runs", "1", "--threads", "1", "--models",
                                 "squeezenet1_0", "resnet18", "--image-size", "64"))
    header, *values = rows
    assert header[-4:] == ["fx trace", "shape check", "model forward", "build"]
    squeezenet = dict(zip(header, values[0]))
    assert squeezenet["model"] == "squeezenet1_0" and squeezenet["nodes"] == "39"
    assert [row[0] for row in values] == ["squeezenet1_0", "resnet18"]
    assert all(float(row[i]) > 0 for row in values for i in range(-4, 0))


def test_bench_train_prints_its_table():
    rows = table_rows(run_script("bench_train", "--runs", "1", "--threads", "1"))
    header, values = rows
    assert header[0] == "step s" and float(values[0]) > 0 and values[2].endswith("%")


def test_bench_sgd_reference_projects_each_network_and_the_total():
    output = run_script("bench_sgd_reference", "--archs", "2", "--runs", "1", "--threads", "1",
                        "--train-images", "2560")
    header, *rows = table_rows(output)
    assert header == ["arch", "params", "s / step", "min (max epochs)"]
    assert [r[0] for r in rows] == ["test-00", "test-01"]
    minutes = [float(r[3]) for r in rows]
    # 20 epochs of 2560 // 256 = 10 steps: minutes = seconds per step * 200 / 60
    assert all(abs(float(r[2]) * 200 / 60 - m) < 0.06 for r, m in zip(rows, minutes))
    total = float(re.search(r"total: ([\d.]+) h for 2 networks", output).group(1))
    assert abs(total - sum(minutes) / 60) < 0.06
    bad = subprocess.run([sys.executable, str(SCRIPTS / "bench_sgd_reference.py"), "--runs", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--runs: expected a positive integer, got 0" in bad.stderr


def test_regression_reference_compare_writes_nothing(monkeypatch, capsys):
    script = load("regression_reference")
    path = script.PRETRAINED_DIR / "regression.json"
    before = path.read_bytes()
    monkeypatch.setattr(script, "load_images", lambda *args, **kwargs: None)
    monkeypatch.setattr(script, "regression_accuracy", lambda ghn, images, bits: 0.50004)
    result = script.main(["--compare"])
    assert path.read_bytes() == before
    assert result["accuracy"]["ghn-fmnist"] == {"32": 0.5, "4": 0.5}  # rounded to 4 places
    assert "ghn-qat-fmnist W4: 50.0 (stored " in capsys.readouterr().out


def test_results_script_evaluates_under_the_calibration_order_asked_for():
    script = load("results_fmnist")
    default = script.make_jobs(script.parse_args([]))
    ordered = script.make_jobs(script.parse_args(["--calib-order", "quantized-bn"]))
    assert [j.protocol.calib_order for j in default if j.protocol.name == "calibrated"] \
        == ["float-first"] * 8
    assert {j.protocol.calib_order for j in ordered if j.protocol.name == "calibrated"} \
        == {"quantized-bn"}
    assert [j.protocol for j in ordered if j.protocol.name == "ghn2"] \
        == [j.protocol for j in default if j.protocol.name == "ghn2"]
    with pytest.raises(SystemExit):
        script.parse_args(["--calib-order", "late"])


def test_results_script_torchvision_networks_all_take_fashion_mnist_inputs(capsys):
    script = load("results_fmnist")
    models = script.split_models("torchvision", {"torchvision": len(script.TORCHVISION)})
    assert [name for name, _ in models] == list(script.TORCHVISION)
    for name, module in models:  # each traces at 1x28x28 (densenet121 does not: left out)
        assert trace(module, (1, 1, 28, 28), name=name).num_nodes > 10
    with pytest.raises(SystemExit):
        script.parse_args(["--torchvision-archs", str(len(script.TORCHVISION) + 1)])
    assert "invalid choice" in capsys.readouterr().err


def test_results_script_resumes_and_writes_every_table(tmp_path):
    fake_fmnist(tmp_path, 60)
    out = tmp_path / "res"
    command = [sys.executable, str(SCRIPTS / "results_fmnist.py"), "--splits", "test,wide",
               "--archs", "2", "--ood-archs", "1", "--images", "20", "--bn-batches", "1",
               "--calib-batches", "1", "--sgd-max-epochs", "1", "--out", str(out),
               "--figures", str(out / "fig"), "--sgd-models", str(tmp_path / "models")]
    env = {"GHN_PYG_DATA": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(SCRIPTS.parent)}
    bad = subprocess.run(command + ["--shard", "2/2"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert bad.returncode == 2 and "--shard k/n needs 0 <= k < n, got '2/2'" in bad.stderr
    nothing = subprocess.run(command + ["--assemble-only"], capture_output=True, text=True,
                             env=env, timeout=600)
    assert nothing.returncode == 0 and "pairs are not cached yet" in nothing.stdout
    first = subprocess.run(command + ["--shard", "0/2"], capture_output=True, text=True,
                           env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "shard 0/2 done" in first.stdout and not (out / "tables.md").exists()
    # shard 0 owns test-00 and wide-00: the wide blocks are complete, the test ones not
    partial = subprocess.run(command + ["--assemble-only", "--partial"], capture_output=True,
                             text=True, env=env, timeout=600)
    assert partial.returncode == 0, partial.stderr[-2000:]
    tables = (out / "tables.md").read_text()
    assert ("Not yet computed (these blocks are left out): `calibrated` per-channel test, "
            "`ghn2` per-channel test, `calibrated` per-tensor test") in tables
    assert "| wide  | GHN-QAT (1)" in tables and "| test " not in tables
    bad = subprocess.run(command + ["--partial"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert bad.returncode == 2 and "--partial only applies to --assemble-only" in bad.stderr
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    tables = (out / "tables.md").read_text()
    for block in ("`calibrated`, weights per-channel", "`ghn2`, weights per-channel",
                  "`calibrated`, weights per-tensor", "per-tensor+first-last-8bit"):
        assert block in tables
    assert "| SGD (converged) (2)" in tables and "total " in done.stdout
    assert re.search(r"\| `ghn2`, per-channel +\| wide +\| GHN-QAT - GHN \(float\) \| W4A4 +\|", tables)
    assert "| test-00 |" in (out / "sgd-reference.md").read_text()
    assert len(list((out / "fig").glob("accuracy-vs-bits-*.png"))) == 5
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and (out / "tables.md").read_text() == tables  # all cached
    bad_ghn = subprocess.run(command + ["--ghn", "ghn-fmnist"], capture_output=True, text=True,
                             env=env, timeout=600)
    assert bad_ghn.returncode == 2 and "--ghn takes NAME=CKPT" in bad_ghn.stderr
    mine = subprocess.run(command + ["--ghn", "Mine=ghn-fmnist", "--no-settings"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert mine.returncode == 0, mine.stderr[-2000:]
    table = (out / "tables.md").read_text()
    assert "| test  | Mine (2)" in table and "GHN-QAT" not in table and "| he (2)" in table
    assert "## Paired differences" not in table  # one GHN: nothing to pair it with
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert (out / "tables.md").read_text() == tables  # the shipped GHNs' rows stayed cached
    calibrated = subprocess.run(command + ["--protocols", "calibrated", "--assemble-only"],
                                capture_output=True, text=True, env=env, timeout=600)
    assert calibrated.returncode == 0, calibrated.stderr[-2000:]
    table = (out / "tables.md").read_text()
    assert "`calibrated`, weights per-tensor" in table and "`ghn2`" not in table
    (out / "sgd-reference.md").unlink()
    no_sgd = subprocess.run(command + ["--no-sgd", "--no-settings", "--assemble-only"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert no_sgd.returncode == 0, no_sgd.stderr[-2000:]
    table = (out / "tables.md").read_text()
    assert "SGD" not in table and "| he (2)" in table  # no reference row, recipe or summary
    assert not (out / "sgd-reference.md").exists()
    bad = subprocess.run(command + ["--protocols", "calibrated,nope"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert bad.returncode == 2 and "--protocols takes a comma-separated subset" in bad.stderr


def test_results_script_jobs_leave_sgd_out_of_the_settings_blocks_on_request():
    script = load("results_fmnist")

    def jobs(*flags):
        return script.make_jobs(script.parse_args(["--splits", "test,wide", *flags]))

    every = jobs()
    assert [(j.split, j.protocol.name, j.setting, j.sgd) for j in every] == [
        ("test", "calibrated", "per-channel", True), ("wide", "calibrated", "per-channel", False),
        ("test", "ghn2", "per-channel", True), ("wide", "ghn2", "per-channel", False),
        ("test", "calibrated", "per-tensor", True),
        ("test", "calibrated", "per-channel+first-last-8bit", True),
        ("test", "calibrated", "per-tensor+first-last-8bit", True)]
    without = jobs("--no-settings-sgd")
    assert [j.sgd for j in without] == [True, False, True, False, False, False, False]
    assert [j.sgd for j in jobs("--no-sgd")] == [False] * 7
    assert len(jobs("--no-settings")) == 4


@needs_fmnist
def test_protocol_batches_prints_its_table():
    text = load("protocol_batches").main(["--archs", "1", "--images", "64", "--pairs", "2/1"])
    assert "| 2 / 1 " in text and "W4A4 GHN / QAT" in text


def run_qat_ab(tmp_path, out, *flags: str) -> subprocess.CompletedProcess:
    """``qat_ab.py`` at 2 steps on 4 fake training architectures, 1 validation one."""
    command = [sys.executable, str(SCRIPTS / "qat_ab.py"), "--steps", "2", "--graphs",
               str(tmp_path / "graphs"), "--num-archs", "4", "--data-root", str(tmp_path),
               "--val-archs", "1", "--images", "20", "--bn-batches", "1", "--calib-batches", "1",
               "--out", str(out), *flags]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(SCRIPTS.parent)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_qat_ab_trains_every_arm_then_writes_its_table(tmp_path):
    fake_fmnist(tmp_path, 600)
    out = tmp_path / "ab"
    bad = run_qat_ab(tmp_path, out, "--ghn2", "--arms", "old,best")
    assert bad.returncode == 2 and "unknown arms ['best']" in bad.stderr
    bad = run_qat_ab(tmp_path, out, "--arms", "old", "--first-last-8bit-arms", "nope")
    assert bad.returncode == 2 and "unknown arms ['nope']" in bad.stderr
    done = run_qat_ab(tmp_path, out, "--ghn2", "--arms", "old,all", "--first-last-8bit-arms", "all")
    assert done.returncode == 0, done.stderr[-2000:]
    table = (out / "ab.md").read_text()
    for line in ("| float GHN (start) |", "| old ", "| all ", "Δ W4A4", "`all`: `--bits 32,8,4,2"):
        assert line in table
    assert "under the `ghn2` protocol" in table and "| GHN grad median |" in table
    end_table = table.split("first and last layers at 8 bits")[1].split("Training")[0]
    assert "| all " in end_table and "| old " not in end_table and "float GHN" in end_table
    assert (out / "runs" / "all" / "last.pt").is_file() and len(list((out / "cache").glob("*.csv"))) == 8
    again = run_qat_ab(tmp_path, out, "--ghn2", "--arms", "old,all", "--first-last-8bit-arms", "all")
    assert again.returncode == 0 and "training from step" not in again.stdout
    assert (out / "ab.md").read_text().split("Command:")[0] == table.split("Command:")[0]


def test_fidelity_suite_trains_float_arms_against_its_reference_arm(tmp_path):
    fake_fmnist(tmp_path, 600)
    out = tmp_path / "fidelity"
    bad = run_qat_ab(tmp_path, out, "--suite", "ghn2-fidelity", "--arms", "message-relu")
    assert bad.returncode == 2 and "needs its reference arm 'library'" in bad.stderr
    done = run_qat_ab(tmp_path, out, "--suite", "ghn2-fidelity", "--arms", "library,message-relu")
    assert done.returncode == 0, done.stderr[-2000:]
    table = (out / "ab.md").read_text()
    assert "difference to `library`" in table and "float GHN (start)" not in table
    assert "| message-relu " in table and "`message-relu`: `--message-relu`" in table
    saved = torch.load(out / "runs" / "message-relu" / "last.pt", weights_only=True)
    assert saved["config"]["message_relu"] and saved["config"]["init_ckpt"] is None
    assert saved["config"]["bits"] == []


@pytest.mark.parametrize("suite, arm, flags, key, values, val_seed", [
    ("train-bn", "calibrated", "--train-bn calibrated", "train_bn", ["batch", "calibrated"], 0),
    ("act-noise", "act-noise-3", "--act-noise 3", "act_noise", [0.0, 3.0], 3)])
def test_suites_against_batch_start_both_arms_from_the_float_ghn(tmp_path, suite, arm, flags,
                                                                  key, values, val_seed):
    fake_fmnist(tmp_path, 600)
    out = tmp_path / suite
    bad = run_qat_ab(tmp_path, out, "--suite", suite, "--arms", arm)
    assert bad.returncode == 2 and "needs its reference arm 'batch'" in bad.stderr
    done = run_qat_ab(tmp_path, out, "--suite", suite, "--arms", f"batch,{arm}")
    assert done.returncode == 0, done.stderr[-2000:]
    table = (out / "ab.md").read_text()
    assert "difference to `batch`" in table and "| float GHN (start) |" in table
    assert f"| {arm} " in table and f"`{arm}`: `{flags}`" in table
    assert f"(val seed {val_seed})" in table
    saved = {a: torch.load(out / "runs" / a / "last.pt", weights_only=True)["config"]
             for a in ("batch", arm)}
    assert [saved[a][key] for a in ("batch", arm)] == values
    assert all(c["init_ckpt"] and c["range_images"] == 128 and c["lr"] == 3e-5
               and c["val_seed"] == val_seed for c in saved.values())


def test_mixture_suite_trains_on_its_roots_and_judges_on_both_spaces(tmp_path):
    from ghn_pyg.data import ArchGraphDataset

    fake_fmnist(tmp_path, 600)
    roots = [tmp_path / "cells", tmp_path / "families"]
    for space, root in zip(("cells", "families"), roots):
        ArchGraphDataset(root, space=space, split="train", size=3, progress=False)
    out = tmp_path / "mixture"
    flags = ["--suite", "mixture", "--bits", "32,4", "--mixture-roots"]
    bad = run_qat_ab(tmp_path, out, *flags, str(roots[0]), "--arms", "base")
    assert bad.returncode == 2 and "--mixture-roots takes CELLS,FAMILIES" in bad.stderr
    done = run_qat_ab(tmp_path, out, *flags, f"{roots[0]},{roots[1]}", "--arms", "base,families")
    assert done.returncode == 0, done.stderr[-2000:]
    table = (out / "ab.md").read_text()
    assert "difference to `base`" in table and "(val seed 3)" in table
    assert "validation architectures of the `families` space" in table
    assert "| W4A4 " in table and "W8A8" not in table.split("Training")[0]
    assert f"`families`: `--mix-graphs {roots[0]},{roots[1]} --mix-weights 6,1,3`" in table
    saved = torch.load(out / "runs" / "families" / "last.pt", weights_only=True)["config"]
    assert saved["mix_graphs"] == [str(roots[0]), str(roots[1])]
    assert saved["mix_weights"] == [6.0, 1.0, 3.0] and saved["lr"] == 1e-4
    with open(out / "ab.csv", newline="") as f:
        archs = {row["arch"] for row in csv.DictReader(f)}
    assert archs == {"val-00", "families-val-00"}


def test_probe_gradients_prints_per_layer_and_summary(tmp_path, capsys):
    fake_fmnist(tmp_path, 100)
    args = ["--graphs", str(tmp_path / "graphs"), "--num-archs", "2", "--bits", "8,2",
            "--images", "16", "--data-root", str(tmp_path)]
    load("probe_gradients").main(args + ["--archs", "1", "--guard"])
    out = capsys.readouterr().out
    assert "| layer " in out and "| BN collapsed |" in out and "at 2 bits: loss" in out
    load("probe_gradients").main(args + ["--archs", "0-1", "--summary"])
    summary = capsys.readouterr().out
    assert "| layer " not in summary and summary.count("| efficient-") == 4


def test_bench_train_efficient_workload_times_real_steps(tmp_path):
    output = run_script("bench_train", "--workload", "efficient", "--graphs", str(tmp_path / "g"),
                        "--num-archs", "8", "--runs", "1", "--warmup", "0", "--threads", "1")
    assert "building 8 efficient architectures" in output
    assert re.search(r"median \d+\.\d+ s per step over 1 steps, \d+ images/s", output)


def test_bench_train_efficient_times_ddp_ranks(tmp_path):
    graphs = ["--workload", "efficient", "--graphs", str(tmp_path / "g"), "--num-archs", "4",
              "--runs", "1", "--warmup", "1", "--threads", "1"]
    output = run_script("bench_train", *graphs, "--ranks", "2", "--rank-meta-batch", "1")
    assert re.search(r"2 ranks x 1 architectures: median \d+\.\d+ s per step over 1 steps",
                     output)
    bad = subprocess.run([sys.executable, str(SCRIPTS / "bench_train.py"), *graphs, "--ranks", "3"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "--ranks must divide the meta-batch 8, got 3" in bad.stderr


def test_bench_runner_memory_prints_kept_and_released(tmp_path):
    from ghn_pyg.data import ArchGraphDataset

    ArchGraphDataset(tmp_path / "g", "efficient", "train", size=3, progress=False)
    rows = table_rows(run_script("bench_runner_memory", "--graphs", str(tmp_path / "g"),
                                 "--count", "3"))
    assert rows[0] == ["dataset", "with parameters", "released"] and len(rows) == 2
    assert all(float(cell) == float(cell) for cell in rows[1][1:])  # numbers, not NaN


def test_bench_onnx_prints_sizes_and_latencies():
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    rows = table_rows(run_script("bench_onnx", "--runs", "1", "--threads", "1",
                                 "--networks", "efficient test-00"))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["network", "model", "file (KiB)"] and len(body) == 6
    sizes = {row[1]: float(row[2]) for row in body}
    assert sizes["W8A8 (this project)"] < sizes["float"] / 2  # integer weights
    assert sizes["W4A4 int4 (this project)"] < sizes["W8A8 (this project)"]
    assert all(float(row[3]) > 0 and float(row[5]) > 0 for row in body)


@needs_fmnist
def test_onnx_check_compares_runtime_and_runner(tmp_path):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    run_script("onnx_check", "--networks", "efficient test-00", "--test-images", "200",
               "--qat-epochs", "0", "--out", str(tmp_path))
    rows = table_rows((tmp_path / "onnx-check-w8.md").read_text())
    header, body = rows[0], rows[1:]
    assert len(body) == 1 and body[0][:2] == ["efficient test-00", "GHN-QAT"]
    row = dict(zip(header, body[0]))
    assert float(row["same top-1, ORT optimizations off (%)"]) >= 99.0
    assert float(row["same top-1 (%)"]) >= 95.0


def test_bench_step_parts_prints_its_tables(tmp_path):
    output = run_script("bench_step_parts", "--parts", "networks,runner,variance", "--runs", "1",
                        "--graphs", str(tmp_path / "g"), "--num-archs", "64")
    rows = table_rows(output)
    assert rows[0][0] == "8 networks, 64 images" and len(rows) == 3 + 4 + 5
    runner = {r[0]: float(r[1]) for r in rows[3:7] if r[0] != "runner of one unseen architecture"}
    assert all(ms > 0 for ms in runner.values()) and len(runner) == 3
    bad = subprocess.run([sys.executable, str(SCRIPTS / "bench_step_parts.py"), "--parts", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown parts" in bad.stderr


def test_gpu_campaign_continues_a_run_split_over_ranks(graphs, tmp_path):
    from ghn_pyg.cli import main

    run, out = tmp_path / "run", tmp_path / "out"
    assert main(["train", "--graphs", str(graphs), "--space", "blocks", "--num-archs", "8",
                 "--data", "synthetic", "--meta-batch", "2", "--batch-size", "16", "--steps",
                 "50", "--warmup", "1", "--device", "cpu", "--out", str(run), "--time-limit",
                 "1e-9"]) == 0
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DEVICE": "cpu",
           "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(SCRIPTS / "gpu_campaign.sh"), str(out), "0.001", "2",
                           str(run)], cwd=SCRIPTS.parent, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log = (out / "train.log").read_text()
    assert "resuming" in log and "at meta-batch 1 x 2 ranks" in log and "step 2" in log
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 2 and state["world"] == 2 and state["config"]["meta_batch"] == 1
    assert (out / "metrics.csv").read_text().splitlines()[-1].startswith("2,")
    bad = subprocess.run(["bash", str(SCRIPTS / "gpu_campaign.sh"), str(out), "1", "3", str(run)],
                         cwd=SCRIPTS.parent, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "do not split over 3 ranks" in bad.stderr


def test_runner_cache_hits_compares_the_policies():
    hits = load("runner_cache_hits")
    cyclic = [[0, 1], [2, 3], [0, 1], [2, 3]]  # a set of 4 drawn in turn, 2 kept
    assert hits.hit_rates(cyclic, 2, 0) == (0.25, 0.0)  # LRU evicts each before its reuse
    assert hits.hit_rates(cyclic, 2, 2) == (0.5, 0.0)
    rows = table_rows(run_script("runner_cache_hits", "--sizes", "50,20", "--weights", "3,1",
                                 "--cache", "10", "70", "--steps", "60", "--from", "20"))
    assert rows[0] == ["runners kept", "first N kept (trainer)", "least recently used"]
    assert rows[2][1:] == ["100%", "100%"] and int(rows[1][1][:-1]) > int(rows[1][2][:-1])


def test_curve_point_evaluates_a_checkpoint_like_the_training_curve(capsys):
    script = load("curve_point")
    point = script.main(["ghn-fmnist", "--data", "synthetic", "--archs", "1", "--images", "20",
                         "--bits", "32,4"])
    assert list(point) == ["val_acc_32bit", "val_acc_4bit"]
    assert all(0 <= v <= 100 for v in point.values()) and '"val_acc_4bit"' in capsys.readouterr().out
    from ghn_pyg.nn import CheckpointError
    with pytest.raises(CheckpointError):
        script.main(["no-such-ghn.pt", "--data", "synthetic", "--archs", "1", "--images", "20"])


def test_curve_point_takes_the_tables_protocol(monkeypatch):
    script = load("curve_point")
    seen = []
    original = script.LearningCurve.__init__

    def spy(self, *args, protocol=None, **kwargs):
        seen.append(protocol)
        original(self, *args, protocol=protocol, **kwargs)

    monkeypatch.setattr(script.LearningCurve, "__init__", spy)
    script.main(["ghn-fmnist", "--data", "synthetic", "--archs", "1", "--images", "20", "--bits",
                 "4", "--bn-batches", "3", "--calib-batches", "2", "--calib-method", "percentile"])
    assert (seen[0].bn_batches, seen[0].calib_batches, seen[0].calib_method) == (3, 2, "percentile")
    script.main(["ghn-fmnist", "--data", "synthetic", "--archs", "1", "--images", "20", "--bits", "4"])
    assert seen[1] == script.CURVE_PROTOCOL
    script.main(["ghn-fmnist", "--data", "synthetic", "--archs", "1", "--images", "20", "--bits",
                 "4", "--calib-order", "quantized-bn", "--bn-after-calib"])
    assert seen[2] == script.CURVE_PROTOCOL.replace(calib_order="quantized-bn", bn_after_calib=True)
    script.main(["ghn-fmnist", "--data", "synthetic", "--archs", "1", "--images", "20", "--bits",
                 "4", "--protocol", "ghn2"])
    assert seen[3].name == "ghn2"
    script.main(["ghn-fmnist", "--data", "synthetic", "--archs", "1", "--images", "20", "--bits",
                 "4", "--calib-order", "quantized-bn"])
    assert seen[4] == script.CURVE_PROTOCOL.replace(calib_order="quantized-bn")
    assert script.CURVE_PROTOCOL.calib_order == "float-first"
    with pytest.raises(ValueError, match="drop bn_after_calib"):
        script.main(["ghn-fmnist", "--data", "synthetic", "--bn-after-calib"])
    with pytest.raises(SystemExit):
        script.main(["ghn-fmnist", "--data", "synthetic", "--calib-order", "late"])
    with pytest.raises(ValueError, match="calib_batches must be >= 1"):
        script.main(["ghn-fmnist", "--data", "synthetic", "--calib-batches", "0"])
    with pytest.raises(SystemExit):
        script.main(["ghn-fmnist", "--data", "synthetic", "--calib-method", "median"])
    with pytest.raises(SystemExit):
        script.main(["ghn-fmnist", "--data", "synthetic", "--protocol", "fast"])


def test_export_ghn_records_every_training_phase(graphs, tmp_path):
    from ghn_pyg.cli import main
    from ghn_pyg.nn import GHN, CheckpointError

    def train(out, *extra):
        assert main(["train", "--graphs", str(graphs), "--space", "blocks", "--num-archs", "8",
                     "--data", "synthetic", "--meta-batch", "2", "--batch-size", "8", "--steps",
                     "2", "--warmup", "1", "--device", "cpu", "--out", str(out), *extra]) == 0

    train(tmp_path / "float")
    train(tmp_path / "qat", "--init-ckpt", str(tmp_path / "float" / "last.pt"), "--bits", "4")
    export = load("export_ghn")
    recipe = export.main([str(tmp_path / "qat" / "last.pt"), str(tmp_path / "ghn-qat")])
    saved = json.loads((tmp_path / "ghn-qat.json").read_text())
    assert saved == recipe and saved["steps_trained"] == 2
    assert saved["training_settings"]["bits"] == [4] and saved["last_logged_metrics"]["step"] == "2"
    parent = saved["initialized_from"]
    assert parent["training_settings"]["bits"] == [] and parent["steps_trained"] == 2
    assert "initialized_from" not in parent
    assert isinstance(GHN.load_any(tmp_path / "ghn-qat.pt"), GHN)

    # a run started from an exported GHN records the recipe exported beside it
    export.main([str(tmp_path / "float" / "last.pt"), str(tmp_path / "ghn-float")])
    train(tmp_path / "qat2", "--init-ckpt", str(tmp_path / "ghn-float.pt"), "--bits", "2")
    recipe = export.training_recipe(tmp_path / "qat2" / "last.pt")
    shipped = recipe["initialized_from"]
    assert shipped["checkpoint"] == str(tmp_path / "ghn-float.pt")
    assert shipped["exported_from"] == str(tmp_path / "float" / "last.pt")
    assert shipped["training_settings"]["bits"] == [] and shipped["steps_trained"] == 2
    (tmp_path / "ghn-float.json").unlink()
    with pytest.warns(UserWarning, match="no recipe beside it"):
        recipe = export.training_recipe(tmp_path / "qat2" / "last.pt")
    assert recipe["initialized_from"] == {"checkpoint": str(tmp_path / "ghn-float.pt"),
                                          "missing": True}

    (tmp_path / "float" / "last.pt").unlink()  # the float phase's state is gone
    with pytest.warns(UserWarning, match="which is gone"):
        recipe = export.training_recipe(tmp_path / "qat" / "last.pt")
    assert recipe["initialized_from"]["missing"] is True
    with pytest.raises(CheckpointError):
        export.main([str(tmp_path / "float" / "last.pt"), str(tmp_path / "nothing")])
    assert not (tmp_path / "nothing.json").exists()


def test_quant_error_sources_agrees_with_the_evaluation_and_splits_the_4bit_loss(tmp_path):
    script = load("quant_error_sources")
    flags = ["--data", "synthetic", "--archs", "2", "--images", "40", "--bn-batches", "1",
             "--calib-batches", "1", "--out", str(tmp_path)]
    results = script.main(["--ghn", "ghn-fmnist", *flags])
    table = results["ghn-fmnist"]
    assert list(table) == list(script.COLUMNS) and all(len(v) == 2 for v in table.values())
    from ghn_pyg.data import load_images
    from ghn_pyg.nn import GHN
    from ghn_pyg.train.evaluate import evaluate_split
    from ghn_pyg.train.protocol import EvalProtocol
    archs = script.ModuleArchs([(f"val-{i:02d}", script.get_space("efficient").build(s, 1, 10))
                                for i, s in enumerate(script.sample_specs(
                                    script.get_space("efficient"), "val", 2, 0))], (1, 28, 28))
    images, train = (load_images("synthetic", split, seed=3) for split in ("val", "train"))
    for method, order, column in (("minmax", "quantized-bn", "W4A4"),
                                  ("mse", "quantized-bn", "W4A4 mse"),
                                  ("minmax", "float-first", "W4A4 float-first")):
        rows = evaluate_split(archs, images, {"ghn": GHN.load_any("ghn-fmnist")}, (32, 4), (),
                              max_images=40, train_images=train, progress=False,
                              protocol=EvalProtocol("calibrated", 1, 1, method, calib_order=order))
        assert [r.accuracy for r in rows if r.bits == 4] == pytest.approx(table[column])
        assert [r.accuracy for r in rows if r.bits == 32] == pytest.approx(table["FP32"])
    written = list(csv.reader(open(tmp_path / "sources.csv")))
    assert written[0] == ["ghn", "arch", "column", "accuracy"] and len(written) == 1 + 2 * 9
    text = (tmp_path / "sources.md").read_text()
    assert "| W4 only" in text and "Loss to FP32" in text
    # layer by layer: all layers' activations at 4 bits is the A4-only column
    setup = script.EvalSetup.create(images, train, EvalProtocol("calibrated", 1, 1,
                                                                calib_order="quantized-bn"), 40)
    steps = script.cumulative_activation_accuracies(GHN.load_any("ghn-fmnist"), archs, 1, setup)
    from ghn_pyg.quant import quantize
    assert [layer for layer, _ in steps] == ["(none)", *quantize(
        archs.build_module(1), None, (1, 1, 28, 28)).layers]
    assert steps[-1][1] == pytest.approx(table["A4 only"][1])
    (tmp_path / "sources.md").unlink()
    assert script.main(["--ghn", "ghn-fmnist", *flags, "--cumulative", "1", "--cumulative", "0",
                        "--cumulative-only"]) == {}
    assert not (tmp_path / "sources.md").exists()  # the table of sources was skipped
    text = (tmp_path / "cumulative-val-01.md").read_text()
    assert "| k " in text and "(none)" in text and "- ghn-fmnist:" in text
    assert (tmp_path / "cumulative-val-00.md").exists()
    report = script.cumulative_report("a", {"g": [("(none)", .9), ("x", .8), ("y", .3)]}, "p")
    assert "- g: 50.0 points at k = 2 (`y`); 60.0 in all" in report
    with pytest.raises(SystemExit):
        script.main([*flags, "--cumulative", "2"])  # only architectures 0 and 1
    with pytest.raises(SystemExit):
        script.main([*flags, "--cumulative-only"])  # nothing to run
    with pytest.raises(SystemExit):
        script.main([*flags, "--archs", "0"])
    from ghn_pyg.nn import CheckpointError
    with pytest.raises(CheckpointError):
        script.main(["--ghn", "no-such-ghn.pt", *flags])


def test_qat_ab_evaluates_in_the_calibration_order_asked_for_and_caches_it_apart(tmp_path,
                                                                                 monkeypatch):
    import argparse

    from ghn_pyg.nn import GHN
    from ghn_pyg.train.results import EvalRow
    script = load("qat_ab")
    seen = []

    def fake_split(archs, images, ghns, bits, baselines, protocol, **kwargs):
        seen.append(protocol)
        return [EvalRow("val-00", name, b, 0.5) for name in ghns for b in bits]

    monkeypatch.setattr(script, "evaluate_split", fake_split)
    ghn = GHN.load_any("ghn-fmnist")
    for order in ("float-first", "quantized-bn", "float-first"):
        args = argparse.Namespace(bn_batches=4, calib_batches=2, calib_order=order, val_archs=1,
                                  images=10, out=tmp_path, device="cpu", bits=script.BITS)
        script.evaluate("arm", ghn, args, [], None, None)
    assert [p.calib_order for p in seen] == ["float-first", "quantized-bn"]  # third: cached
    args.bits = (32, 4)  # other bit-widths are another cache key, not the cached rows
    assert sorted({r.bits for r in script.evaluate("arm", ghn, args, [], None, None)}) == [4, 32]
    assert len(seen) == 3
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == \
        ["arm-calibrated-floatfirst.csv", "arm-calibrated.csv"]
    assert script.parse_args([]).calib_order == "float-first"
    with pytest.raises(SystemExit):
        script.parse_args(["--calib-order", "late"])
    assert script.parse_args(["--bits", "32,4"]).bits == (32, 4)
    for bad in ("32,1", "4,x"):
        with pytest.raises(SystemExit):
            script.parse_args(["--bits", bad])


def test_calib_order_check_agrees_between_orders_on_a_network_without_batch_norm(
        tmp_path, monkeypatch, capsys):
    fake_fmnist(tmp_path, 60)
    monkeypatch.syspath_prepend(str(SCRIPTS))
    script = load("calib_order_check")
    text = script.main(["--split", "nobn", "--archs", "0", "--images", "20", "--bn-batches",
                        "1", "--calib-batches", "1", "--data-root", str(tmp_path)])
    header, row = table_rows(text)
    assert header == ["network", "quantized-bn", "float-first"] and row[0] == "nobn-00"
    assert row[1] == row[2]  # no BN: both orders are the same computation
    assert "20 test images" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.parse_args(["--archs", "-1"])
    with pytest.raises(SystemExit):
        script.parse_args(["--orders", "late"])


def test_probe_features_sets_each_network_beside_its_linear_probe(tmp_path, monkeypatch, capsys):
    fake_fmnist(tmp_path, 400)
    monkeypatch.syspath_prepend(str(SCRIPTS))
    script = load("probe_features")
    out = tmp_path / "probe" / "efficient-val.md"
    text = script.main(["--split", "efficient:val", "--archs", "1", "--bits", "32,4",
                        "--images", "30", "--probe-images", "64", "--bn-batches", "1",
                        "--calib-batches", "1", "--data-root", str(tmp_path), "--out", str(out)])
    assert out.read_text() == text and "efficient-val-00 ghn-fmnist 4-bit" in capsys.readouterr().out
    summary, rows = [table_rows(part) for part in text.split("\n\n| network")]  # rows: no header
    assert [r[:3] for r in summary[1:]] == [["ghn-fmnist", "32", "1"], ["ghn-fmnist", "4", "1"],
                                           ["he_normal", "32", "1"], ["he_normal", "4", "1"]]
    assert len(rows) == 4 and {r[0] for r in rows} == {"efficient-val-00"}
    for row in rows:  # network, probe and their difference are consistent percentages
        network, probe, gap = float(row[3]), float(row[4]), float(row[5])
        assert 0 <= network <= 100 and 0 <= probe <= 100 and abs(probe - network - gap) < 0.11
    for bad, message in ((["--split", "efficient:holdout"], "has splits"),
                         (["--split", "imagenet"], "SPACE:SPLIT"),
                         (["--split", "nowhere:val"], "unknown architecture space"),
                         (["--bits", "3,1"], "--bits takes"),
                         (["--inits", "zeros"], "--inits: unknown zeros"),
                         (["--images", "0"], "must be >= 1")):
        with pytest.raises(SystemExit) as exit_info:
            script.parse_args(bad)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_compare_results_pairs_methods_within_and_across_tables(tmp_path, capsys):
    from ghn_pyg.train.results import ResultRow, write_tables

    def rows(shift: float) -> list:  # the GHNs' accuracies moved by shift, not he's
        return [ResultRow("calibrated", "per-channel", "test", arch, method, 4,
                          accuracy + (shift if method != "he" else 0.0))
                for arch, method, accuracy in (("a", "GHN", 0.50), ("b", "GHN", 0.60),
                                               ("a", "GHN-QAT", 0.55), ("b", "GHN-QAT", 0.58),
                                               ("a", "he", 0.10), ("b", "he", 0.10))]

    def cells(text: str) -> list[list[str]]:  # difference, bits, mean ± s.e., min, median, max
        return [[c.strip() for c in line.strip("|").split("|")][2:]
                for line in text.splitlines()[2:]]

    new = write_tables(rows(0.0), tmp_path / "new")["csv"]
    old = write_tables([r for r in rows(-0.1) if r.arch == "a" or r.method == "he"],
                       tmp_path / "old")["csv"]
    script = load("compare_results")
    out = tmp_path / "cmp.md"
    assert script.main([str(new), "--pair", "GHN-QAT:GHN", "--out", str(out)]) == 0
    printed = capsys.readouterr().out  # deltas +5 and -2
    assert cells(printed) == [["GHN-QAT - GHN", "W4A4", "+1.5 ± 3.5 (1/2)", "-2.0", "+1.5", "+5.0"]]
    assert out.read_text() == printed
    assert script.main([str(new), "--against", f"v1={old}"]) == 0
    # old has GHN and GHN-QAT on a only, 10 points lower: +10 on one architecture
    assert [row[:3] for row in cells(capsys.readouterr().out)] == [
        ["GHN - GHN (v1)", "W4A4", "+10.0 ± 0.0 (1/1)"],
        ["GHN-QAT - GHN-QAT (v1)", "W4A4", "+10.0 ± 0.0 (1/1)"],
        ["he - he (v1)", "W4A4", "+0.0 ± 0.0 (0/2)"]]
    assert script.main([str(new), "--against", f"v1={old}", "--methods", "GHN"]) == 0
    assert [row[0] for row in cells(capsys.readouterr().out)] == ["GHN - GHN (v1)"]
    assert script.main([str(new)]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert script.main([str(new), "--pair", "SGD:GHN"]) == 2
    assert "no result rows for method(s) 'SGD'" in capsys.readouterr().err
    assert script.main([str(tmp_path / "none.csv"), "--pair", "GHN-QAT:GHN"]) == 2
    assert "none.csv" in capsys.readouterr().err
    for bad in (["--pair", "GHN"], ["--against", "v1"]):
        with pytest.raises(SystemExit):
            script.main([str(new), *bad])
        assert "takes" in capsys.readouterr().err
