"""``trace``: nn.Module -> :class:`ArchGraph` with torch.fx.

A torch.fx tracer whose leaves are the registered module types
(:mod:`ghn_pyg.graph.ops`) records the model's computation (in eval mode); that graph
is run once on an input of ``input_shape`` to check that the model accepts it and to
read the number of classes (:func:`~ghn_pyg.graph.shapes.check_input_shape`: standard
layers by shape rules, the rest for real, BN statistics and parameters never touched).
Then :class:`_GraphBuilder` folds the fx graph into op nodes: activations become the
``act`` of the node they follow, reshapes and other parameter-free single-input ops
disappear.
"""

from __future__ import annotations

import builtins
import operator
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..errors import GraphBuildError
from . import ops
from .archgraph import ArchGraph, BitAssigner
from .shapes import check_input_shape

__all__ = ["trace", "trace_with_fx", "fx_graph"]

_ADD_FUNCS = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub,
              torch.sub, "add", "add_", "sub", "sub_"}
_MUL_FUNCS = {operator.mul, operator.imul, torch.mul, operator.truediv, operator.itruediv,
              torch.div, "mul", "mul_", "div", "div_"}
_CAT_FUNCS = {torch.cat, torch.concat, torch.stack}
_POOL_FUNCS = {F.max_pool1d: "max_pool", F.max_pool2d: "max_pool",
               F.adaptive_max_pool2d: "max_pool", F.avg_pool1d: "avg_pool",
               F.avg_pool2d: "avg_pool"}
_MEAN_FUNCS = {torch.mean, "mean"}
_MULTI_OUTPUT = {torch.chunk, torch.split, torch.unbind, torch.tensor_split, "chunk",
                 "split", "unbind", "tensor_split", "split_with_sizes"}
_META_METHODS = {"size", "dim", "numel", "nelement", "ndimension", "__len__", "item",
                 "tolist", "stride", "is_contiguous", "data_ptr", "element_size"}
_TENSOR_ATTRS = {"T", "mT", "data"}

# Static value kinds of fx nodes.
_TENSOR, _TENSORS, _OTHER = "tensor", "tensors", "other"


def trace(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32),
          spec: BitAssigner | None = None, s_max: int = 50, name: str | None = None,
          arch: str = "") -> ArchGraph:
    """Trace a CNN into an :class:`ArchGraph`.

    Args:
        model: the network. Its parameters, buffers and train/eval modes are left as
            they were.
        input_shape: shape of one input batch, e.g. ``(1, 3, 32, 32)``.
        spec: a :class:`~ghn_pyg.quant.QuantSpec` giving ``w_bits``/``a_bits``;
            ``None`` leaves everything at 32 (float).
        s_max: longest path length stored as a virtual edge (``dist_index``).
        name: graph name; defaults to the model's class name.
        arch: the JSON spec or torchvision name that rebuilds the model.

    Returns:
        The graph, with every parameter of ``model`` in exactly one node's
        ``param_names``.

    Raises:
        GraphBuildError: the model rejects ``input_shape``, torch.fx cannot trace it,
            it holds parameters in a module type that is not registered, or it uses an
            unsupported construct (e.g. attention layers).
        ValueError: invalid ``s_max`` or bits in ``spec``.
    """
    return trace_with_fx(model, input_shape, spec, s_max, name, arch)[0]


def trace_with_fx(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32),
                  spec: BitAssigner | None = None, s_max: int = 50, name: str | None = None,
                  arch: str = "") -> tuple[ArchGraph, fx.Graph]:
    """:func:`trace`, also returning the torch.fx graph it folded (leaves: registered types).

    The fx graph is not modified and can be given to ``torch.fx.GraphModule(model, g)``.
    """
    if s_max < 1:
        raise ValueError(f"s_max must be >= 1, got {s_max}")
    name = name or type(model).__name__
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) < 2:
        raise ValueError(f"input_shape must include the batch dimension, got {input_shape}")
    _reject_attention(model, name)
    with _eval_mode(model):
        fx_graph = _trace_fx(model, name)
        num_classes = check_input_shape(model, fx_graph, input_shape, name)
    graph = ArchGraph.create(**_GraphBuilder(model, name).build(fx_graph), name=name, spec=arch,
                             in_shape=input_shape[1:], num_classes=num_classes, s_max=s_max)
    if spec is not None:
        graph = spec.annotate(graph)
    return graph, fx_graph


