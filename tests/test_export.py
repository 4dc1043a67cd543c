"""ONNX export: integer weights, QDQ activations, agreement with the fake-quant runner in
ONNX Runtime, and the errors of bad inputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx", reason="the export extra is not installed (pip install "
                                          "'ghn_pyg[export]')")
ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed")

from ghn_pyg.cli import main  # noqa: E402
from ghn_pyg.data import sample_specs  # noqa: E402
from ghn_pyg.errors import ExportError, UnfittedModelError, UnsupportedBitsError  # noqa: E402
from ghn_pyg.export import (compare_outputs, export_quantized, onnx_logits,  # noqa: E402
                            onnx_session, to_onnx)
from ghn_pyg.quant import ParamsMismatchError, QuantSpec, quantize  # noqa: E402
from ghn_pyg.quant.fakequant import act_qparams  # noqa: E402
from ghn_pyg.spaces import get_space  # noqa: E402
from .test_images import needs_fmnist  # noqa: E402

SHAPE = (1, 1, 12, 12)


class SmallNet(nn.Module):
    """conv-BN-ReLU, a residual depthwise conv, a BN that cannot be folded (after an
    add), pooling and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.post = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.relu(self.post(x + self.dw(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def small_net() -> nn.Module:
    torch.manual_seed(0)
    net = SmallNet()
    with torch.no_grad():  # non-trivial running statistics
        for bn in (net.bn, net.post):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def batches(count: int = 4, size: int = 32, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(size, *SHAPE[1:], generator=g) for _ in range(count)]


def labelled(images: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, torch.zeros(len(x), dtype=torch.long)) for x in images]


def plain_session(path) -> "ort.InferenceSession":
    """ONNX Runtime without graph optimizations: the graph as written."""
    return onnx_session(path, optimize=False)


def weight_initializers(model: "onnx.ModelProto") -> dict[str, np.ndarray]:
    return {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer
            if init.name.endswith("weight_quantized")}


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_exported_model_computes_what_the_runner_computes(tmp_path, bits):
    export = to_onnx(small_net(), None, QuantSpec.uniform(bits), SHAPE, batches(), tmp_path / "m.onnx")
    test = labelled(batches(seed=7))
    exact = compare_outputs(lambda x: export.runner(x),
                            lambda x: onnx_logits(plain_session(export.path), x), test)
    assert exact.max_logit_diff < 1e-4
    unfused = compare_outputs(lambda x: export.runner(x),
                              lambda x: onnx_logits(onnx_session(export.path, qdq_fusions=False), x),
                              test)
    assert unfused.same_top1 >= 0.99
    fused = compare_outputs(lambda x: export.runner(x),
                            lambda x: onnx_logits(onnx_session(export.path), x), test)
    assert fused.same_top1 >= 0.99
    with torch.no_grad():
        scale = max(1.0, float(export.runner(test[0][0]).abs().max()))
    assert fused.max_logit_diff < 0.05 * scale


def test_weights_are_stored_as_integers_of_their_bits(tmp_path):
    spec = QuantSpec(w_bits=8, a_bits=8, layers={"dw": 4, "fc": 2})
    export = to_onnx(small_net(), None, spec, SHAPE, batches(), tmp_path / "m.onnx")
    model = onnx.load(str(export.path))
    stored = {init.name: init.data_type for init in model.graph.initializer}
    assert stored["conv.weight_quantized"] == onnx.TensorProto.INT8
    assert stored["dw.weight_quantized"] == onnx.TensorProto.INT4
    assert stored["fc.weight_quantized"] == onnx.TensorProto.INT4
    assert not {"conv.weight", "dw.weight", "fc.weight"} & set(stored)  # no float copies
    values = weight_initializers(model)
    assert values["fc.weight_quantized"].min() >= -2 and values["fc.weight_quantized"].max() <= 1
    assert values["dw.weight_quantized"].min() >= -8 and values["dw.weight_quantized"].max() <= 7
    assert export.opset == 21
    assert dict((layer.name, kind) for layer, kind in export.layers) == {
        "conv": "int8", "dw": "int4", "fc": "int4"}
    weight_quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"
                       and n.input[0] in stored]
    assert weight_quantize == []


def test_without_int4_low_bit_weights_are_int8_at_the_default_opset(tmp_path):
    export = to_onnx(small_net(), None, QuantSpec.uniform(4), SHAPE, batches(), tmp_path / "m.onnx",
                     int4=False)
    model = onnx.load(str(export.path))
    values = weight_initializers(model)
    assert {v.dtype for v in values.values()} == {np.dtype(np.int8)}
    assert all(v.min() >= -8 and v.max() <= 7 for v in values.values())
    assert export.opset == 17
    exact = compare_outputs(lambda x: export.runner(x),
                            lambda x: onnx_logits(plain_session(export.path), x),
                            labelled(batches(seed=3)))
    assert exact.max_logit_diff < 1e-4


def test_activation_scales_and_zero_points_are_the_runners(tmp_path):
    export = to_onnx(small_net(), None, QuantSpec.uniform(8), SHAPE, batches(), tmp_path / "m.onnx")
    model = onnx.load(str(export.path))
    constants = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t)
                 for n in model.graph.node if n.op_type == "Constant"}
    constants.update({i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer})
    exported = sorted((float(constants[n.input[1]]), int(constants[n.input[2]]))
                      for n in model.graph.node if n.op_type == "QuantizeLinear")
    expected = sorted((float(s), int(z)) for s, z in (
        act_qparams(layer.act_quant.low, layer.act_quant.high, 8)
        for layer in export.runner.layers.values()))
    assert len(exported) == len(export.runner.layers) == 3
    assert [s for s, _ in exported] == pytest.approx([s for s, _ in expected], rel=1e-6)
    assert [z for _, z in exported] == [z for _, z in expected]
    zero_point_types = {constants[n.input[2]].dtype for n in model.graph.node
                        if n.op_type == "QuantizeLinear"}
    assert zero_point_types == {np.dtype(np.uint8)}


