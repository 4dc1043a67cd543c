"""``quantize``: run a CNN with fake-quantized layers and, optionally, supplied parameters."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.func import functional_call
from tqdm.auto import tqdm

from ..graph.archgraph import ArchGraph
from ..graph.ops import QUANTIZABLE_OPS, lookup_module
from ..graph.tracer import fx_graph, trace_with_fx
from .layers import BN_MODES, BatchNormRunner, BNMode, QuantLayer
from .quantizers import CalibrationMethod
from .spec import FLOAT_BITS, QuantSpec, annotate

__all__ = ["quantize", "QuantizedModel", "ParamsMismatchError", "module_device", "batch_norm_inputs"]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


class ParamsMismatchError(ValueError):
    """A supplied parameter dict does not match the model; lists every culprit."""


#: Parameter dtypes autocast may hand a model that runs in float32.
_AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)


class QuantizedModel(nn.Module):
    """A traced CNN whose conv and linear layers run fake-quantized.

    Built by :func:`quantize`. Call it as ``qmodel(x, params=None)``: ``params`` is a
    ``{name: tensor}`` dict keyed like ``model.named_parameters()`` (e.g. a GHN's
    prediction), used functionally and differentiably; ``None`` uses the model's own
    parameters. The original model's parameters and buffers are never modified.

    Batch-norm statistics follow ``bn`` (``"batch"``, ``"running"`` or, for
    quantization-aware training, ``"update"``; switch with :meth:`set_bn`), not
    ``train()``/``eval()``; dropout is off.

    Attributes:
        graph: the :class:`ArchGraph` whose ``w_bits``/``a_bits`` are applied.
        layers: ``{module name: QuantLayer}`` of every conv/linear layer.
    """

    def __init__(self, module: fx.GraphModule, graph: ArchGraph,
                 layers: dict[str, QuantLayer], param_shapes: dict[str, torch.Size],
                 bn: BNMode) -> None:
        super().__init__()
        self.module = module
        self.graph = graph
        self.layers = layers
        self.param_shapes = param_shapes
        self.param_dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()),
                                torch.float32)
        self.bn = bn
        self.params_released = False

    def train(self, mode: bool = True) -> "QuantizedModel":
        """Set this wrapper's flag only: the traced modules are shared with the model."""
        self.training = mode
        return self

    # ------------------------------------------------------------ forward
    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        """Run the network.

        Args:
            x: [B, C, H, W] input batch.
            params: every parameter of the model by name, or None for its own.

        Returns:
            The model's output, e.g. [B, num_classes] logits.

        Raises:
            ParamsMismatchError: ``params`` has missing, unknown or mis-shaped entries.
        """
        if params is None:
            if self.params_released:
                raise ParamsMismatchError(
                    f"the parameters of {self.graph.name} were released "
                    "(release_parameters()); pass params")
            return self.module(x)
        self.check_params(params)
        return functional_call(self.module, dict(params), (x,), strict=False)

    def set_bn(self, mode: BNMode) -> "QuantizedModel":
        """Switch every batch norm (folded ones too) to ``mode``; returns self.

        ``"update"`` normalises with batch statistics and updates the original model's
        running statistics (quantization-aware training); ``"running"`` then evaluates
        with them.

        Raises:
            ValueError: an unknown mode.
        """
        _check_bn_mode(mode)
        for sub in self.module.modules():
            if isinstance(sub, BatchNormRunner):
                sub.mode = mode
        for layer in self.layers.values():
            layer.set_fold_mode(mode)
        self.bn = mode
        return self

    def set_collapse_guard(self, enabled: bool = True) -> "QuantizedModel":
        r"""Stop the gradient through batch-norm channels that quantization collapsed to a
        constant (variance at most the norm's ``eps``: the batch's, or the running one
        in ``"running"`` mode); returns self.

        Such a channel multiplies its gradient by up to :math:`1/\sqrt{\epsilon}` in
        every batch norm it crosses while the quantized network does not respond to it,
        which is how 2-bit activations make gradients explode. Forward values are
        unchanged; batch norms folded into their conv are not guarded.
        """
        for sub in self.module.modules():
            if isinstance(sub, BatchNormRunner):
                sub.collapse_guard = bool(enabled)
        return self

    def set_noise_recording(self, enabled: bool = True) -> "QuantizedModel":
        """Make every layer's activation quantizer keep the quantization-noise share of
        its input on each forward pass (see :meth:`activation_noise`); returns self."""
        for layer in self.layers.values():
            layer.act_quant.record_noise = bool(enabled)
            layer.act_quant.noise_share = None
        return self

    def activation_noise(self) -> Tensor | None:
        """The mean quantization-noise share of the inputs of the layers that quantized
        their activations in the last forward pass, with its autograd graph (a 0-d
        tensor in [0, 1); see :func:`~ghn_pyg.quant.fakequant.quant_noise_share`), and
        forget them; None when no layer recorded one (float activations, or
        :meth:`set_noise_recording` off)."""
        shares = []
        for layer in self.layers.values():
            if layer.act_quant.noise_share is not None:
                shares.append(layer.act_quant.noise_share)
                layer.act_quant.noise_share = None
        return torch.stack(shares).mean() if shares else None

    def check_params(self, params: Mapping[str, Tensor]) -> None:
        """Raise one :class:`ParamsMismatchError` listing every problem in ``params``:
        missing, unknown or mis-shaped entries, a floating dtype other than the model's,
        and (for tensors that do not require grad, e.g. loaded ones) NaN or infinite
        values."""
        missing = [n for n in self.param_shapes if n not in params]
        unknown = [n for n in params if n not in self.param_shapes]
        misshaped = [f"{n}: got {tuple(t.shape)}, expected {tuple(self.param_shapes[n])}"
                     for n, t in params.items()
                     if n in self.param_shapes and t.shape != self.param_shapes[n]]
        expected = self.param_dtype
        autocast = any(torch.is_autocast_enabled(device) for device in ("cpu", "cuda"))
        misshaped += [f"{n}: dtype {t.dtype}, the model runs in {expected} (cast it with "
                      f".to({expected}))" for n, t in params.items()
                      if n in self.param_shapes and t.dtype != expected
                      and not (autocast and t.dtype in _AUTOCAST_DTYPES)]
        fixed = [(n, t) for n, t in params.items() if not t.requires_grad and t.is_floating_point()]
        if fixed and not bool(torch.stack([torch.isfinite(t).all() for _, t in fixed]).all()):
            misshaped += [f"{n}: holds NaN or infinite values" for n, t in fixed
                          if not bool(torch.isfinite(t).all())]
        if missing or unknown or misshaped:
            parts = []
            if missing:
                parts.append(f"missing ({len(missing)}): {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown ({len(unknown)}): {', '.join(unknown)}")
            if misshaped:
                parts.append(f"mis-shaped ({len(misshaped)}): {'; '.join(misshaped)}")
            raise ParamsMismatchError(
                f"params do not match {self.graph.name}:\n  " + "\n  ".join(parts))

    def release_parameters(self) -> "QuantizedModel":
        """Free the memory of the model's own parameters; returns self.

        Each parameter becomes a ``meta`` tensor of the same shape (no storage), so the
        runner keeps only the traced network, its buffers and quantizers: for a runner
        always called with supplied ``params``, such as the trainer's cache of one runner
        per architecture. Afterwards every call must supply ``params``.
        """
        released: dict[int, nn.Parameter] = {}
        for holder in _parameter_holders(self.module):
            for name, param in holder._parameters.items():
                if param is None or param.is_meta:
                    continue
                if id(param) not in released:  # shared parameters stay shared
                    released[id(param)] = nn.Parameter(torch.empty_like(param, device="meta"),
                                                       param.requires_grad)
                holder._parameters[name] = released[id(param)]
        self.params_released = True
        return self

    # ------------------------------------------------------------ bits
    def set_bits(self, bits: QuantSpec | ArchGraph) -> "QuantizedModel":
        """Apply other bit-widths without tracing again.

        Args:
            bits: a :class:`QuantSpec`, or an annotated graph of the same model.
        """
        graph = annotate(self.graph, bits) if isinstance(bits, QuantSpec) else bits
        if [len(p) for p in graph.param_names] != [len(p) for p in self.graph.param_names] \
                or graph.param_names != self.graph.param_names:
            raise ValueError(f"graph {graph.name!r} is not the graph of this model "
                             f"({self.graph.name!r}): parameter names differ")
        self.graph = graph
        for name, (w_bits, a_bits) in _layer_bits(graph).items():
            if name in self.layers:
                self.layers[name].set_bits(w_bits, a_bits)
        return self

    # ------------------------------------------------------------ calibration
    @torch.no_grad()
    def calibrate(self, batches: Iterable[Tensor | Sequence[Tensor]], num_batches: int = 8,
                  method: CalibrationMethod = "minmax", percentile: float = 99.99,
                  params: Mapping[str, Tensor] | None = None,
                  progress: bool = False) -> "QuantizedModel":
        """Fix activation ranges from ``num_batches`` batches, then freeze them.

        Args:
            batches: an iterable of inputs or of ``(input, target, ...)`` tuples.
            num_batches: how many batches to observe.
            method: ``"minmax"``, ``"percentile"`` or ``"mse"``.
            percentile: for ``"percentile"``.
            params: parameters to calibrate with (default: the model's own).
            progress: show a progress bar.

        Raises:
            ValueError: no batch, or a bad method.
        """
        quantizers = [layer.act_quant for layer in self.layers.values()]
        for q in quantizers:
            q.observe(method, percentile)
        try:
            seen = self._run_batches(batches, num_batches, params, "calibrating", progress)
            if seen == 0:
                raise ValueError("calibrate() got no batches")
        except BaseException:
            for q in quantizers:
                q.reset()
            raise
        for q in quantizers:
            q.freeze()
        return self

    @torch.no_grad()
    def estimate_bn(self, batches: Iterable[Tensor | Sequence[Tensor]], num_batches: int = 20,
                    params: Mapping[str, Tensor] | None = None,
                    progress: bool = False,
                    float_activations: bool = False) -> "QuantizedModel":
        r"""Re-estimate every batch norm's running statistics, then switch to ``"running"``.

        The running statistics are reset and become the plain average over
        ``num_batches`` batches of the batch mean and (unbiased) variance,

        .. math::
            \hat\mu = \frac{1}{K} \sum_{k=1}^{K} \mu_k, \qquad
            \hat\sigma^2 = \frac{1}{K} \sum_{k=1}^{K} \frac{n_k}{n_k - 1} \sigma_k^2,

        what ``nn.BatchNorm`` with ``momentum=None`` accumulates in training (an
        exponential average from reset statistics would keep a share of the reset
        values). Each batch runs the network as it is set now (weights quantized at
        their bits, activations as the quantizers are set, or float with
        ``float_activations``) with ``params``. The original model's running statistics
        are overwritten.

        Args:
            batches: an iterable of inputs or of ``(input, target, ...)`` tuples.
            num_batches: how many batches to average over.
            params: the parameters to estimate with (default: the model's own).
            progress: show a progress bar.
            float_activations: run every layer's input activations float (the weights
                stay at their bits), e.g. to estimate the statistics of the network whose
                activation ranges a calibration is about to observe.

        Raises:
            ValueError: no batch.
        """
        norms = self.batch_norms()
        saved = [bn.momentum for bn in norms]
        for bn in norms:
            bn.reset_running_stats()

        def cumulative(k: int) -> None:  # batch k (1-based) gets weight 1/k: a plain mean
            for bn in norms:
                bn.momentum = 1.0 / k

        quantizers = [layer.act_quant for layer in self.layers.values()]
        act_bits = [q.bits for q in quantizers]
        if float_activations:
            for q in quantizers:
                q.bits = FLOAT_BITS
        self.set_bn("update")
        try:
            seen = self._run_batches(batches, num_batches, params, "estimating BN", progress,
                                     before_each=cumulative)
            if seen == 0:
                raise ValueError("estimate_bn() got no batches")
        finally:
            for bn, momentum in zip(norms, saved):
                bn.momentum = momentum
            for q, bits in zip(quantizers, act_bits):
                q.bits = bits
            self.set_bn("running")
        return self

    def batch_norms(self) -> list[nn.modules.batchnorm._BatchNorm]:
        """The original model's batch norms that keep running statistics (folded ones too)."""
        norms = [sub.norm for sub in self.module.modules() if isinstance(sub, BatchNormRunner)]
        norms += [layer.folded_bn for layer in self.layers.values() if layer.folded_bn is not None]
        unique = list({id(bn): bn for bn in norms}.values())
        return [bn for bn in unique if bn.track_running_stats and bn.running_mean is not None]

    def _run_batches(self, batches: Iterable[Tensor | Sequence[Tensor]], num_batches: int,
                     params: Mapping[str, Tensor] | None, desc: str, progress: bool,
                     before_each: Callable[[int], None] | None = None) -> int:
        """Run up to ``num_batches`` batches (calling ``before_each(k)`` before the k-th,
        1-based); returns how many ran."""
        seen = 0
        if num_batches < 1:
            return seen
        for batch in tqdm(batches, total=num_batches, desc=desc, disable=not progress,
                          leave=False):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if before_each is not None:
                before_each(seen + 1)
            device = next(iter(params.values())).device if params else module_device(self.module)
            self(x.to(device), params)
            seen += 1
            if seen >= num_batches:
                break
        return seen

    def reset_calibration(self) -> "QuantizedModel":
        """Return to per-batch (dynamic) activation ranges."""
        for layer in self.layers.values():
            layer.act_quant.reset()
        return self

    def quant_parameters(self) -> Iterator[nn.Parameter]:
        """The learnable quantization scales and zero points (with ``learnable_scales``)."""
        for layer in self.layers.values():
            yield from layer.weight_quant.parameters()
            yield from layer.act_quant.parameters()


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (the CPU when it has none)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _parameter_holders(module: nn.Module) -> Iterator[nn.Module]:
    """Every module that registers parameters of the traced ``module``: its submodules
    and the layers its :class:`QuantLayer`/:class:`BatchNormRunner` stand for (which
    share their ``Parameter`` objects)."""
    for sub in module.modules():
        yield sub
        yield from sub.source_modules() if isinstance(sub, (QuantLayer, BatchNormRunner)) else ()