def fx_graph(model: nn.Module, name: str | None = None) -> fx.Graph:
    """The torch.fx graph :func:`trace_with_fx` returns (leaves: registered module types),
    without its shape check or :class:`ArchGraph`: for a model whose graph is known
    already (e.g. read from an architecture dataset built from the same spec).

    Raises:
        GraphBuildError: torch.fx cannot trace the model (names the module).
    """
    name = name or type(model).__name__
    with _eval_mode(model):
        return _trace_fx(model, name)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode inside the block, as it was after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _reject_attention(model: nn.Module, name: str) -> None:
    for path, module in model.named_modules():
        cls = type(module)
        if isinstance(module, nn.MultiheadAttention) or (
                cls.__name__.endswith("Attention")
                and any(True for _ in module.parameters(recurse=False))):
            raise GraphBuildError(
                f"{name}: attention layers are not supported yet (module {path!r} of type "
                f"{cls.__module__}.{cls.__qualname__}). ghn_pyg handles CNNs; transformers "
                "such as vit_b_16 and swin_t are planned.")


class _LeafTracer(fx.Tracer):
    """fx tracer whose leaves are registered module types; remembers where it is."""

    def __init__(self) -> None:
        super().__init__()
        self.current_modules: list[tuple[str, nn.Module]] = []

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return ops.lookup_module(m)[0] != "none"

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        self.current_modules.append((self.path_of_module(m), m))
        result = super().call_module(m, forward, args, kwargs)
        self.current_modules.pop()
        return result


def _trace_fx(model: nn.Module, name: str) -> fx.Graph:
    tracer = _LeafTracer()
    try:
        return tracer.trace(model)
    except GraphBuildError:
        raise
    except Exception as err:
        where = "the top-level forward"
        if tracer.current_modules:
            path, module = tracer.current_modules[-1]
            cls = type(module)
            where = f"module {path!r} of type {cls.__module__}.{cls.__qualname__}"
        raise GraphBuildError(
            f"torch.fx cannot trace {name}: {type(err).__name__} in {where}: {err}. "
            "Remove data-dependent control flow there, or make the module a leaf by "
            "registering its type with ghn_pyg.register_op(Type, primitive).") from err


def _flat_nodes(args: Any) -> Iterator[fx.Node]:
    """Yield the fx nodes inside (nested) args."""
    if isinstance(args, fx.Node):
        yield args
    elif isinstance(args, (tuple, list)):
        for a in args:
            yield from _flat_nodes(a)
    elif isinstance(args, dict):
        for a in args.values():
            yield from _flat_nodes(a)
    elif isinstance(args, slice):
        yield from _flat_nodes((args.start, args.stop, args.step))