def test_float_layers_keep_float_weights_and_batch_norm_is_folded(tmp_path):
    spec = QuantSpec(w_bits=8, a_bits=8, layers={"fc": 32})
    export = to_onnx(small_net(), None, spec, SHAPE, batches(), tmp_path / "m.onnx")
    model = onnx.load(str(export.path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == 2  # conv and dw inputs; fc is float
    assert ops.count("BatchNormalization") == 1  # `post` follows an add; `bn` is folded
    assert dict((layer.name, kind) for layer, kind in export.layers)["fc"] == "float"


def test_predicted_parameters_get_batch_norm_statistics_from_calibration(tmp_path):
    net = small_net()
    params = {name: p.detach() * 1.5 for name, p in net.named_parameters()}
    export = to_onnx(net, params, QuantSpec.uniform(8), SHAPE, batches(), tmp_path / "m.onnx")
    bn = export.runner.layers["conv"].folded_bn
    assert not torch.allclose(bn.running_var, small_net().bn.running_var)  # re-estimated
    assert torch.equal(net.conv.weight, small_net().conv.weight)  # the model is untouched
    assert torch.equal(export.runner.layers["conv"].weight, params["conv.weight"])


@pytest.mark.parametrize("order", ["float-first", "quantized-bn"])
def test_statistics_and_ranges_are_set_in_the_protocols_calibration_order(tmp_path, order):
    """to_onnx sets BN statistics and activation ranges as EvalProtocol.apply does in the
    order asked for (float-first by default); the two orders give other ranges."""
    import copy
    import dataclasses

    from ghn_pyg.inits import load_params
    from ghn_pyg.train.protocol import EvalProtocol

    net = small_net()
    params = {name: p.detach() * 1.5 for name, p in net.named_parameters()}
    spec = QuantSpec.uniform(4)
    kwargs = {} if order == "float-first" else {"calib_order": order}
    export = to_onnx(net, params, spec, SHAPE, batches(), tmp_path / "m.onnx", bn_batches=3,
                     calib_batches=2, **kwargs)
    manual_net = copy.deepcopy(net)
    manual = quantize(manual_net, dataclasses.replace(spec, fold_bn=True), SHAPE, bn="running")
    load_params(manual_net, params)
    EvalProtocol("calibrated", 3, 2, calib_order=order).apply(manual, None, batches())

    def ranges(runner):
        return [(float(layer.act_quant.low), float(layer.act_quant.high))
                for layer in runner.layers.values() if layer.act_quant.bits < 32]

    assert ranges(export.runner) == ranges(manual)
    for ours, theirs in zip(export.runner.batch_norms(), manual.batch_norms()):
        torch.testing.assert_close(ours.running_var, theirs.running_var)
        torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    other = "quantized-bn" if order == "float-first" else "float-first"
    again = to_onnx(net, params, spec, SHAPE, batches(), tmp_path / "o.onnx", bn_batches=3,
                    calib_batches=2, calib_order=other)
    assert ranges(again.runner) != ranges(export.runner)


def test_an_unknown_calibration_order_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="unknown calibration order 'late'"):
        to_onnx(small_net(), None, QuantSpec.uniform(4), SHAPE, batches(), tmp_path / "m.onnx",
                calib_order="late")
    assert not (tmp_path / "m.onnx").exists()


def test_efficient_architecture_exports_exactly(tmp_path):
    space = get_space("efficient")
    net = space.build(sample_specs(space, "test", 1, 0)[0], 1, 10)
    calibration = [torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(k))
                   for k in range(3)]
    export = to_onnx(net, None, QuantSpec.uniform(4), (1, 1, 28, 28), calibration,
                     tmp_path / "e.onnx", bn_batches=3)
    exact = compare_outputs(lambda x: export.runner(x),
                            lambda x: onnx_logits(plain_session(export.path), x),
                            labelled(calibration))
    assert exact.max_logit_diff < 1e-4


