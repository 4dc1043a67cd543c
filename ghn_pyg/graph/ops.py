"""The op vocabulary of architecture graphs and the registries that map PyTorch to it.

Three kinds of things appear in a traced model:

* **ops** (:func:`register_op`): module types that become graph nodes and own their
  parameters, e.g. ``nn.Conv2d -> "conv"``. Functional ops (``torch.add``,
  ``torch.cat``, ``F.max_pool2d``, ...) are mapped by the tracer itself.
* **activations** (:func:`register_activation`): modules or functions that do not
  become nodes; they set the ``act`` attribute of the node whose output they take.
* **passthroughs** (:func:`register_passthrough`): parameter-free modules or
  functions that are folded away (dropout, identity, reshapes).

Lookups walk the type's MRO, so subclasses (``torch.ao.nn.qat.Conv2d``,
torchvision's ``LayerNorm2d``) map like their parents unless registered themselves.
Registered module types are leaves of the torch.fx tracer: it does not look inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GraphBuildError

__all__ = [
    "Vocabulary",
    "vocabulary",
    "register_activation_name",
    "snapshot_registries",
    "restore_registries",
    "PRIMITIVES",
    "ACTIVATIONS",
    "QUANTIZABLE_OPS",
    "primitive_id",
    "activation_id",
    "register_primitive",
    "register_op",
    "register_activation",
    "register_passthrough",
    "lookup_module",
]

#: The built-in node primitives; the position is the ``op`` id stored in graphs.
#: ``act`` is a standalone activation, used only where folding it into its input node
#: would be wrong (the raw value is also used elsewhere, or two activations in a row).
_BUILTIN_PRIMITIVES: tuple[str, ...] = (
    "input", "conv", "dw_conv", "group_conv", "linear", "batch_norm", "layer_norm",
    "group_norm", "max_pool", "avg_pool", "global_avg_pool", "add", "mul", "concat", "act",
)

#: The built-in activation names; the position is the ``act`` id stored in graphs (0: none).
_BUILTIN_ACTIVATIONS: tuple[str, ...] = (
    "none", "relu", "relu6", "hardswish", "silu", "sigmoid", "gelu", "hardsigmoid", "tanh",
    "leaky_relu", "elu", "mish", "softplus",
)

#: Primitives whose weights and input activations are fake-quantized.
QUANTIZABLE_OPS: frozenset[str] = frozenset({"conv", "dw_conv", "group_conv", "linear"})

OpRule = Union[str, Callable[[nn.Module], str]]


@dataclass(frozen=True)
class Vocabulary:
    """An immutable snapshot of the op and activation names, by id.

    A GHN keeps the one it was built with (and saves it), so primitives registered
    later cannot silently shift what its embeddings mean.

    Args:
        primitives: op names; position = the ``op`` id in graphs.
        activations: activation names; position = the ``act`` id (0: none).
    """

    primitives: tuple[str, ...]
    activations: tuple[str, ...]

    @classmethod
    def current(cls, num_ops: int | None = None, num_acts: int | None = None) -> "Vocabulary":
        """The registered vocabulary now, optionally only its first ``num_ops`` ops and
        ``num_acts`` activations."""
        return cls(_vocabulary.primitives[:num_ops], _vocabulary.activations[:num_acts])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Vocabulary":
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(data["primitives"]), tuple(data["activations"]))

    def to_dict(self) -> dict[str, list[str]]:
        """``{"primitives": [...], "activations": [...]}`` (what checkpoints store)."""
        return {"primitives": list(self.primitives), "activations": list(self.activations)}

    def is_prefix_of(self, other: "Vocabulary") -> bool:
        """Whether ``other`` keeps every id of this vocabulary (it may add more)."""
        return (other.primitives[:len(self.primitives)] == self.primitives
                and other.activations[:len(self.activations)] == self.activations)

    def check_ids(self, op: Any, act: Any) -> None:
        """Raise if any ``op``/``act`` id (CPU long tensors) lies outside this vocabulary.

        Raises:
            ValueError: naming each unknown op or activation (by its currently
                registered name) and what to do.
        """
        unknown_ops = sorted({int(i) for i in op[op >= len(self.primitives)].tolist()})
        unknown_acts = sorted({int(i) for i in act[act >= len(self.activations)].tolist()})
        if not unknown_ops and not unknown_acts:
            return
        names = [f"op {PRIMITIVES[i] if i < len(PRIMITIVES) else i!r}" for i in unknown_ops]
        names += [f"activation {ACTIVATIONS[i] if i < len(ACTIVATIONS) else i!r}"
                  for i in unknown_acts]
        raise ValueError(f"{', '.join(names)} unknown to this GHN, which knows "
                         f"{len(self.primitives)} ops ({', '.join(self.primitives)}); train "
                         "a GHN built after registering them")

_vocabulary = Vocabulary(_BUILTIN_PRIMITIVES, _BUILTIN_ACTIVATIONS)


def vocabulary() -> Vocabulary:
    """The registered vocabulary now (immutable: registering makes a new one)."""
    return _vocabulary


class _Names(Sequence[str]):
    """A read-only, always current view of one half of :func:`vocabulary`."""

    def __init__(self, field: str) -> None:
        self._field = field

    def _names(self) -> tuple[str, ...]:
        return getattr(_vocabulary, self._field)

    def __getitem__(self, index):  # type: ignore[override]
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def index(self, value: object, start: int = 0, stop: int | None = None) -> int:
        """Position of ``value`` (the tuple's own search, not Sequence's item by item)."""
        names = self._names()
        return names.index(value, start, len(names) if stop is None else stop)

    def __eq__(self, other: object) -> bool:
        return list(self._names()) == list(other) if isinstance(other, (list, tuple, _Names)) \
            else NotImplemented

    def __repr__(self) -> str:
        return repr(list(self._names()))


#: Node primitives by ``op`` id (a read-only view; add names with :func:`register_primitive`).
PRIMITIVES: Sequence[str] = _Names("primitives")
#: Activation names by ``act`` id, 0 is none (read-only; see :func:`register_activation_name`).
ACTIVATIONS: Sequence[str] = _Names("activations")

_MODULE_OPS: dict[type, OpRule] = {}
_MODULE_ACTS: dict[type, str] = {}
_MODULE_PASSTHROUGH: set[type] = set()
#: Functions and method names (``"relu"`` for ``x.relu()``) that are activations.
FUNCTION_ACTS: dict[Callable | str, str] = {}
#: Functions and method names that are folded away.
FUNCTION_PASSTHROUGH: set[Callable | str] = set()


def primitive_id(name: str) -> int:
    """Return the ``op`` id of primitive ``name``.

    Raises:
        ValueError: if ``name`` is not in :data:`PRIMITIVES`.
    """
    try:
        return PRIMITIVES.index(name)
    except ValueError:
        raise ValueError(
            f"unknown primitive {name!r}; known: {', '.join(PRIMITIVES)}. "
            "Add new ones with ghn_pyg.graph.register_primitive(name)."
        ) from None


def activation_id(name: str) -> int:
    """Return the ``act`` id of activation ``name``.

    Raises:
        ValueError: if ``name`` is not in :data:`ACTIVATIONS`.
    """
    try:
        return ACTIVATIONS.index(name)
    except ValueError:
        raise ValueError(
            f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}"
        ) from None


def register_primitive(name: str) -> int:
    """Add a primitive to the vocabulary (idempotent) and return its id.

    GHNs size their op embedding from the vocabulary when they are built (and keep that
    :class:`Vocabulary`), so register primitives before creating a GHN.
    """
    global _vocabulary
    if name not in _vocabulary.primitives:
        _vocabulary = Vocabulary(_vocabulary.primitives + (name,), _vocabulary.activations)
    return _vocabulary.primitives.index(name)


def register_activation_name(name: str) -> int:
    """Add an activation name to the vocabulary (idempotent) and return its id; then map
    modules or functions to it with :func:`register_activation`."""
    global _vocabulary
    if name not in _vocabulary.activations:
        _vocabulary = Vocabulary(_vocabulary.primitives, _vocabulary.activations + (name,))
    return _vocabulary.activations.index(name)


def snapshot_registries() -> tuple:
    """Everything the ``register_*`` functions change, for :func:`restore_registries`."""
    return (_vocabulary, dict(_MODULE_OPS), dict(_MODULE_ACTS), set(_MODULE_PASSTHROUGH),
            dict(FUNCTION_ACTS), set(FUNCTION_PASSTHROUGH))


def restore_registries(saved: tuple) -> None:
    """Undo every registration made since :func:`snapshot_registries` returned ``saved``."""
    global _vocabulary
    _vocabulary = saved[0]
    for live, old in zip((_MODULE_OPS, _MODULE_ACTS, _MODULE_PASSTHROUGH, FUNCTION_ACTS,
                          FUNCTION_PASSTHROUGH), saved[1:]):
        live.clear()
        live.update(old)


def register_op(module_type: type, op: OpRule) -> None:
    """Map a module type to a graph primitive; its instances become nodes.

    Args:
        module_type: an ``nn.Module`` subclass. Subclasses of it map the same way
            unless registered themselves.
        op: a primitive name from :data:`PRIMITIVES`, or a callable that takes the
            module instance and returns one (e.g. to tell depthwise convs apart).

    All parameters of such a module (recursively) are predicted for its node, and the
    tracer treats it as a leaf. Example::

        ghn_pyg.register_op(MyConv, "conv")
    """
    _check_module_type(module_type)
    if isinstance(op, str):
        primitive_id(op)
    elif not callable(op):
        raise TypeError(f"op must be a primitive name or a callable, got {op!r}")
    _MODULE_ACTS.pop(module_type, None)
    _MODULE_PASSTHROUGH.discard(module_type)
    _MODULE_OPS[module_type] = op


def register_activation(target: type | Callable | str, act: str) -> None:
    """Declare a module type, function or tensor-method name to be an activation.

    Args:
        target: an ``nn.Module`` subclass, a function such as ``torch.tanh``, or a
            tensor method name such as ``"tanh"``.
        act: its name in :data:`ACTIVATIONS` (add new ones with
            :func:`register_activation_name`).
    """
    activation_id(act)
    if isinstance(target, type):
        _check_module_type(target)
        _MODULE_OPS.pop(target, None)
        _MODULE_PASSTHROUGH.discard(target)
        _MODULE_ACTS[target] = act
    else:
        FUNCTION_PASSTHROUGH.discard(target)
        FUNCTION_ACTS[target] = act


def register_passthrough(target: type | Callable | str) -> None:
    """Declare a parameter-free module type, function or method name to be folded away."""
    if isinstance(target, type):
        _check_module_type(target)
        _MODULE_OPS.pop(target, None)
        _MODULE_ACTS.pop(target, None)
        _MODULE_PASSTHROUGH.add(target)
    else:
        FUNCTION_ACTS.pop(target, None)
        FUNCTION_PASSTHROUGH.add(target)


def lookup_module(module: nn.Module) -> tuple[str, str | None]:
    """Classify a module instance by the most specific registered type in its MRO.

    Returns:
        ``("op", primitive)``, ``("act", activation)``, ``("passthrough", None)`` or
        ``("none", None)`` when no base class is registered.
    """
    for cls in type(module).__mro__:
        if cls in _MODULE_OPS:
            rule = _MODULE_OPS[cls]
            name = rule if isinstance(rule, str) else rule(module)
            primitive_id(name)
            return "op", name
        if cls in _MODULE_ACTS:
            return "act", _MODULE_ACTS[cls]
        if cls in _MODULE_PASSTHROUGH:
            return "passthrough", None
    return "none", None


def _check_module_type(module_type: type) -> None:
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"expected an nn.Module subclass, got {module_type!r}")


def _conv_primitive(module: nn.Module) -> str:
    groups = module.groups
    if groups == 1:
        return "conv"
    if groups == module.in_channels and module.out_channels % groups == 0:
        return "dw_conv"
    return "group_conv"


def _unsupported_conv(module: nn.Module) -> str:
    """1-D and 3-D convolutions have no faithful place in the (out, in, kh, kw) encoding
    of 2-D kernels (a 1-D kernel would pass for a k x 1 2-D one): refuse them by name."""
    raise GraphBuildError(
        f"{type(module).__name__} is not supported: ArchGraph nodes describe 2-D "
        "convolutions, and storing this one as a k x 1 2-D kernel would misdescribe it. "
        "Use nn.Conv2d (e.g. a (k, 1) kernel on an unsqueezed input), or register your own "
        "encoding with ghn_pyg.register_op")


def _adaptive_avg_primitive(module: nn.Module) -> str:
    return "global_avg_pool" if is_unit_size(module.output_size) else "avg_pool"


def is_unit_size(size: object) -> bool:
    """Whether a pooling output size (int or tuple) is 1 in every dimension."""
    if isinstance(size, (tuple, list)):
        return all(s == 1 for s in size)
    return size == 1


def _register_defaults() -> None:
    register_op(nn.Conv2d, _conv_primitive)
    for conv in (nn.Conv1d, nn.Conv3d):
        register_op(conv, _unsupported_conv)
    register_op(nn.Linear, "linear")
    for bn in (nn.BatchNorm1d, nn.BatchNorm2d):
        register_op(bn, "batch_norm")
    register_op(nn.LayerNorm, "layer_norm")
    register_op(nn.GroupNorm, "group_norm")
    for norm in (nn.InstanceNorm1d, nn.InstanceNorm2d):  # group norm, one channel per group
        register_op(norm, "group_norm")
    for pool in (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool2d):
        register_op(pool, "max_pool")
    for pool in (nn.AvgPool1d, nn.AvgPool2d):
        register_op(pool, "avg_pool")
    register_op(nn.AdaptiveAvgPool2d, _adaptive_avg_primitive)

    module_acts = {
        nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish", nn.SiLU: "silu",
        nn.Sigmoid: "sigmoid", nn.GELU: "gelu", nn.Hardsigmoid: "hardsigmoid",
        nn.Tanh: "tanh", nn.LeakyReLU: "leaky_relu", nn.ELU: "elu", nn.Mish: "mish",
        nn.Softplus: "softplus",
    }
    for module_type, act in module_acts.items():
        register_activation(module_type, act)
    function_acts = {
        F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu_: "relu",
        "relu": "relu", "relu_": "relu", F.relu6: "relu6", F.hardswish: "hardswish",
        F.silu: "silu", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
        "sigmoid": "sigmoid", "sigmoid_": "sigmoid", F.gelu: "gelu",
        F.hardsigmoid: "hardsigmoid", torch.tanh: "tanh", F.tanh: "tanh", "tanh": "tanh",
        F.leaky_relu: "leaky_relu", F.elu: "elu", F.mish: "mish", F.softplus: "softplus",
    }
    for fn, act in function_acts.items():
        register_activation(fn, act)

    for module_type in (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                        nn.AlphaDropout, nn.Flatten, nn.Unflatten):
        register_passthrough(module_type)
    for fn in (torch.flatten, torch.reshape, torch.permute, torch.transpose,
               torch.squeeze, torch.unsqueeze, torch.chunk, torch.split, torch.unbind,
               F.dropout, F.dropout2d, F.pad, F.interpolate, torch.clone,
               "flatten", "view", "reshape", "permute", "transpose", "contiguous",
               "chunk", "split", "unbind", "squeeze", "unsqueeze", "expand",
               "expand_as", "clone", "detach", "to", "float", "type_as"):
        register_passthrough(fn)


_register_defaults()
