"""The tracer's input check: run a traced model on an input shape, cheaply.

:func:`trace` must know that a model accepts its ``input_shape`` (and how many classes
it outputs) before it builds a graph. Running the model itself costs its full forward
pass, which at ImageNet sizes dominates the build (resnet50 at 224x224: most of it).
:func:`check_input_shape` instead walks the torch.fx graph of the model: the standard
layers whose output shape follows from their settings (convolutions, linear layers,
batch norm, pooling, activations, dropout) get that shape from a rule that also checks
what PyTorch would check (dimensions, channel counts, outputs of at least one element)
and return an *uninitialised* tensor of it; every other node (additions,
concatenations, reshapes, custom layers, subclasses that override ``forward``) runs
for real on those tensors. Values are never read, so the result is the model's output
shape, not its output.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from ..errors import GraphBuildError

__all__ = ["check_input_shape", "output_shape_rule"]

ShapeRule = Callable[[nn.Module, torch.Tensor], Sequence[int]]


class _Rejected(RuntimeError):
    """A shape rule's refusal, worded like the error PyTorch would raise."""


def check_input_shape(model: nn.Module, graph: fx.Graph, input_shape: Sequence[int],
                      name: str) -> int:
    """Run ``graph`` (traced from ``model``) on an input of ``input_shape``; return the
    size of the output's last dimension (the number of classes).

    Args:
        model: the module ``graph`` was traced from (its attributes and submodules are
            read, never changed; call it in eval mode).
        graph: ``model``'s torch.fx graph; its leaves are modules.
        input_shape: the input batch's shape, e.g. ``(1, 3, 224, 224)``.
        name: the model's name, for error messages.

    Returns:
        ``out.shape[-1]`` of the model's output.

    Raises:
        GraphBuildError: the model rejects the shape (names the shape, the module or fx
            node, and PyTorch's or the rule's reason), takes more than one input
            without a default, or does not return one tensor of logits.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modules = dict(model.named_modules())
    nodes = list(graph.nodes)
    last_use = _last_uses(nodes)
    env: dict[fx.Node, Any] = {}
    inputs_given = 0
    out: Any = None
    with torch.inference_mode():
        for index, node in enumerate(nodes):
            try:
                if node.op == "placeholder":
                    value = _placeholder(node, inputs_given, input_shape, device, dtype)
                    inputs_given += 1
                elif node.op == "output":
                    out = fx.node.map_arg(node.args[0], env.__getitem__)
                    break
                else:
                    value = _run_node(node, env, modules, model)
            except GraphBuildError:
                raise
            except Exception as err:  # the model's own error, whatever its type
                reason = str(err) if isinstance(err, _Rejected) else f"{type(err).__name__}: {err}"
                raise GraphBuildError(
                    f"{name} rejected an input of shape {tuple(input_shape)} at "
                    f"{_where(node, modules)}: {reason}. Pass an input_shape the model "
                    "accepts (batch, channels, height, width).") from err
            env[node] = value
            for done in last_use.get(index, ()):
                env.pop(done, None)
    if not isinstance(out, torch.Tensor) or out.dim() < 1:
        raise GraphBuildError(
            f"{name} returned {type(out).__name__}, expected a tensor of logits; wrap "
            "the model so that forward returns one tensor")
    return int(out.shape[-1])


def output_shape_rule(module: nn.Module) -> ShapeRule | None:
    """The shape rule :func:`check_input_shape` uses for ``module``, or ``None`` when
    the module runs for real (its type's ``forward`` is not one of the standard layers'
    own, e.g. a subclass that overrides it; or it pads other than with zeros, has
    forward hooks, or is a lazy module not yet initialised)."""
    if getattr(module, "return_indices", False):  # pools returning (values, indices)
        return None
    if module._forward_pre_hooks or module._forward_hooks or isinstance(module, LazyModuleMixin):
        return None
    if getattr(module, "padding_mode", "zeros") != "zeros":  # e.g. reflect: own limits
        return None
    return _RULES.get(getattr(type(module), "forward", None))


# ---------------------------------------------------------------------- the walk
def _last_uses(nodes: list[fx.Node]) -> dict[int, list[fx.Node]]:
    """For each node index, the values no later node reads (freed after it runs)."""
    position = {node: i for i, node in enumerate(nodes)}
    last: dict[fx.Node, int] = {}
    for node in nodes:
        for arg in node.all_input_nodes:
            last[arg] = position[node]
    for node in nodes:  # values nobody reads are freed right after they are made
        last.setdefault(node, position[node])
    freed: dict[int, list[fx.Node]] = {}
    for node, index in last.items():
        freed.setdefault(index, []).append(node)
    return freed


def _placeholder(node: fx.Node, index: int, input_shape: Sequence[int],
                 device: torch.device, dtype: torch.dtype) -> Any:
    if index == 0:
        return torch.zeros(tuple(input_shape), device=device, dtype=dtype)
    if node.args:  # an optional argument: its default
        return node.args[0]
    raise TypeError(f"forward() needs argument {node.target!r} besides the input")


def _run_node(node: fx.Node, env: dict[fx.Node, Any], modules: dict[str, nn.Module],
              model: nn.Module) -> Any:
    args = fx.node.map_arg(node.args, env.__getitem__)
    kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
    if node.op == "call_module":
        module = modules[node.target]
        rule = output_shape_rule(module)
        if rule is not None and len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
            return _shaped_like(args[0], rule(module, args[0]))
        return module(*args, **kwargs)
    if node.op == "call_function":
        rule = _FUNCTION_RULES.get(node.target) if _hashable(node.target) else None
        result = rule(args, kwargs) if rule is not None else None
        return result if result is not None else node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    if node.op == "get_attr":
        value: Any = model
        for part in node.target.split("."):
            value = getattr(value, part)
        return value
    raise RuntimeError(f"unexpected fx node kind {node.op!r}")


def _shaped_like(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A new uninitialised tensor of ``shape`` with ``x``'s dtype and device (its memory
    is never written, so it costs no page faults)."""
    return x.new_empty(tuple(int(s) for s in shape))