def _layer_bits(graph: ArchGraph) -> dict[str, tuple[int, int]]:
    """``{module name: (w_bits, a_bits)}`` for the quantizable nodes of ``graph``."""
    names = graph.module_names()
    out: dict[str, tuple[int, int]] = {}
    for v in graph.quantizable_nodes():
        if names[v] is not None and names[v] not in out:
            out[names[v]] = (int(graph.w_bits[v]), int(graph.a_bits[v]))
    return out


def quantize(model: nn.Module, spec: QuantSpec | None = None,
             input_shape: Sequence[int] = (1, 3, 32, 32), *, bn: BNMode = "running",
             fold_bn: bool | None = None, learnable_scales: bool = False,
             graph: ArchGraph | None = None) -> QuantizedModel:
    """Trace ``model`` and return a :class:`QuantizedModel` that runs it fake-quantized.

    Args:
        model: the CNN. It is not modified (except its BN running statistics in
            ``"update"`` mode); the result shares its parameters.
        spec: bit-widths per layer (default: all float).
        input_shape: an input shape the model accepts, with batch dim.
        bn: batch-norm statistics, ``"batch"`` (GHN-2 protocol for predicted or random
            parameters), ``"running"`` (trained models) or ``"update"`` (batch
            statistics that also update the model's running ones, for QAT).
        fold_bn: fold each batch norm that directly follows a conv/linear layer into
            its weights before quantizing them; default ``spec.fold_bn``.
        learnable_scales: LSQ-style learnable weight and activation scales
            (:meth:`QuantizedModel.quant_parameters`).
        graph: the model's :class:`ArchGraph` when it is known already (e.g. from an
            architecture dataset of this spec): only the torch.fx trace runs, not the
            graph build and the shape check (a training step builds a runner per new
            architecture); its bits are then set from ``spec``.

    Returns:
        The quantized runner.

    Raises:
        GraphBuildError: the model cannot be traced.
        ValueError: bad bits, ``bn`` mode, a quantized layer that is not an
            ``nn.ConvNd``/``nn.Linear`` (subclass), or a ``graph`` whose parameters are
            not the model's.
    """
    _check_bn_mode(bn)
    spec = spec or QuantSpec()
    fold_bn = spec.fold_bn if fold_bn is None else fold_bn
    if graph is None:
        graph, traced = trace_with_fx(model, input_shape, spec)
    else:
        _check_graph_fits(graph, model)
        graph, traced = spec.annotate(graph), fx_graph(model)
    module = fx.GraphModule(model, traced, class_name=f"Quantized{type(model).__name__}")
    folded = _fold_batch_norms(module, bn) if fold_bn else {}
    layers = _wrap_modules(module, _layer_bits(graph), bn, folded, spec.per_channel,
                           learnable_scales)
    module.graph.lint()
    module.recompile()
    param_shapes = {n: p.shape for n, p in model.named_parameters()}
    return QuantizedModel(module, graph, layers, param_shapes, bn)