@needs_fmnist
def test_ghn_qat_prediction_agrees_in_onnx_runtime_on_fashion_mnist(tmp_path):
    from ghn_pyg.data import first_items, load_images
    from ghn_pyg.data.images import tensor_batches
    from ghn_pyg.study.qat import initial_params
    from ghn_pyg.train.protocol import EvalProtocol

    space = get_space("efficient")
    net = space.build(sample_specs(space, "test", 1, 0)[0], 1, 10)
    params = initial_params("ghn-qat", net, (1, 28, 28), bits=8)
    calibration = EvalProtocol("calibrated", 4, 2).calibration_batches(
        load_images("fashion-mnist", "train"))
    export = to_onnx(net, params, QuantSpec.uniform(8), (1, 1, 28, 28), calibration,
                     tmp_path / "e.onnx", bn_batches=4, calib_batches=2)
    test = tensor_batches(first_items(load_images("fashion-mnist", "test"), 1000), 250)
    agreement = compare_outputs(lambda x: export.runner(x),
                                lambda x: onnx_logits(onnx_session(export.path), x), test)
    assert agreement.same_top1 >= 0.99
    assert agreement.accuracy_a > 0.25  # a real prediction, not chance
    assert abs(agreement.accuracy_a - agreement.accuracy_b) <= 0.01