def _hashable(target: Any) -> bool:
    try:
        hash(target)
    except TypeError:
        return False
    return True


def _where(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"module {node.target!r} of type {type(modules[node.target]).__name__}"
    return f"fx node {node.name!r}"


# ---------------------------------------------------------------------- module rules
def _tuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value) if len(value) == n else (int(value[0]),) * n
    return (int(value),) * n


def _check_dims(module: nn.Module, shape: torch.Size, allowed: Sequence[int]) -> None:
    if len(shape) not in allowed:
        dims = " or ".join(f"{d}D" for d in allowed)
        raise _Rejected(f"{type(module).__name__} expects {dims} input, got "
                        f"{len(shape)}D input of shape {tuple(shape)}")


def _check_positive(module: nn.Module, shape: torch.Size, out: Sequence[int]) -> None:
    if any(s < 1 for s in out):
        raise _Rejected(f"{type(module).__name__}: input of shape {tuple(shape)} gives an "
                        f"output of spatial size {tuple(out)}, which is too small")


def _conv_shape(module: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """:math:`L_{out} = \\lfloor (L + 2p - d(k - 1) - 1) / s \\rfloor + 1` per spatial dim."""
    shape = x.shape
    n = len(module.kernel_size)
    _check_dims(module, shape, (n + 1, n + 2))
    channels = shape[-n - 1]
    if channels != module.in_channels:
        raise _Rejected(f"{type(module).__name__} expects {module.in_channels} input "
                        f"channels, got {channels} (input of shape {tuple(shape)})")
    spatial = shape[-n:]
    if module.padding == "same":
        out = list(spatial)
    else:
        padding = (0,) * n if module.padding == "valid" else _tuple(module.padding, n)
        out = [(size + 2 * p - d * (k - 1) - 1) // s + 1 for size, p, d, k, s in zip(
            spatial, padding, _tuple(module.dilation, n), module.kernel_size,
            _tuple(module.stride, n))]
    _check_positive(module, shape, out)
    return (*shape[:-n - 1], module.out_channels, *out)


def _linear_shape(module: nn.Linear, x: torch.Tensor) -> tuple[int, ...]:
    shape = x.shape
    if len(shape) < 1 or shape[-1] != module.in_features:
        raise _Rejected(f"Linear expects {module.in_features} input features, got input of "
                        f"shape {tuple(shape)}")
    return (*shape[:-1], module.out_features)


def _batch_norm_shape(module: nn.Module, x: torch.Tensor) -> torch.Size:
    module._check_input_dim(x)  # the subclass's own check of the number of dims
    shape = x.shape
    if shape[1] != module.num_features:
        raise _Rejected(f"{type(module).__name__} expects {module.num_features} channels, "
                        f"got {shape[1]} (input of shape {tuple(shape)})")
    return shape


