"""The tracer's shape check: shape rules agree with PyTorch, errors name the culprit."""

from __future__ import annotations

import itertools
import operator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ghn_pyg import trace
from ghn_pyg.errors import GraphBuildError
from ghn_pyg.graph.shapes import _FUNCTION_RULES, check_input_shape, output_shape_rule
from ghn_pyg.graph.tracer import fx_graph
from ghn_pyg.spaces import build_torchvision


def _real_or_error(module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
    try:
        with torch.inference_mode():
            return tuple(module(x).shape)
    except (RuntimeError, ValueError):
        return None


def _rule_or_error(module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
    rule = output_shape_rule(module)
    assert rule is not None, type(module).__name__
    try:
        return tuple(int(s) for s in rule(module, x))
    except (RuntimeError, ValueError):
        return None


def _agree(module: nn.Module, shapes: list[tuple[int, ...]]) -> int:
    """Assert rule == real on every input shape (both raising counts as agreeing);
    return how many shapes were accepted."""
    module.eval()
    accepted = 0
    for shape in shapes:
        x = torch.zeros(shape)
        real, rule = _real_or_error(module, x), _rule_or_error(module, x)
        assert rule == real, (module, shape, rule, real)
        accepted += real is not None
    return accepted


SPATIAL = [(1, 4, h, w) for h, w in [(1, 1), (2, 3), (5, 5), (7, 4), (8, 8), (13, 9)]]


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups", [
    (1, 1, 0, 1, 1), (3, 1, 1, 1, 1), (3, 2, 1, 1, 4), (5, 2, 2, 1, 2), (3, 1, 2, 2, 1),
    ((3, 1), (2, 1), (1, 0), 1, 1), (4, 3, 0, 1, 1), (3, 1, "same", 2, 1), (3, 1, "valid", 1, 1),
])
def test_conv2d_rule_matches_pytorch(kernel, stride, padding, dilation, groups):
    conv = nn.Conv2d(4, 8, kernel, stride=stride, padding=padding, dilation=dilation,
                     groups=groups)
    accepted = _agree(conv, SPATIAL + [(4, 9, 9), (1, 3, 8, 8), (1, 4, 8), (4, 8, 8, 8, 1)])
    assert accepted >= 2  # the grid covers accepted and rejected inputs


def test_conv1d_rule_matches_pytorch():
    conv = nn.Conv1d(4, 6, 3, stride=2, padding=1)
    assert _agree(conv, [(1, 4, 1), (2, 4, 9), (4, 9), (1, 3, 9)]) == 3


def test_conv_padding_other_than_zeros_runs_for_real():
    # reflect padding must be shorter than the input, a limit the rule does not know
    assert output_shape_rule(nn.Conv1d(4, 6, 3, padding=1, padding_mode="reflect")) is None
    model = _Head(nn.Conv2d(1, 2, 3, padding=2, padding_mode="reflect"), 2 * 3 * 3)
    with pytest.raises(GraphBuildError, match=r"module 'first' of type Conv2d"):
        check_input_shape(model, fx_graph(model), (1, 1, 1, 1), "reflect")


@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode", list(itertools.product(
    [2, 3], [1, 2], [0, 1], [1, 2], [False, True])))
def test_max_pool_rule_matches_pytorch(kernel, stride, padding, dilation, ceil_mode):
    pool = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    _agree(pool, SPATIAL + [(4, 6, 6), (1, 4, 6)])


@pytest.mark.parametrize("kernel,stride,padding,ceil_mode", list(itertools.product(
    [2, 3], [None, 2], [0, 1], [False, True])))
def test_avg_pool_rule_matches_pytorch(kernel, stride, padding, ceil_mode):
    _agree(nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil_mode), SPATIAL)
    _agree(nn.MaxPool1d(kernel, stride, padding, ceil_mode=ceil_mode), [(1, 4, 7), (4, 2)])


@pytest.mark.parametrize("size", [1, 3, (2, None), (None, 1)])
def test_adaptive_pool_rules_match_pytorch(size):
    for pool in (nn.AdaptiveAvgPool2d(size), nn.AdaptiveMaxPool2d(size)):
        assert _agree(pool, SPATIAL + [(4, 5, 5), (1, 4, 5)]) >= 6


def test_linear_batch_norm_and_activation_rules_match_pytorch():
    assert _agree(nn.Linear(8, 3), [(1, 8), (2, 5, 8), (8,), (1, 7)]) == 3
    assert _agree(nn.BatchNorm2d(4), [(1, 4, 3, 3), (1, 5, 3, 3), (1, 4, 3), (4, 3, 3)]) == 1
    assert _agree(nn.BatchNorm1d(4), [(2, 4), (2, 4, 5), (2, 3), (1, 4, 2, 2)]) == 2
    for act in (nn.ReLU(inplace=True), nn.Hardswish(), nn.GELU(), nn.Identity()):
        assert _agree(act, [(1, 4, 3, 3), (2, 3)]) == 2