def test_unsupported_bits_are_named(tmp_path):
    spec = QuantSpec(w_bits=8, a_bits=8, layers={"dw": 16})
    with pytest.raises(UnsupportedBitsError, match="dw"):
        to_onnx(small_net(), None, spec, SHAPE, batches(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_learnable_scales_are_refused(tmp_path):
    runner = quantize(small_net(), QuantSpec.uniform(8), SHAPE, learnable_scales=True)
    runner.calibrate(batches(), 2)
    with pytest.raises(UnsupportedBitsError, match="learnable"):
        export_quantized(runner, tmp_path / "m.onnx", SHAPE)


def test_an_uncalibrated_runner_is_refused(tmp_path):
    runner = quantize(small_net(), QuantSpec.uniform(8), SHAPE)
    with pytest.raises(UnfittedModelError, match="calibrate"):
        export_quantized(runner, tmp_path / "m.onnx", SHAPE)
    runner.calibrate(batches(), 2)
    runner.set_bn("batch")
    with pytest.raises(UnfittedModelError, match="running"):
        export_quantized(runner, tmp_path / "m.onnx", SHAPE)
    assert not (tmp_path / "m.onnx").exists()


def test_bad_paths_and_inputs_raise_typed_errors(tmp_path):
    net = small_net()
    with pytest.raises(ExportError, match="directory"):
        to_onnx(net, None, QuantSpec.uniform(8), SHAPE, batches(), tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        to_onnx(net, None, QuantSpec.uniform(8), SHAPE, batches(), blocker / "m.onnx")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ExportError, match="not writable"):
            to_onnx(net, None, QuantSpec.uniform(8), SHAPE, batches(), locked / "m.onnx")
    with pytest.raises(ExportError, match="calibration"):
        to_onnx(net, None, QuantSpec.uniform(8), SHAPE, [], tmp_path / "m.onnx")
    with pytest.raises(ParamsMismatchError, match="fc.weight"):
        params = {n: p for n, p in net.named_parameters() if n != "fc.weight"}
        to_onnx(net, params, QuantSpec.uniform(8), SHAPE, batches(), tmp_path / "m.onnx")


def test_a_failed_export_leaves_an_existing_file_untouched(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(UnsupportedBitsError):
        to_onnx(small_net(), None, QuantSpec.uniform(16), SHAPE, batches(), path)
    assert path.read_bytes() == b"previous"


def _spec_file(tmp_path) -> str:
    space = get_space("efficient")
    spec = dict(sample_specs(space, "test", 1, 0)[0], space="efficient")
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_cli_exports_a_random_start_and_checks_it(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    code = main(["export", "--spec", _spec_file(tmp_path), "--init", "he", "--bits", "8",
                 "--data", "synthetic", "--calib-batches", "2", "--bn-batches", "2",
                 "--batch-size", "32", "--check", "64", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "int8 weights" in printed and "same top-1" in printed
    onnx.checker.check_model(onnx.load(str(out)))


def test_cli_exports_trained_weights_and_names_bad_ones(tmp_path, capsys):
    from ghn_pyg.commands.networks import network_from_args

    spec = _spec_file(tmp_path)
    net = network_from_args(None, spec, (1, 1, 28, 28), 10)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    code = main(["export", "--spec", spec, "--weights", str(tmp_path / "model.pt"), "--bits", "4",
                 "--data", "synthetic", "--calib-batches", "2", "--batch-size", "32",
                 "--check", "0", "--out", str(tmp_path / "m.onnx")])
    assert code == 0 and "int4 weights" in capsys.readouterr().out
    torch.save({"nonsense": torch.zeros(1)}, tmp_path / "bad.pt")
    code = main(["export", "--spec", spec, "--weights", str(tmp_path / "bad.pt"),
                 "--data", "synthetic", "--out", str(tmp_path / "n.onnx")])
    assert code == 2 and "do not fit the network" in capsys.readouterr().err
    code = main(["export", "--spec", spec, "--bits", "16", "--init", "he", "--data", "synthetic",
                 "--calib-batches", "1", "--batch-size", "16", "--out", str(tmp_path / "n.onnx")])
    assert code == 2 and "no integer ONNX type" in capsys.readouterr().err
    assert not (tmp_path / "n.onnx").exists()
