"""The example scripts run end to end."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

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


def test_bench_train_prints_its_table():
    rows = table_rows(run_script("bench_train", "--runs", "1", "--threads", "1"))
    header, values = rows
    assert header[0] == "step s" and float(values[0]) > 0 and values[2].endswith("%")


def test_regression_reference_compare_writes_nothing(monkeypatch, capsys):
    script = load("regression_reference")
    path = script.PRETRAINED_DIR / "regression.json"
    before = path.read_bytes()
    monkeypatch.setattr(script, "load_images", lambda *args, **kwargs: None)
    monkeypatch.setattr(script, "regression_accuracy", lambda ghn, images, bits: 0.5)
    result = script.main(["--compare"])
    assert path.read_bytes() == before
    assert result["accuracy"]["ghn-fmnist"] == {"32": 0.5, "4": 0.5}
    assert "ghn-qat-fmnist W4: 50.0 (stored " in capsys.readouterr().out