def _check_graph_fits(graph: ArchGraph, model: nn.Module) -> None:
    """Raise ``ValueError`` unless ``graph`` names exactly ``model``'s parameters."""
    ours = {name for names in graph.param_names for name in names}
    theirs = {name for name, _ in model.named_parameters()}
    if ours != theirs:
        missing = sorted(theirs - ours)[:3]
        extra = sorted(ours - theirs)[:3]
        raise ValueError(f"graph {graph.name!r} does not describe this "
                         f"{type(model).__name__}: parameters missing from it {missing}, "
                         f"unknown to the model {extra}")


def _wrap_modules(module: fx.GraphModule, bits: dict[str, tuple[int, int]], bn: BNMode,
                  folded: dict[str, tuple[nn.Module, BNMode]], per_channel: bool,
                  learnable_scales: bool) -> dict[str, QuantLayer]:
    """Replace, in ``module``, conv/linear layers by :class:`QuantLayer`, batch norms by
    :class:`BatchNormRunner`, and drop dropout nodes; returns the quantized layers."""
    layers: dict[str, QuantLayer] = {}
    for node in list(module.graph.nodes):
        if node.op != "call_module":
            continue
        sub = module.get_submodule(node.target)
        kind, primitive = lookup_module(sub)
        if isinstance(sub, (QuantLayer, BatchNormRunner)):
            continue  # a module called twice is wrapped once
        if isinstance(sub, _DROPOUT):
            node.replace_all_uses_with(node.args[0])
            module.graph.erase_node(node)
        elif isinstance(sub, nn.modules.batchnorm._BatchNorm):
            module.add_submodule(node.target, BatchNormRunner(sub, bn))
        elif kind == "op" and primitive in QUANTIZABLE_OPS:
            w_bits, a_bits = bits.get(node.target, (FLOAT_BITS, FLOAT_BITS))
            if not isinstance(sub, (nn.modules.conv._ConvNd, nn.Linear)):
                if (w_bits, a_bits) == (FLOAT_BITS, FLOAT_BITS):
                    continue
                raise ValueError(
                    f"layer {node.target!r} ({type(sub).__name__}) is a {primitive} but not an "
                    "nn.ConvNd/nn.Linear subclass, so it cannot be fake-quantized; keep it at "
                    "32 bits with QuantSpec(layers={name: 32})")
            with torch.device(module_device(sub)):  # its buffers made there, not copied
                layer = QuantLayer(sub, w_bits, a_bits, per_channel, learnable_scales,
                                   folded.get(node.target))
            module.add_submodule(node.target, layer)
            layers[node.target] = layer
    return layers