class _GraphBuilder:
    """Folds an fx graph into ArchGraph nodes.

    Every fx value is tracked by the tuple of graph nodes it is made of (its
    producers): one node for an op's output and whatever is folded into it, several
    for a chunk's source or nothing for constants and shapes.
    """

    def __init__(self, model: nn.Module, name: str) -> None:
        self.model = model
        self.name = name
        self.modules = dict(model.named_modules())
        self.params = dict(model.named_parameters())
        self.op: list[int] = []
        self.act: list[int] = []
        self.shape: list[list[int]] = []
        self.stride: list[int] = []
        self.groups: list[int] = []
        self.param_names: list[list[str]] = []
        self.param_shapes: list[list[tuple[int, ...]]] = []
        self.edges: set[tuple[int, int]] = set()
        self.claimed: set[str] = set()
        self.kind: dict[fx.Node, str] = {}
        self.producers: dict[fx.Node, tuple[int, ...]] = {}
        # True when this fx value is the only data path out of its producer node, so
        # an activation on it may be folded into that node.
        self.sole: dict[fx.Node, bool] = {}
        self.param_of: dict[fx.Node, str] = {}

    # ------------------------------------------------------------------ build
    def build(self, graph: fx.Graph) -> dict[str, Any]:
        """The node fields and edges of :meth:`ArchGraph.create` for ``graph``."""
        nodes = list(graph.nodes)
        for node in nodes:
            self.kind[node] = self._static_kind(node)
        for node in nodes:
            if self.kind[node] == _OTHER or node.op == "output":
                continue
            self._visit(node)
        self._check_all_params_mapped()
        return self._fields()

    def _static_kind(self, node: fx.Node) -> str:
        if node.op in ("placeholder", "get_attr", "call_module"):
            return _TENSOR
        if node.op == "output":
            return _OTHER
        target = node.target
        if node.op == "call_method" and target in _META_METHODS:
            return _OTHER
        if target is builtins.getattr:
            return _TENSOR if node.args[1] in _TENSOR_ATTRS else _OTHER
        arg_kinds = [self.kind[n] for n in node.all_input_nodes]  # in order of first use
        if target is operator.getitem:
            return _OTHER if arg_kinds[0] == _OTHER else _TENSOR
        if _TENSOR not in arg_kinds and _TENSORS not in arg_kinds:
            return _OTHER
        return _TENSORS if target in _MULTI_OUTPUT else _TENSOR

    def _data_users(self, node: fx.Node) -> int:
        return sum(1 for user in node.users if self.kind[user] != _OTHER)

    # ------------------------------------------------------------------ nodes
    def _new_node(self, primitive: str, inputs: Sequence[int], shape: Sequence[int] = (0, 0, 0, 0),
                  stride: int = 1, groups: int = 1, params: Sequence[str] = ()) -> int:
        v = len(self.op)
        self.op.append(ops.primitive_id(primitive))
        self.act.append(0)
        self.shape.append(list(shape))
        self.stride.append(int(stride))
        self.groups.append(int(groups))
        fresh = [p for p in params if p not in self.claimed]
        self.claimed.update(fresh)
        self.param_names.append(fresh)
        self.param_shapes.append([tuple(self.params[p].shape) for p in fresh])
        for u in sorted(set(inputs)):
            self.edges.add((u, v))
        return v

    def _set(self, node: fx.Node, producers: Sequence[int], sole: bool) -> None:
        self.producers[node] = tuple(dict.fromkeys(producers))
        self.sole[node] = sole and self._data_users(node) == 1

    def _tensor_inputs(self, node: fx.Node) -> list[fx.Node]:
        return [n for n in _flat_nodes((node.args, node.kwargs)) if self.kind[n] != _OTHER]

    def _inputs_of(self, args: Any) -> list[int]:
        out: list[int] = []
        for n in _flat_nodes(args):
            if self.kind[n] != _OTHER:
                out.extend(self.producers.get(n, ()))
        return out

    def _new_op(self, node: fx.Node, primitive: str, args: Any, **kwargs: Any) -> None:
        v = self._new_node(primitive, self._inputs_of(args), **kwargs)
        self._set(node, (v,), sole=True)

    # ------------------------------------------------------------------ visit
    def _visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if self.op:
                raise GraphBuildError(
                    f"{self.name}: forward takes more than one tensor argument "
                    f"({node.target!r}); ghn_pyg traces single-input networks")
            self._set(node, (self._new_node("input", ()),), sole=True)
        elif node.op == "get_attr":
            if node.target in self.params:
                self.param_of[node] = node.target
            self._set(node, (), sole=False)
        elif node.op == "call_module":
            self._visit_module(node)
        else:
            self._visit_function(node)

    def _visit_module(self, node: fx.Node) -> None:
        module = self.modules[node.target]
        kind, value = ops.lookup_module(module)
        if kind == "op":
            prefix = f"{node.target}." if node.target else ""
            params = [prefix + n for n, _ in module.named_parameters()]
            self._new_op(node, value, node.args, shape=_weight_shape(module, node.target, self.name),
                         stride=_first(getattr(module, "stride", 1)),
                         groups=getattr(module, "groups", 1), params=params)
        elif kind == "act":
            self._apply_act(node, node.args[0], value)
        else:
            self._passthrough(node, node.args[0])

    def _visit_function(self, node: fx.Node) -> None:
        target = node.target
        if target in ops.FUNCTION_ACTS:
            self._apply_act(node, node.args[0], ops.FUNCTION_ACTS[target])
        elif target in _ADD_FUNCS or target in _MUL_FUNCS:
            self._binary(node, "add" if target in _ADD_FUNCS else "mul")
        elif target in _CAT_FUNCS:
            tensors = node.args[0] if node.args else node.kwargs["tensors"]
            self._join(node, "concat", tensors)
        elif target in _POOL_FUNCS:
            self._new_op(node, _POOL_FUNCS[target], node.args[0],
                         stride=_pool_stride(node))
        elif target is F.adaptive_avg_pool2d:
            size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
            primitive = "global_avg_pool" if ops.is_unit_size(size) else "avg_pool"
            self._new_op(node, primitive, node.args[0])
        elif target in _MEAN_FUNCS and _is_spatial_mean(node):
            self._new_op(node, "global_avg_pool", node.args[0])
        elif target in ops.FUNCTION_PASSTHROUGH or target is operator.getitem:
            self._passthrough(node, node.args[0])
        else:
            self._unknown(node)

    def _passthrough(self, node: fx.Node, source: Any) -> None:
        if isinstance(source, fx.Node):
            self._set(node, self.producers.get(source, ()), sole=self.sole.get(source, False))
        else:
            self._set(node, self._inputs_of(source), sole=False)

    def _unknown(self, node: fx.Node) -> None:
        carriers = [n for n in self._tensor_inputs(node) if self.producers.get(n)]
        if len(carriers) <= 1:
            self._passthrough(node, carriers[0] if carriers else ())
            return
        target = node.target if isinstance(node.target, str) else getattr(
            node.target, "__qualname__", repr(node.target))
        raise GraphBuildError(
            f"{self.name}: unsupported op {target!r} ({node.op}) combines "
            f"{len(carriers)} tensors at fx node {node.name!r}; wrap it in a module and "
            "register it with ghn_pyg.register_op(Type, primitive)")

    def _join(self, node: fx.Node, primitive: str, tensors: Any) -> None:
        carriers = [n for n in _flat_nodes(tensors) if self.producers.get(n)]
        if len({self.producers[n] for n in carriers}) <= 1:
            self._passthrough(node, carriers[0] if carriers else ())
        else:
            self._new_op(node, primitive, carriers)

    def _binary(self, node: fx.Node, primitive: str) -> None:
        operands = self._tensor_inputs(node)
        params = [self.param_of[n] for n in operands if n in self.param_of]
        if params and primitive == "mul":
            # A learned per-channel scale (e.g. ConvNeXt's layer_scale).
            tensor = self.params[params[0]]
            self._new_op(node, "mul", operands, shape=(tensor.numel(), 0, 0, 0),
                         params=params)
        else:
            self._join(node, primitive, operands)

    def _apply_act(self, node: fx.Node, source: fx.Node, act_name: str) -> None:
        act = ops.activation_id(act_name)
        producers = self.producers.get(source, ())
        if (len(producers) == 1 and self.sole.get(source, False)
                and self.op[producers[0]] != 0 and self.act[producers[0]] == 0):
            self.act[producers[0]] = act
            self._set(node, producers, sole=True)
            return
        v = self._new_node("act", producers)
        self.act[v] = act
        self._set(node, (v,), sole=True)

    # ------------------------------------------------------------------ finish
    def _check_all_params_mapped(self) -> None:
        missing = [n for n in self.params if n not in self.claimed]
        if not missing:
            return
        owners: dict[str, list[str]] = {}
        for param in missing:
            path = param.rpartition(".")[0]
            owners.setdefault(path, []).append(param)
        lines = []
        for path, names in owners.items():
            cls = type(self.modules[path])
            lines.append(f"  module {path or '<root>'!r} of type {cls.__module__}."
                         f"{cls.__qualname__}: {', '.join(names)}")
        raise GraphBuildError(
            f"{self.name}: {len(missing)} parameter(s) belong to no graph node:\n"
            + "\n".join(lines) + "\nRegister the module type so its parameters get a "
            "node, e.g. ghn_pyg.register_op(MyConv, 'conv'); parameters are never "
            "dropped silently.")

    def _fields(self) -> dict[str, Any]:
        n = len(self.op)
        edges = sorted(self.edges)
        edge_index = (torch.tensor(edges, dtype=torch.long).t().contiguous() if edges
                      else torch.empty(2, 0, dtype=torch.long))
        return dict(
            op=torch.tensor(self.op, dtype=torch.long),
            act=torch.tensor(self.act, dtype=torch.long),
            shape=torch.tensor(self.shape, dtype=torch.long).view(n, 4),
            stride=torch.tensor(self.stride, dtype=torch.long),
            groups=torch.tensor(self.groups, dtype=torch.long),
            param_names=self.param_names,
            param_shapes=self.param_shapes,
            edge_index=edge_index,
        )


