"""The example scripts run end to end."""

from __future__ import annotations

import importlib.util
import math
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