def test_elementwise_and_concat_rules_match_pytorch():
    a, b, c = torch.zeros(1, 4, 5, 5), torch.zeros(1, 4, 1, 1), torch.zeros(1, 3, 5, 5)
    for op, args in [(operator.add, (a, b)), (operator.mul, (b, a)), (torch.add, (a, 2.0)),
                     (operator.iadd, (a.clone(), b)), (operator.truediv, (3, a)),
                     (torch.cat, ([a, c], 1)), (torch.cat, ([a, a],)), (torch.cat, ([a, a], -1))]:
        rule = _FUNCTION_RULES[op](args, {})
        assert rule is not None and tuple(rule.shape) == tuple(op(*args).shape), op
    with pytest.raises(RuntimeError, match="broadcast shape"):
        _FUNCTION_RULES[operator.iadd]((b.clone(), a), {})
    with pytest.raises(RuntimeError, match="must match except in dimension 1"):
        _FUNCTION_RULES[torch.cat](([a, c.transpose(1, 2)], 1), {})
    with pytest.raises(RuntimeError):
        _FUNCTION_RULES[operator.add]((a, c), {})
    # Integer operands or keyword arguments: run for real (None).
    assert _FUNCTION_RULES[operator.add]((a.long(), 1), {}) is None
    assert _FUNCTION_RULES[torch.add]((a, b), {"alpha": 2}) is None


class _Padded(nn.Conv2d):
    """A subclass whose forward changes the output shape: must run for real."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (3, 3, 3, 3)))


class _Head(nn.Module):
    def __init__(self, first: nn.Module, features: int) -> None:
        super().__init__()
        self.first = first
        self.fc = nn.Linear(features, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.first(x), 1))


def test_subclass_overriding_forward_runs_for_real():
    padded = _Padded(1, 2, 3)
    assert output_shape_rule(padded) is None
    model = _Head(padded, 2 * 10 * 10).eval()  # 6x6 input padded to 12x12 -> 10x10
    assert check_input_shape(model, fx_graph(model), (1, 1, 6, 6), "padded") == 5
    with pytest.raises(GraphBuildError, match=r"module 'fc' of type Linear"):
        check_input_shape(model, fx_graph(model), (1, 1, 8, 8), "padded")


def test_hooked_and_lazy_modules_run_for_real():
    conv = nn.Conv2d(1, 2, 3)
    assert output_shape_rule(conv) is not None
    conv.register_forward_pre_hook(lambda m, args: (F.pad(args[0], (1, 1, 1, 1)),))
    assert output_shape_rule(conv) is None
    model = _Head(conv, 2 * 6 * 6).eval()  # 6x6 padded to 8x8 by the hook -> 6x6
    assert check_input_shape(model, fx_graph(model), (1, 1, 6, 6), "hooked") == 5
    assert output_shape_rule(nn.LazyConv2d(4, 3)) is None


def test_pool_returning_indices_runs_for_real():
    assert output_shape_rule(nn.MaxPool2d(2, return_indices=True)) is None
    assert output_shape_rule(nn.MaxPool2d(2)) is not None


@pytest.mark.parametrize("name,side", [("resnet18", 40), ("densenet121", 64),
                                        ("mobilenet_v3_small", 48), ("squeezenet1_0", 64)])
def test_check_gives_the_real_forwards_classes(name, side):
    model = build_torchvision(name, num_classes=7).eval()
    assert check_input_shape(model, fx_graph(model), (1, 3, side, side), name) == 7


@pytest.mark.parametrize("shape,culprit", [
    ((1, 1, 32, 32), r"module 'features\.0' of type Conv2d.*expects 3 input channels, got 1"),
    ((1, 3, 16, 16), r"module 'classifier' of type Linear.*expects 256 input features"),
    ((1, 3, 2, 2), r"module 'features\.2' of type MaxPool2d.*too small"),
])
def test_rejected_input_names_shape_module_and_reason(shape, culprit):
    model = nn.Sequential()
    model.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
    model.flatten = nn.Flatten()
    model.classifier = nn.Linear(4 * 8 * 8, 10)
    with pytest.raises(GraphBuildError, match=r"rejected an input of shape " +
                       r"\(" + ", ".join(map(str, shape)) + r"\) at " + culprit):
        trace(model, shape)
    assert trace(model, (1, 3, 32, 32)).num_classes == 10


def test_check_reads_no_values_and_changes_nothing():
    model = build_torchvision("resnet18", num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert check_input_shape(model, fx_graph(model), (2, 3, 32, 32), "resnet18") == 3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_forward_with_a_second_required_input_is_rejected():
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.fc(x + y)

    model = TwoInputs()
    with pytest.raises(GraphBuildError, match="needs argument 'y'"):
        check_input_shape(model, fx_graph(model), (1, 4), "two")
