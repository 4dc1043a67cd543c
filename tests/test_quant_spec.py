"""QuantSpec rules, validation and annotate()."""

from __future__ import annotations

import pytest
import torch

from ghn_pyg import QuantSpec, annotate, trace

from .conftest import zoo_graph, zoo_model


def bits_by_module(graph):
    return {name: (int(w), int(a)) for name, w, a in
            zip(graph.module_names(), graph.w_bits, graph.a_bits) if name is not None}


@pytest.mark.parametrize("kwargs, culprit", [
    (dict(w_bits=1), "w_bits"), (dict(a_bits=9), "a_bits"), (dict(w_bits=True), "w_bits"),
    (dict(layers={"layer1.0.conv1": 12}), "layer1.0.conv1"),
    (dict(patterns={"layer.*": (4, 3.5)}), "layer.*"),
    (dict(ops={"linear": 0}), "linear"),
])
def test_invalid_bits_name_the_culprit(kwargs, culprit):
    with pytest.raises(ValueError, match="invalid bit-width") as info:
        QuantSpec(**kwargs)
    assert culprit in str(info.value)


def test_unknown_op_and_bad_regex_are_value_errors():
    with pytest.raises(ValueError, match="'batch_norm'"):
        QuantSpec(ops={"batch_norm": 4})
    with pytest.raises(ValueError, match="invalid regex"):
        QuantSpec(patterns={"layer(": 4})


def test_rules_apply_in_documented_order():
    graph = zoo_graph("resnet18")
    spec = QuantSpec(w_bits=4, a_bits=6, first_last_8bit=True,
                     layers={"layer1.0.conv1": (2, 3)},
                     patterns={r"layer1\.0\.conv\d": 5, r"layer4\..*": (6, 6)},
                     ops={"linear": 3})
    bits = bits_by_module(annotate(graph, spec))
    assert bits["layer1.0.conv1"] == (2, 3)      # exact beats regex
    assert bits["layer1.0.conv2"] == (5, 5)      # regex
    assert bits["conv1"] == (8, 8)               # first layer
    assert bits["fc"] == (8, 8)                  # last layer beats the op rule
    assert bits["layer4.1.conv2"] == (6, 6)
    assert bits["layer2.0.conv1"] == (4, 6)      # default
    assert bits["bn1"] == (32, 32)               # not quantizable
    assert int(graph.w_bits.max()) == 32 and int(graph.w_bits.min()) == 32  # unchanged


def test_op_rule_and_mixed_precision():
    graph = annotate(zoo_graph("mobilenet_v2"), QuantSpec(w_bits=4, a_bits=4, ops={"dw_conv": 8}))
    ops = graph.op_names()
    for v, op in enumerate(ops):
        expected = {"dw_conv": 8, "conv": 4, "linear": 4}.get(op, 32)
        assert int(graph.w_bits[v]) == expected and int(graph.a_bits[v]) == expected


def test_annotate_does_not_retrace_and_shares_structure(monkeypatch):
    graph = zoo_graph("resnet18")
    import ghn_pyg.graph.tracer as tracer

    monkeypatch.setattr(tracer, "_trace_fx", lambda *a: pytest.fail("traced again"))
    out = annotate(graph, QuantSpec.uniform(2))
    assert out is not graph and out.edge_index is graph.edge_index
    quantized = torch.tensor([op in ("conv", "linear") for op in out.op_names()])
    assert (out.w_bits[quantized] == 2).all() and (out.w_bits[~quantized] == 32).all()


def test_trace_with_spec_equals_annotate():
    model = zoo_model("squeezenet1_0")
    spec = QuantSpec(w_bits=4, a_bits=8, first_last_8bit=True)
    direct = trace(model, spec=spec)
    later = annotate(trace(model), spec)
    assert torch.equal(direct.w_bits, later.w_bits) and torch.equal(direct.a_bits, later.a_bits)


def test_unknown_layer_names_and_strict_patterns():
    graph = zoo_graph("resnet18")
    with pytest.raises(ValueError, match="'layer9.conv', 'bn1'"):
        annotate(graph, QuantSpec(layers={"layer9.conv": 4, "bn1": 4, "conv1": 4}))
    lenient = QuantSpec(patterns={r"nothing\..*": 4})
    assert int(annotate(graph, lenient).w_bits.min()) == 32
    with pytest.raises(ValueError, match=r"match no layer.*nothing"):
        annotate(graph, QuantSpec(patterns={r"nothing\..*": 4}, strict=True))


def test_dict_round_trip():
    spec = QuantSpec(w_bits=4, a_bits=8, layers={"a": (2, 3)}, patterns={"b.*": 5},
                     ops={"dw_conv": 8}, first_last_8bit=True, fold_bn=True)
    import json

    again = QuantSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


def test_bits_of_any_integer_type_and_single_default_bits():
    import numpy as np

    spec = QuantSpec(w_bits=np.int64(4), a_bits=np.int32(8), layers={"fc": (np.int16(2), 8)})
    assert (spec.w_bits, spec.a_bits) == (4, 8) and type(spec.w_bits) is int
    assert spec.layers["fc"] == (2, 8) and type(spec.layers["fc"][0]) is int
    with pytest.raises(ValueError, match=r"QuantSpec.w_bits \(one bit-width; per-layer pairs"):
        QuantSpec(w_bits=(4, 4))
    with pytest.raises(ValueError, match="QuantSpec.a_bits: invalid bit-width 4.0"):
        QuantSpec(a_bits=4.0)
