r"""Decoders: node embeddings -> every parameter tensor of every network in a batch.

Multi-dimensional weights come from :class:`WeightDecoder`, a node-conditioned
low-rank (CP) tensor of a fixed maximum shape, cropped or tiled to each real shape.
1-D tensors (biases, norm weights, per-channel scales) come from
:class:`VectorDecoder`. :class:`ParameterDecoder` groups all targets of a batch by
shape, so each distinct shape is one decoder call, and applies GHN-2's normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph.ops import PRIMITIVES
from .tiling import fit_to_shape, tile

__all__ = ["WeightDecoder", "VectorDecoder", "ParameterDecoder", "ParamTarget", "param_targets"]

_DEPTHWISE = PRIMITIVES.index("dw_conv")


@dataclass(frozen=True)
class ParamTarget:
    """One tensor to predict.

    Attributes:
        graph: index of the graph in the batch.
        name: its qualified parameter name.
        node: global node index in the batch.
        shape: the tensor's shape.
        kind: ``"weight"`` (2-D and more), ``"scale"`` (1-D multiplicative) or ``"bias"``.
        depthwise: whether it is a depthwise conv weight (fan-in gain 1 instead of 2).
    """

    graph: int
    name: str
    node: int
    shape: tuple[int, ...]
    kind: str
    depthwise: bool


_WEIGHT_OPS = frozenset(PRIMITIVES.index(op) for op in ("conv", "dw_conv", "group_conv", "linear"))


def _kind(name: str, shape: Sequence[int], op: int) -> str:
    """``"weight"`` for multi-dimensional weights, else ``"bias"`` or ``"scale"``."""
    vector_like = math.prod(shape) == max(shape, default=1)
    if len(shape) >= 2 and (op in _WEIGHT_OPS or not vector_like):
        return "weight"
    return "bias" if name.endswith("bias") else "scale"


def param_targets(batch: Any) -> list[ParamTarget]:
    """Every parameter tensor of every graph of ``batch`` (host-side bookkeeping).

    Raises:
        ValueError: an empty batch, or a graph with no parameters.
    """
    if getattr(batch, "num_graphs", 0) == 0 or batch.num_nodes == 0:
        raise ValueError("the batch is empty: give at least one ArchGraph")
    names_per_graph = batch.param_names
    shapes_per_graph = batch.param_shapes
    offsets = batch.ptr.tolist()
    ops = batch.op.tolist()
    targets = []
    for g, (names, shapes) in enumerate(zip(names_per_graph, shapes_per_graph)):
        before = len(targets)
        for local, (node_names, node_shapes) in enumerate(zip(names, shapes)):
            node = offsets[g] + local
            for name, shape in zip(node_names, node_shapes):
                shape = tuple(int(s) for s in shape)
                kind = _kind(name, shape, ops[node])
                depthwise = kind == "weight" and ops[node] == _DEPTHWISE and len(shape) > 1 \
                    and shape[1] == 1
                targets.append(ParamTarget(g, name, node, shape, kind, depthwise))
        if len(targets) == before:
            graph_name = batch.name[g] if hasattr(batch, "name") else f"#{g}"
            raise ValueError(f"graph {graph_name!r} has no parameters to predict")
    return targets


class WeightDecoder(nn.Module):
    r"""Low-rank decoder of weights up to ``max_shape`` = (O, I, K_h, K_w).

    .. math::
        W_{o,i,k,l} = \sum_{r=1}^{R} U_{o r}(z)\, V_{i r}(z)\, S_{r k l}(z), \qquad
        z = \mathrm{ReLU}(A h + a)

    with :math:`U, V, S` linear in :math:`z`. Only the needed slice is computed
    (leading channels, centre of the kernel); larger shapes are tiled. The sum runs
    as one batched matmul of :math:`U` with :math:`V \odot S` (an [R, I, K_h K_w]
    product per node, much smaller than :math:`U \odot V`).

    Args:
        hid: node embedding size.
        max_shape: (O, I, K_h, K_w).
        rank: R (default ``hid``).
    """

    def __init__(self, hid: int, max_shape: Sequence[int] = (64, 64, 11, 11),
                 rank: int | None = None) -> None:
        super().__init__()
        self.max_shape = tuple(int(s) for s in max_shape)
        if len(self.max_shape) != 4 or min(self.max_shape) < 1:
            raise ValueError(f"max_shape must be 4 positive sizes, got {max_shape}")
        out_max, in_max, kh_max, kw_max = self.max_shape
        self.rank = rank or hid
        self.trunk = nn.Linear(hid, hid)
        self.out_factors = nn.Linear(hid, out_max * self.rank)
        self.in_factors = nn.Linear(hid, in_max * self.rank)
        self.spatial_factors = nn.Linear(hid, self.rank * kh_max * kw_max)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise so that decoded weights have about unit variance."""
        for layer in (self.trunk, self.out_factors, self.in_factors, self.spatial_factors):
            nn.init.normal_(layer.weight, std=1.0 / math.sqrt(layer.in_features))
            nn.init.zeros_(layer.bias)
        # each factor has variance ~1/2 (ReLU trunk); the sum over R needs 1/R overall
        with torch.no_grad():
            self.spatial_factors.weight.mul_(math.sqrt(8.0 / self.rank))

    def factors(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The full-size factors of ``n`` nodes, for any of their shapes.

        Args:
            h: [n, hid] node embeddings.

        Returns:
            ``U`` [n, O, R], ``V`` [n, I, R] and ``S`` [n, R, K_h, K_w].
        """
        n = h.shape[0]
        out_max, in_max, kh_max, kw_max = self.max_shape
        z = F.relu(self.trunk(h))
        return (self.out_factors(z).view(n, out_max, self.rank),
                self.in_factors(z).view(n, in_max, self.rank),
                self.spatial_factors(z).view(n, self.rank, kh_max, kw_max))

    def combine(self, u: Tensor, v: Tensor, s: Tensor, shape: Sequence[int],
                scale: float = 1.0) -> Tensor:
        """The cores of ``n`` weights of one 4-D ``shape`` from their :meth:`factors`.

        Args:
            u, v, s: [n, O, R], [n, I, R], [n, R, K_h, K_w].
            shape: (out, in, kh, kw).
            scale: a factor applied to every entry (e.g. the fan-in normalisation).

        Returns:
            [n, min(out, O), min(in, I), min(kh, K_h), min(kw, K_w)], contiguous: the
            decoded cores, to be tiled to ``shape`` with :func:`~ghn_pyg.nn.tiling.tile`.
        """
        n = u.shape[0]
        out_max, in_max, kh_max, kw_max = self.max_shape
        o, i = min(shape[0], out_max), min(shape[1], in_max)
        kh, kw = min(shape[2], kh_max), min(shape[3], kw_max)
        u = u[:, :o]
        if scale != 1.0:
            u = u * scale
        top, left = (kh_max - kh) // 2, (kw_max - kw) // 2
        s = s[:, :, top:top + kh, left:left + kw].reshape(n, self.rank, 1, kh * kw)
        in_spatial = v[:, :i].transpose(1, 2).unsqueeze(-1) * s  # [n, R, i, kh * kw]
        in_spatial = in_spatial.reshape(n, self.rank, i * kh * kw)
        return torch.bmm(u, in_spatial).view(n, o, i, kh, kw)

    def forward(self, h: Tensor, shape: Sequence[int], scale: float = 1.0) -> Tensor:
        """Decode the cores of ``n`` weights of one 4-D ``shape`` (see :meth:`combine`).

        Args:
            h: [n, hid] embeddings of the nodes that own them.
            shape: (out, in, kh, kw).
            scale: a factor applied to every entry.

        Returns:
            [n, min(out, O), min(in, I), min(kh, K_h), min(kw, K_w)].
        """
        return self.combine(*self.factors(h), shape, scale)


class VectorDecoder(nn.Module):
    r"""MLP decoder of 1-D tensors up to ``max_len`` entries, one head per kind.

    .. math::
        b = W_{kind}\,\mathrm{ReLU}(A h + a) + c_{kind}

    Args:
        hid: node embedding size.
        max_len: entries decoded before tiling (default 64).
        kinds: the heads, e.g. ``("scale", "bias")``.
    """

    def __init__(self, hid: int, max_len: int = 64,
                 kinds: Sequence[str] = ("scale", "bias")) -> None:
        super().__init__()
        self.max_len, self.kinds = max_len, tuple(kinds)
        self.trunk = nn.Linear(hid, hid)
        self.heads = nn.Linear(hid, len(self.kinds) * max_len)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default linear initialisation."""
        self.trunk.reset_parameters()
        self.heads.reset_parameters()

    def heads_of(self, h: Tensor) -> Tensor:
        """Every head's output for ``n`` nodes: [n, hid] -> [n, len(kinds), max_len]."""
        return self.heads(F.relu(self.trunk(h))).view(h.shape[0], len(self.kinds), self.max_len)

    def select(self, heads: Tensor, length: int, kind: str) -> Tensor:
        """One kind's vectors from :meth:`heads_of`, fitted to ``length``: [n, length]."""
        if kind not in self.kinds:
            raise ValueError(f"unknown vector kind {kind!r}; this decoder has {self.kinds}")
        return fit_to_shape(heads[:, self.kinds.index(kind)], (length,))

    def forward(self, h: Tensor, length: int, kind: str) -> Tensor:
        """Decode ``n`` vectors: [n, hid] -> [n, length]."""
        return self.select(self.heads_of(h), length, kind)


class ParameterDecoder(nn.Module):
    r"""Predicts every parameter of every graph of a batch.

    Targets are grouped by (kind, shape) across the batch. The decoders' per-node
    layers run once for all nodes of the batch; each group is then one
    :meth:`WeightDecoder.combine` (or one slice of the vector heads).
    With ``normalize`` (GHN-2's parameter normalisation):

    .. math::
        W \leftarrow W \sqrt{\beta / \mathrm{fan\_in}}\ (\beta = 1 \text{ depthwise, else } 2),
        \quad \gamma \leftarrow 2\,\sigma(s_\gamma \gamma),
        \quad b \leftarrow a_b \tanh(s_b b).

    The defaults :math:`a_b = 0.1, s_b = s_\gamma = 1` are this library's;
    GHN-2's reference code uses :math:`a_b = 1, s_b = 0.2, s_\gamma = 0.5`.

    Args:
        hid: node embedding size.
        max_shape: the weight decoder's maximum shape; its first entry is also the
            vector decoder's length.
        normalize: apply the normalisation above.
        bias_range: :math:`a_b`, the largest predicted bias magnitude.
        bias_slope: :math:`s_b`.
        norm_slope: :math:`s_\gamma`.
    """

    def __init__(self, hid: int, max_shape: Sequence[int] = (64, 64, 11, 11),
                 normalize: bool = True, bias_range: float = 0.1, bias_slope: float = 1.0,
                 norm_slope: float = 1.0) -> None:
        super().__init__()
        for name, value in (("bias_range", bias_range), ("bias_slope", bias_slope),
                            ("norm_slope", norm_slope)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self.weights = WeightDecoder(hid, max_shape)
        self.vectors = VectorDecoder(hid, max_len=int(max_shape[0]))
        self.normalize = normalize
        self.bias_range, self.bias_slope, self.norm_slope = bias_range, bias_slope, norm_slope

    def reset_parameters(self) -> None:
        """Re-initialise both decoders."""
        self.weights.reset_parameters()
        self.vectors.reset_parameters()

    def forward(self, h: Tensor, batch: Any,
                into: Sequence[dict[str, Tensor]] | None = None) -> list[dict[str, Tensor]]:
        """Decode all parameters.

        Args:
            h: [N, hid] node embeddings of the batch.
            batch: the PyG Batch of ArchGraphs.
            into: per graph, ``{name: tensor}`` to write the predictions into (e.g. a
                model's parameters), each of the predicted shape; inference only.

        Returns:
            One ``{name: tensor}`` dict per graph, in the graph's node order (the
            tensors of ``into`` when given).

        Raises:
            ValueError: ``into`` lacks a parameter or holds one of another shape.
            RuntimeError: ``into`` while autograd is recording.
        """
        if into is not None and torch.is_grad_enabled():
            raise RuntimeError("into= writes predictions in place and is for inference: "
                               "call it under torch.no_grad()")
        targets = param_targets(batch)
        groups: dict[tuple, list[int]] = {}
        for t, target in enumerate(targets):
            key = (target.kind, _padded(target.shape) if target.kind == "weight"
                   else math.prod(target.shape), target.depthwise)
            groups.setdefault(key, []).append(t)
        decoded: list[Tensor | None] = [None] * len(targets)
        self._decode_weights([(k, m) for k, m in groups.items() if k[0] == "weight"], h,
                             targets, decoded, into)
        self._decode_vectors([(k, m) for k, m in groups.items() if k[0] != "weight"], h,
                             targets, decoded, into)
        out: list[dict[str, Tensor]] = [{} for _ in range(batch.num_graphs)]
        for target, value in zip(targets, decoded):
            out[target.graph][target.name] = value
        return out

    def _decode_weights(self, groups: list[tuple[tuple, list[int]]], h: Tensor,
                        targets: list[ParamTarget], decoded: list[Tensor | None],
                        into: Sequence[dict[str, Tensor]] | None) -> None:
        """Weights, one :meth:`WeightDecoder.combine` per (shape, depthwise) group; each
        tensor tiled from its own core (so its gradient sums into that core alone)."""
        for (_, size, depthwise), members, u, v, s in zip(
                *_grouped(groups, h, targets, self.weights.factors)):
            # normalised before tiling
            scale = math.sqrt((1.0 if depthwise else 2.0) / math.prod(size[1:])) \
                if self.normalize else 1.0
            cores = self.weights.combine(u, v, s, size, scale)
            for t, core in zip(members, cores.unbind(0)):
                if into is None:
                    decoded[t] = tile(core, size).reshape(targets[t].shape)
                    continue
                destination = decoded[t] = _destination(into, targets[t])
                if destination.is_contiguous():
                    tile(core, size, out=destination.view(size))
                else:
                    destination.copy_(tile(core, size).view(destination.shape))

    def _decode_vectors(self, groups: list[tuple[tuple, list[int]]], h: Tensor,
                        targets: list[ParamTarget], decoded: list[Tensor | None],
                        into: Sequence[dict[str, Tensor]] | None) -> None:
        """Norm weights and biases, one slice of the vector heads per (kind, length)."""
        for (kind, length, _), members, heads in zip(
                *_grouped(groups, h, targets, lambda x: (self.vectors.heads_of(x),))):
            values = self.vectors.select(heads, length, kind)
            if self.normalize:
                values = self._squash(values, kind)
            for t, value in zip(members, values.unbind(0)):
                value = value.reshape(targets[t].shape)
                decoded[t] = value if into is None else _destination(into, targets[t]).copy_(value)

    def _squash(self, values: Tensor, kind: str) -> Tensor:
        """Norm weights into (0, 2), biases into (-bias_range, bias_range); a slope of 1
        is not multiplied in, so default GHNs compute exactly as before the slopes existed."""
        slope = self.norm_slope if kind == "scale" else self.bias_slope
        if slope != 1:
            values = slope * values
        return 2 * torch.sigmoid(values) if kind == "scale" else self.bias_range * torch.tanh(values)


def _destination(into: Sequence[dict[str, Tensor]], target: ParamTarget) -> Tensor:
    """The tensor of ``into`` that receives ``target``, checked."""
    found = into[target.graph].get(target.name) if target.graph < len(into) else None
    if found is None:
        raise ValueError(f"into= has no tensor for {target.name!r} of graph {target.graph}")
    if tuple(found.shape) != target.shape:
        raise ValueError(f"into= tensor {target.name!r} of graph {target.graph} has shape "
                         f"{tuple(found.shape)}, the prediction {target.shape}")
    return found


def _grouped(groups: list[tuple[tuple, list[int]]], h: Tensor, targets: list[ParamTarget],
             decode: Any) -> tuple[list[tuple], list[list[int]], ...]:
    """Run ``decode`` once on the nodes of all ``groups`` and split its outputs by group.

    Returns:
        The group keys, their member lists, then one list of per-group chunks for each
        output of ``decode``.
    """
    if not groups:
        return [], []
    keys, members = zip(*groups)
    nodes = torch.tensor([targets[t].node for m in members for t in m], device=h.device)
    sizes = [len(m) for m in members]
    outputs = decode(h[nodes])
    return (list(keys), list(members), *[list(out.split(sizes)) for out in outputs])


def _padded(shape: Sequence[int]) -> tuple[int, int, int, int]:
    dims = list(shape) + [1] * (4 - len(shape))
    if len(dims) > 4:
        raise ValueError(f"cannot decode a {len(shape)}-D weight {tuple(shape)}")
    return tuple(dims)  # type: ignore[return-value]