def _check_bn_mode(mode: str) -> None:
    if mode not in BN_MODES:
        raise ValueError(f"bn must be one of {', '.join(map(repr, BN_MODES))}, got {mode!r}")


def batch_norm_inputs(model: nn.Module, graph: fx.Graph) -> list[tuple[fx.Node, fx.Node]]:
    """The conv/linear layers whose output goes only into a batch norm over its channels.

    Args:
        model: the module ``graph`` was traced from (its submodules are looked up).
        graph: a torch.fx graph of ``model`` (e.g. :func:`~ghn_pyg.graph.tracer.fx_graph`).

    Returns:
        ``[(layer node, batch-norm node)]``, in graph order; each layer and each batch
        norm is called once in the graph.
    """
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.users) != 1:
            continue
        layer = model.get_submodule(node.target)
        user = next(iter(node.users))
        if not isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)) or user.op != "call_module":
            continue
        norm = model.get_submodule(user.target)
        if (isinstance(norm, nn.modules.batchnorm._BatchNorm) and calls[node.target] == 1
                and calls[user.target] == 1 and norm.num_features == layer.weight.shape[0]):
            pairs.append((node, user))
    return pairs


def _fold_batch_norms(module: fx.GraphModule, bn: BNMode) -> dict[str, tuple[nn.Module, BNMode]]:
    """Remove every BN node that is the only user of a conv/linear node.

    Returns:
        ``{conv name: (bn module, mode)}`` for :class:`QuantLayer` to fold.
    """
    folded: dict[str, tuple[nn.Module, BNMode]] = {}
    for node, user in batch_norm_inputs(module, module.graph):
        folded[node.target] = (module.get_submodule(user.target), bn)
        user.replace_all_uses_with(node)
        module.graph.erase_node(user)
    return folded
