"""Fuzzing the two places settings come in: training configs and quantization specs.
Whatever the input, only the documented error type (ValueError) may escape."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ghn_pyg.quant import QuantSpec
from ghn_pyg.train import TrainConfig

ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=True),
    st.text(max_size=6), st.lists(st.integers(-2, 40), max_size=5),
    st.lists(st.text(max_size=2), max_size=3), st.integers(0, 40).map(np.int64),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
BITS = st.one_of(st.integers(-2, 40), st.integers(0, 40).map(np.int32), st.booleans(),
                 st.floats(0, 40), st.text(max_size=2), st.none(),
                 st.tuples(st.integers(0, 40), st.integers(0, 40)),
                 st.lists(st.integers(0, 40), max_size=3))
NAMES = [f.name for f in fields(TrainConfig)] + ["bogus"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), ANY_VALUE, max_size=6))
def test_train_configs_raise_only_value_errors(data):
    try:
        config = TrainConfig.from_dict(data)
    except ValueError:
        return
    assert config.to_dict()  # what is accepted is well-typed and serialisable
    assert all(isinstance(b, int) for b in config.bits) and isinstance(config.steps, int)


@settings(max_examples=300, deadline=None)
@given(w_bits=BITS, a_bits=BITS,
       layers=st.dictionaries(st.text(max_size=4), BITS, max_size=2),
       ops=st.dictionaries(st.sampled_from(["conv", "linear", "pool", "x"]), BITS, max_size=2),
       patterns=st.dictionaries(st.sampled_from(["a.*", "(", "b+"]), BITS, max_size=2))
def test_quant_specs_raise_only_value_errors(w_bits, a_bits, layers, ops, patterns):
    try:
        spec = QuantSpec(w_bits=w_bits, a_bits=a_bits, layers=layers, ops=ops,
                         patterns=patterns)
    except ValueError:
        return
    assert type(spec.w_bits) is int and type(spec.a_bits) is int
    assert all(type(b) is int for pair in spec.layers.values() for b in pair)
