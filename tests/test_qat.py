"""QAT from a chosen starting point: the API, the study part, the CLI and bad input."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from ghn_pyg.cli import main
from ghn_pyg.data import load_images
from ghn_pyg.data.archgraph_dataset import sample_specs
from ghn_pyg.spaces import get_space
from ghn_pyg.inits import load_params
from ghn_pyg.study.qat import QATHistory, initial_params, qat_train, rescale_before_batch_norm
from ghn_pyg.study.qat_study import (epochs_to_reference, qat_differences, qat_table,
                                     run_qat_study)


@pytest.fixture(scope="module")
def images():
    train = load_images("synthetic", "train", synthetic_shape=(1, 28, 28))
    test = load_images("synthetic", "test", synthetic_shape=(1, 28, 28))
    return (torch.utils.data.Subset(train, range(512)), torch.utils.data.Subset(test, range(256)))


def small_net():
    space = get_space("blocks")
    return space.build(space.make_spec("plain", 1, 8), 1, 10)


def test_qat_trains_the_quantized_network_and_records_epochs(images):
    train, test = images
    module = small_net()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    model, history = qat_train(module, "he", train, test, bits=4, epochs=3, batch_size=64, lr=0.1,
                               progress=False)
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())  # untouched
    assert len(history.accuracy) == 4 and history.final_running_bn is not None
    assert history.accuracy[-1] > history.accuracy[0] + 0.2  # synthetic classes are learnable
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))  # QAT tracked BN
    start = initial_params("he", module, (1, 28, 28), seed=0)
    assert all(not torch.equal(p, start[n]) for n, p in model.named_parameters() if p.dim() > 1)


def test_ghn_starts_condition_on_the_bits():
    module = get_space("efficient").build(get_space("efficient").sample(__import__("random").Random(0)),
                                          1, 10)
    w4 = initial_params("ghn-qat", module, (1, 28, 28), bits=4)
    w2 = initial_params("ghn-qat", module, (1, 28, 28), bits=2)
    assert set(w4) == {n for n, _ in module.named_parameters()}
    assert any(not torch.equal(w4[k], w2[k]) for k in w4)
    float_ghn = [initial_params("ghn", module, (1, 28, 28), bits=b) for b in (4, 2)]
    assert all(torch.equal(float_ghn[0][k], float_ghn[1][k]) for k in w4)  # trained on 32 only


def test_he_scaled_ghn_start_keeps_the_function_and_rescales_only_weights_feeding_bn():
    space = get_space("efficient")
    module = space.build(space.sample(__import__("random").Random(0)), 1, 10)
    ghn_qat = initial_params("ghn-qat", module, (1, 28, 28), bits=4)
    scaled = initial_params("ghn-qat-he-scale", module, (1, 28, 28), bits=4)
    assert set(scaled) == set(ghn_qat)
    feeding_bn = {n for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                  and not torch.equal(scaled[f"{n}.weight"], ghn_qat[f"{n}.weight"])}
    assert feeding_bn  # the efficient space puts BN after its convs
    for name in feeding_bn:
        weight = scaled[f"{name}.weight"]
        assert abs(float(weight.std()) / (2 / weight[0].numel()) ** 0.5 - 1) < 1e-4
    classifier = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)][-1]
    assert classifier not in feeding_bn
    assert all(torch.equal(scaled[k], ghn_qat[k]) for k in ghn_qat
               if k.rsplit(".", 1)[0] not in feeding_bn)
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    outputs = []
    for params in (ghn_qat, scaled):
        net = __import__("copy").deepcopy(module).train()  # batch statistics
        load_params(net, params)
        with torch.no_grad():
            outputs.append(net(x))
    assert torch.allclose(outputs[0], outputs[1], atol=1e-3, rtol=1e-3)


def test_rescale_leaves_a_network_without_bn_unchanged():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    params = {n: p.detach() * 3 for n, p in net.named_parameters()}
    assert all(torch.equal(params[k], v)
               for k, v in rescale_before_batch_norm(net, params).items())
    bn_net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    params = {n: p.detach() * 3 for n, p in bn_net.named_parameters()}
    out = rescale_before_batch_norm(bn_net, params)
    assert torch.allclose(out["0.bias"] / params["0.bias"],
                          torch.full((4,), float(out["0.weight"].std() / params["0.weight"].std())))
    assert torch.equal(out["1.weight"], params["1.weight"])


def write_curves(path, curves):
    """A ``qat.csv`` of ``{(arch, start): [top-1 per epoch]}`` at 4 bits."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "init", "bits", "epoch", "accuracy", "final_running_bn"])
        writer.writerows([a, i, 4, e, acc, ""] for (a, i), c in curves.items()
                         for e, acc in enumerate(c))


