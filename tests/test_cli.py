"""The ghn-pyg command line."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from ghn_pyg import cli
from ghn_pyg.cli import main


def test_graph_to_dot_and_png(tmp_path, capsys):
    dot = tmp_path / "resnet18.dot"
    assert main(["graph", "torchvision:resnet18", "--out", str(dot), "--w-bits", "4",
                 "--a-bits", "4", "--first-last-8bit"]) == 0
    text = dot.read_text()
    assert text.startswith('digraph "resnet18"') and text.count("->") == 59
    assert "W4A4" in text and "W8A8" in text
    png = tmp_path / "squeeze.png"
    assert main(["graph", "torchvision:squeezenet1_0", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "39 nodes" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet18.dot", "squeeze.png"]


def test_graph_from_a_factory(tmp_path):
    out = tmp_path / "m.dot"
    assert main(["graph", "torchvision.models:mobilenet_v3_small", "--out", str(out),
                 "--num-classes", "10"]) == 0
    assert "linear" in out.read_text()


@pytest.mark.parametrize("argv, message", [
    (["graph", "resnet18", "--out", "x.dot"], "must look like"),
    (["graph", "torchvision:nonet", "--out", "x.dot"], "unknown torchvision model"),
    (["graph", "no.such.module:f", "--out", "x.dot"], "cannot load model factory"),
    (["graph", "torchvision:resnet18", "--out", "x.jpg"], "use .dot, .png"),
    (["graph", "torchvision:resnet18", "--out", "x.dot", "--w-bits", "9"], "invalid bit-width"),
    (["graph", "torchvision:alexnet", "--out", "x.dot", "--input-shape", "1,3,16,16"],
     r"rejected an input of shape \(1, 3, 16, 16\)"),
])
def test_bad_input_exits_2_with_a_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_zoo_prints_a_table(capsys):
    assert main(["zoo", "--models", "resnet18", "squeezenet1_0"]) == 0
    out = capsys.readouterr().out
    assert "| resnet18 " in out and "| 62/62 " in out and "| squeezenet1_0 " in out
    assert main(["zoo", "--models", "not_a_net", "resnet18"]) == 1  # reported, others go on
    out = capsys.readouterr().out
    assert "| resnet18 " in out and "1 model(s) could not be traced" in out
    assert "| not_a_net | ValueError: unknown torchvision model 'not_a_net'" in out


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "ghn_pyg.cli", "--help"],
                            capture_output=True, text=True, check=True)
    assert "graph" in result.stdout and "zoo" in result.stdout


def test_make_dataset_from_recipe_and_options(tmp_path, capsys):
    import json

    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"space": "blocks", "root": str(tmp_path / "ds"),
                                  "in_shape": [1, 28, 28], "num_classes": 10,
                                  "splits": {"train": 6, "val": 3}}))
    assert main(["make-dataset", "--recipe", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "blocks/train: 6 graphs" in out and "blocks/val: 3 graphs" in out
    assert main(["make-dataset", "--recipe", str(recipe), "--split", "test", "--size", "2"]) == 0
    assert (tmp_path / "ds" / "test" / "meta.json").is_file()
    assert main(["make-dataset", "--split", "train", "--size", "2"]) == 2
    assert "give --root" in capsys.readouterr().err
    assert main(["make-dataset", "--recipe", str(tmp_path / "missing.json")]) == 2
    assert main(["make-dataset", "--recipe", str(recipe), "--split", "train", "--size", "7"]) == 2
    assert "other settings" in capsys.readouterr().err
    misspelt = tmp_path / "m.json"
    misspelt.write_text(json.dumps({"space": "blocks", "root": str(tmp_path / "m"),
                                    "split": {"train": 2}}))
    assert main(["make-dataset", "--recipe", str(misspelt)]) == 2
    assert "unknown keys ['split']" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GHN_PYG_DEBUG", raising=False)
    missing = ["make-dataset", "--recipe", str(tmp_path / "missing.json")]
    assert main(missing) == 2
    quiet = capsys.readouterr().err
    assert "error:" in quiet and "Traceback" not in quiet
    assert main(["--debug", *missing]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("GHN_PYG_DEBUG", "1")
    assert main(missing) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_eval_and_demo_take_the_calibration_order():
    from ghn_pyg.cli import build_parser
    from ghn_pyg.commands.arguments import protocol_from_args
    parser = build_parser()
    plain = protocol_from_args(parser.parse_args(["eval", "--ckpt", "ghn-fmnist"]))
    assert plain.calib_order == "float-first"  # the default
    ordered = protocol_from_args(parser.parse_args(["demo", "--calib-order", "quantized-bn"]))
    assert ordered.calib_order == "quantized-bn" and ordered.bn_batches == 4  # the demo's
    assert protocol_from_args(parser.parse_args(["demo"])).calib_order == "float-first"
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--ckpt", "ghn-fmnist", "--calib-order", "late"])


def test_console_script_exits_with_the_status_and_skips_the_last_collection(monkeypatch):
    """``run`` (the ``ghn-pyg`` script) exits with main's status after freezing the heap,
    so that interpreter exit does not walk a long run's cached runners."""
    monkeypatch.setattr(cli, "main", lambda: 3)
    try:
        with pytest.raises(SystemExit) as exited:
            cli.run()
        assert exited.value.code == 3 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_two_part_splits_flag_values_and_names_the_flag_on_bad_ones():
    import argparse

    from ghn_pyg.commands.arguments import two_part

    assert two_part("GHN=runs/a=b.pt", "--ghn", "NAME=CKPT", "G=x.pt") == ("GHN", "runs/a=b.pt")
    # rightmost: the method name may hold the separator, the baseline not
    assert two_part("A:B:C", "--pair", "M:B", "x:y", sep=":", rightmost=True) == ("A:B", "C")
    for bad in ("GHN", "=x.pt", "GHN="):
        with pytest.raises(argparse.ArgumentTypeError,
                           match=f"--ghn takes NAME=CKPT, e.g. 'G=x.pt', got '{bad}'"):
            two_part(bad, "--ghn", "NAME=CKPT", "G=x.pt")