def _first(value: Any) -> int:
    if isinstance(value, (tuple, list)):
        return int(value[0]) if value else 1
    return int(value) if value is not None else 1


def _pool_stride(node: fx.Node) -> int:
    stride = node.args[2] if len(node.args) > 2 else node.kwargs.get("stride")
    if stride is None:  # defaults to the kernel size
        stride = node.args[1] if len(node.args) > 1 else node.kwargs.get("kernel_size", 1)
    return _first(stride) if not isinstance(stride, fx.Node) else 1


def _is_spatial_mean(node: fx.Node) -> bool:
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if isinstance(dims, int):
        dims = [dims]
    return isinstance(dims, (list, tuple)) and sorted(dims) in ([2, 3], [-2, -1])


def _weight_shape(module: nn.Module, path: str, model_name: str) -> list[int]:
    """The node's ``shape`` field from the module's main weight."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        weight = next(module.parameters(), None)
    if weight is None:
        return [0, 0, 0, 0]
    dims = list(weight.shape)
    if len(dims) == 1:
        return [dims[0], 0, 0, 0]
    if len(dims) > 4:
        raise GraphBuildError(
            f"{model_name}: module {path!r} ({type(module).__name__}) has a "
            f"{len(dims)}-D weight {tuple(dims)}; only 1-D to 4-D weights are supported")
    return dims + [1] * (4 - len(dims))