def test_epochs_to_target():
    history = QATHistory("he", 4, [0.1, 0.5, 0.8, 0.7])
    assert history.epochs_to(0.5) == 1 and history.epochs_to(0.8) == 2
    assert history.epochs_to(0.9) is None


def test_qat_study_resumes_and_tabulates(images, tmp_path):
    train, test = images
    path = run_qat_study(2, ["he", "orthogonal"], train, test, tmp_path, epochs=1, progress=False)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2 * 2 * 2 and {r["epoch"] for r in rows} == {"0", "1"}
    run_qat_study(2, ["he", "orthogonal"], train, test, tmp_path, epochs=1, progress=False)
    assert len(list(csv.DictReader(path.open()))) == len(rows)  # nothing ran again
    table = qat_table(path, target=0.0)
    assert "| he " in table and "epoch 1" in table and "0.0 (2/2)" in table
    with pytest.raises(ValueError, match="unknown initialization 'glorious'"):
        run_qat_study(1, ["glorious"], train, test, tmp_path, progress=False)


def test_qat_study_draws_the_architectures_of_the_chosen_split(images, tmp_path):
    train, test = images
    val = run_qat_study(2, ["he"], train, test, tmp_path / "val", epochs=0, progress=False,
                        split="val")
    default = run_qat_study(2, ["he"], train, test, tmp_path / "test", epochs=0, progress=False)
    val_rows = list(csv.DictReader(val.open()))
    assert [r["arch"] for r in val_rows] == ["efficient-val-00", "efficient-val-01"]
    assert [r["arch"] for r in csv.DictReader(default.open())] == \
        ["efficient-test-00", "efficient-test-01"]
    space = get_space("efficient")  # the val networks are not the test ones
    assert sample_specs(space, "val", 2, seed=0) != sample_specs(space, "test", 2, seed=0)
    for bad, match in ((dict(split="train"), "unknown QAT split 'train'"),
                       (dict(split="imagenet"), "unknown QAT split 'imagenet'"),
                       (dict(archs=0), "archs >= 1"), (dict(bits=1), "bits 2..8"),
                       (dict(epochs=-1), "epochs >= 0")):
        kwargs = dict(archs=1, inits=["he"], train=train, test=test, out=tmp_path / "bad",
                      epochs=0, progress=False) | bad
        with pytest.raises(ValueError, match=match):
            run_qat_study(**kwargs)
    assert not (tmp_path / "bad").exists()  # rejected before anything is written