def _pool_size(size: int, kernel: int, stride: int, pad: int, dilation: int,
               ceil_mode: bool) -> int:
    """PyTorch's pooling output size, ``ceil_mode`` windows that start in padding dropped."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_shape(module: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    shape = x.shape
    n = 1 if isinstance(module, (nn.MaxPool1d, nn.AvgPool1d)) else 2
    _check_dims(module, shape, (n + 1, n + 2))
    kernel = _tuple(module.kernel_size, n)
    stride = _tuple(module.kernel_size if module.stride in (None, (), [])
                    else module.stride, n)
    pad = _tuple(module.padding, n)
    dilation = _tuple(getattr(module, "dilation", 1), n)
    if any(p > k // 2 for p, k in zip(pad, kernel)):
        raise _Rejected(f"{type(module).__name__}: padding {pad} is more than half the "
                        f"kernel size {kernel}")
    out = [_pool_size(size, k, s, p, d, module.ceil_mode) for size, k, s, p, d in
           zip(shape[-n:], kernel, stride, pad, dilation)]
    _check_positive(module, shape, out)
    return (*shape[:-n], *out)


def _adaptive_pool_shape(module: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    shape = x.shape
    _check_dims(module, shape, (3, 4))
    if any(s < 1 for s in shape[-2:]):
        raise _Rejected(f"{type(module).__name__}: input of shape {tuple(shape)} is empty")
    size = module.output_size
    sizes = size if isinstance(size, (tuple, list)) else (size, size)
    out = [shape[-2 + i] if s is None else int(s) for i, s in enumerate(sizes)]
    return (*shape[:-2], *out)


def _same_shape(module: nn.Module, x: torch.Tensor) -> torch.Size:
    return x.shape


# ---------------------------------------------------------------------- functions
def _float_operands(values: Sequence[Any]) -> list[torch.Tensor] | None:
    """The tensors among ``values`` when all are floating point of one dtype and the
    rest plain numbers (so the result keeps that dtype); else ``None``."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if not tensors or any(not t.is_floating_point() or t.dtype != tensors[0].dtype
                          for t in tensors):
        return None
    if any(isinstance(v, bool) or not isinstance(v, (torch.Tensor, int, float)) for v in values):
        return None
    return tensors


def _elementwise(inplace: bool) -> Callable[[tuple, dict], torch.Tensor | None]:
    """Rule for ``a + b``-like ops: the broadcast shape (``None``: run for real)."""
    def rule(args: tuple, kwargs: dict) -> torch.Tensor | None:
        tensors = _float_operands(args) if len(args) == 2 and not kwargs else None
        if tensors is None:
            return None
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        if not inplace:
            return _shaped_like(tensors[0], shape)
        target = args[0]
        if not isinstance(target, torch.Tensor) or target.shape != shape:
            raise _Rejected(f"output with shape {list(getattr(target, 'shape', ()))} "
                            f"doesn't match the broadcast shape {list(shape)}")
        return target
    return rule


def _concat(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """Rule for ``torch.cat(tensors, dim)``: sizes summed along ``dim`` (``None``: run
    for real, e.g. with ``out=`` or legacy empty 1-D operands)."""
    if set(kwargs) - {"dim"} or not args or not isinstance(args[0], (list, tuple)):
        return None
    tensors = list(args[0])
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if (not tensors or _float_operands(tensors) is None or not isinstance(dim, int)
            or len({t.dim() for t in tensors}) != 1 or tensors[0].dim() == 0):
        return None
    ndim = tensors[0].dim()
    if not -ndim <= dim < ndim:
        return None  # let torch word the error
    dim %= ndim
    first = tensors[0].shape
    for i, t in enumerate(tensors[1:], 1):
        if any(a != b for d, (a, b) in enumerate(zip(first, t.shape)) if d != dim):
            raise _Rejected(f"Sizes of tensors must match except in dimension {dim}: tensor "
                            f"0 has shape {tuple(first)}, tensor {i} {tuple(t.shape)}")
    shape = list(first)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return _shaped_like(tensors[0], shape)


_FUNCTION_RULES: dict[Callable, Callable[[tuple, dict], torch.Tensor | None]] = {
    torch.cat: _concat, torch.concat: _concat,
}
for _op in (operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub,
            torch.mul):
    _FUNCTION_RULES[_op] = _elementwise(inplace=False)
for _op in (operator.iadd, operator.isub, operator.imul, operator.itruediv):
    _FUNCTION_RULES[_op] = _elementwise(inplace=True)


# ---------------------------------------------------------------------- modules
_RULES: dict[Callable, ShapeRule] = {
    nn.Conv1d.forward: _conv_shape, nn.Conv2d.forward: _conv_shape,
    nn.Conv3d.forward: _conv_shape, nn.Linear.forward: _linear_shape,
    nn.MaxPool1d.forward: _pool_shape, nn.MaxPool2d.forward: _pool_shape,
    nn.AvgPool1d.forward: _pool_shape, nn.AvgPool2d.forward: _pool_shape,
    nn.AdaptiveAvgPool2d.forward: _adaptive_pool_shape,
    nn.AdaptiveMaxPool2d.forward: _adaptive_pool_shape,
}
# BatchNorm1d/2d/3d share _BatchNorm.forward; each checks its dims in _check_input_dim.
_RULES[nn.BatchNorm2d.forward] = _batch_norm_shape
for _type in (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.Sigmoid, nn.GELU, nn.Hardsigmoid,
              nn.Tanh, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Softplus, nn.Identity):
    _RULES[_type.forward] = _same_shape