def test_qat_study_cli(tmp_path, capsys):
    args = ["qat-study", "--archs", "1", "--inits", "he", "orthogonal", "--epochs", "1",
            "--data", "synthetic", "--train-images", "256", "--eval-images", "128",
            "--target", "1", "--baseline", "he", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert "| he " in capsys.readouterr().out
    report = (tmp_path / "out" / "qat.md").read_text()
    assert report.startswith("QAT at W4A4, val architectures, val images")
    assert "| orthogonal " in report and "epochs to 1%" in report
    assert "| start - he " in report and "Paired difference" in report
    rows = list(csv.DictReader((tmp_path / "out" / "qat.csv").open()))
    assert {r["arch"] for r in rows} == {"efficient-val-00"} and len(rows) == 4
    assert main(args[:-4] + ["--target", "0.5", "--split", "test", "--out",
                             str(tmp_path / "test")]) == 0
    assert "test architectures, test images" in (tmp_path / "test" / "qat.md").read_text()
    assert main(args[:-4] + ["--target", "120", "--out", str(tmp_path / "x")]) == 2
    assert "--target is a top-1 in percent" in capsys.readouterr().err
    assert main(args[:-4] + ["--baseline", "default", "--out", str(tmp_path / "y")]) == 2
    assert "--baseline 'default' must be one of --inits" in capsys.readouterr().err


def test_qat_differences_pairs_architectures(tmp_path):
    path = tmp_path / "qat.csv"
    curves = {("a", "ghn-qat"): [0.60, 0.70], ("b", "ghn-qat"): [0.50, 0.60],
              ("a", "ghn-qat-he-scale"): [0.60, 0.74], ("b", "ghn-qat-he-scale"): [0.51, 0.62],
              ("c", "ghn-qat-he-scale"): [0.90, 0.99]}  # c: no baseline run, not counted
    write_curves(path, curves)
    table = qat_differences(path, "ghn-qat")
    row = [cell.strip() for cell in table.splitlines()[2].split("|")[1:-1]]
    # epoch 0: deltas 0 and +1 -> +0.5 ± 0.5, higher on 1; epoch 1: +4, +2 -> +3.0 ± 1.0
    assert row == ["ghn-qat-he-scale", "+0.5 ± 0.5 (1/2)", "+3.0 ± 1.0 (2/2)"]
    assert "| ghn-qat " not in table  # the baseline has no row of its own
    with pytest.raises(ValueError, match="baseline start 'he_normal' is not in"):
        qat_differences(path, "he_normal")


def test_epochs_to_the_reference_final_accuracy(tmp_path):
    path = tmp_path / "qat.csv"
    curves = {("a", "he_normal"): [0.1, 0.5, 0.7], ("b", "he_normal"): [0.1, 0.6, 0.6],
              ("a", "ghn-qat"): [0.6, 0.7, 0.8], ("b", "ghn-qat"): [0.5, 0.55, 0.58],
              ("c", "ghn-qat"): [0.9, 0.9, 0.9]}  # c: no reference run, not counted
    write_curves(path, curves)
    result = epochs_to_reference(path, "he_normal")
    assert result == {"he_normal": ([2, 1], 2), "ghn-qat": ([1], 2)}
    table = qat_table(path, target=0.65, reference="he_normal")
    assert "epochs to he_normal's final" in table.splitlines()[0]
    assert "within 1 epochs" in table.splitlines()[0]  # he_normal trained 2 epochs
    assert [cell.strip() for cell in table.splitlines()[3].split("|")[-4:-1]] == \
        ["0.5 (2/3)", "1.0 (1/2)", "1/2"]  # ghn-qat: 65 % at epochs 1, -, 0; he's bar once
    # he_normal reaches its own bar at epoch 2 on a and 1 on b: within half, only b
    assert [cell.strip() for cell in table.splitlines()[2].split("|")[-3:-1]] == \
        ["1.5 (2/2)", "1/2"]
    assert epochs_to_reference(path, "default") == {}
    assert "final" not in qat_table(path, target=0.65, reference="default")


def test_qat_bad_inputs(images):
    train, test = images
    with pytest.raises(ValueError, match="QAT bits must be 2..8"):
        qat_train(small_net(), "he", train, test, bits=32, progress=False)
    with pytest.raises(ValueError, match="unknown initialization 'nope'"):
        qat_train(small_net(), "nope", train, test, progress=False)
    with pytest.raises(ValueError, match="unknown initialization 'he-he-scale'"):
        qat_train(small_net(), "he-he-scale", train, test, progress=False)


def test_qat_cli(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    space = get_space("blocks")
    spec.write_text(__import__("json").dumps(space.make_spec("dwsep", 1, 8)))
    args = ["qat", "--spec", str(spec), "--init", "he", "--bits", "4", "--epochs", "1",
            "--data", "synthetic", "--max-train-images", "256", "--max-test-images", "128",
            "--target", "1", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "top-1 W4A4" in text and "1% reached at epoch 0" in text
    rows = list(csv.DictReader((tmp_path / "out" / "qat.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    state = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert set(state) == set(space.build(space.make_spec("dwsep", 1, 8), 1, 10).state_dict())
    assert main(args[:5] + ["--init", "nope"] + args[7:]) == 2
    assert "unknown initialization 'nope'" in capsys.readouterr().err


def test_network_from_args_builds_specs_and_models(tmp_path):
    from ghn_pyg.commands.networks import network_from_args

    net = network_from_args("torchvision:resnet18", None, (1, 1, 28, 28), 10)
    assert net.conv1.in_channels == 1 and net.fc.out_features == 10
    with pytest.raises(ValueError, match="cannot read spec"):
        network_from_args(None, str(tmp_path / "missing.json"), (1, 1, 28, 28), 10)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read spec"):
        network_from_args(None, str(broken), (1, 1, 28, 28), 10)


def test_qat_cli_defaults_to_the_start_chosen_on_validation_architectures():
    from ghn_pyg.cli import build_parser

    args = build_parser().parse_args(["qat", "--spec", "arch.json"])
    assert args.init == "ghn-qat-he-scale"  # the qat-study A/B on val architectures
