"""``ArchGraph``: a CNN's computational graph as a PyG ``Data`` object."""

from __future__ import annotations

import copy
from typing import Any, Protocol, Sequence

import networkx as nx
import torch
from torch import Tensor
from torch_geometric.data import Data

from .bits import FLOAT_BITS
from .ops import QUANTIZABLE_OPS, vocabulary
from .topology import levels, virtual_edges

__all__ = ["ArchGraph", "BitAssigner", "NODE_FIELDS"]

#: Fields whose values are node indices and must be offset when graphs are batched.
INDEX_FIELDS: frozenset[str] = frozenset({"edge_index", "dist_index"})
#: Per-node fields (tensors of N rows, then the two per-node lists); see the class docstring.
NODE_FIELDS: tuple[str, ...] = ("op", "act", "shape", "stride", "groups", "w_bits", "a_bits",
                                "level_fw", "level_bw", "param_names", "param_shapes")


class ArchGraph(Data):
    r"""Architecture graph of one network (see ``DESIGN.md``, section ArchGraph).

    Nodes are in topological order; node 0 is the input.

    Node fields (``N`` nodes):
        * ``op`` [N] long: primitive id (:data:`~ghn_pyg.graph.ops.PRIMITIVES`).
        * ``act`` [N] long: activation applied to the node's output
          (:data:`~ghn_pyg.graph.ops.ACTIVATIONS`, 0 is none).
        * ``shape`` [N, 4] long: main weight shape (out, in/groups, kh, kw); linear is
          (out, in, 1, 1), norms and scales (C, 0, 0, 0), zeros without weight.
        * ``stride`` [N], ``groups`` [N] long: conv/pool stride and conv groups (1 else).
        * ``w_bits``, ``a_bits`` [N] long: bit-widths of the weights and input
          activations; 32 is float.
        * ``param_names``: list of N lists of qualified parameter names.
        * ``param_shapes``: list of N lists of their shapes (tuples), so a GHN can emit
          every tensor without the model at hand.

    Edge fields:
        * ``edge_index`` [2, E]: the DAG, source before target.
        * ``dist_index`` [2, D], ``dist`` [D]: pairs (u, v) with a directed path from
          u to v of shortest length ``dist`` in 1..``s_max``.
        * ``level_fw``, ``level_bw`` [N] long: longest-path depth from the sources /
          to the sinks.

    Graph fields: ``name`` (str), ``spec`` (str: JSON or torchvision name),
    ``in_shape`` [1, 3] long (C, H, W), ``num_classes`` (int), ``s_max`` (int).

    ``Batch.from_data_list`` and the PyG ``DataLoader`` work unchanged: index fields
    are offset by the node count, ``in_shape`` stacks to [B, 3].

    Build one with :meth:`create` (the tracer and the dataset storage do), which derives
    the levels and virtual edges from ``edge_index``.
    """

    @classmethod
    def create(cls, *, op: Tensor, act: Tensor, shape: Tensor, stride: Tensor, groups: Tensor,
               param_names: Sequence[Sequence[str]],
               param_shapes: Sequence[Sequence[tuple[int, ...]]], edge_index: Tensor,
               name: str, spec: str, in_shape: Sequence[int], num_classes: int, s_max: int,
               w_bits: Tensor | None = None, a_bits: Tensor | None = None,
               level_fw: Tensor | None = None, level_bw: Tensor | None = None) -> "ArchGraph":
        """An ArchGraph with every field of the schema (see the class docstring).

        Args:
            op, act, shape, stride, groups: node fields ([N], [N], [N, 4], [N], [N]).
            param_names, param_shapes: per node, its parameters' names and shapes.
            edge_index: [2, E] edges between nodes in topological order.
            name, spec, in_shape (C, H, W), num_classes, s_max: graph fields.
            w_bits, a_bits: [N] bit-widths; float (32) everywhere when omitted.
            level_fw, level_bw: [N] longest-path depths, computed when omitted.

        Returns:
            The graph; ``dist_index``/``dist`` hold the virtual edges up to ``s_max``.

        Raises:
            ValueError: a node field of another length than ``op``.
        """
        n = int(op.numel())
        given = dict(act=act, shape=shape, stride=stride, groups=groups, w_bits=w_bits,
                     a_bits=a_bits, level_fw=level_fw, level_bw=level_bw,
                     param_names=param_names, param_shapes=param_shapes)
        wrong = {k: len(given[k]) for k in NODE_FIELDS[1:]
                 if given[k] is not None and len(given[k]) != n}
        if wrong:
            raise ValueError(f"ArchGraph {name!r}: node fields of other lengths than op's {n}: "
                             f"{wrong}")
        if level_fw is None or level_bw is None:
            level_fw, level_bw = levels(n, edge_index)
        dist_index, dist = virtual_edges(n, edge_index, s_max)
        float_bits = torch.full((n,), FLOAT_BITS, dtype=torch.long)
        return cls(op=op.long(), act=act.long(), shape=shape.long().view(n, 4),
                   stride=stride.long(), groups=groups.long(),
                   w_bits=float_bits if w_bits is None else w_bits.long(),
                   a_bits=float_bits.clone() if a_bits is None else a_bits.long(),
                   level_fw=level_fw.long(), level_bw=level_bw.long(),
                   param_names=[list(p) for p in param_names],
                   param_shapes=[[tuple(s) for s in p] for p in param_shapes],
                   edge_index=edge_index.long(), dist_index=dist_index, dist=dist, num_nodes=n,
                   name=name, spec=spec,
                   in_shape=torch.tensor([list(in_shape)], dtype=torch.long),
                   num_classes=int(num_classes), s_max=int(s_max))

    def quantizable_nodes(self) -> list[int]:
        """The nodes whose op is quantizable (conv and linear layers), in order."""
        names = vocabulary().primitives
        return [v for v, op in enumerate(self.op.tolist()) if names[op] in QUANTIZABLE_OPS]

    def first_last(self) -> set[int]:
        """The first and the last quantizable node (empty without any)."""
        quantizable = self.quantizable_nodes()
        return {quantizable[0], quantizable[-1]} if quantizable else set()

    def module_names(self) -> list[str | None]:
        """Each node's module name, read from its first parameter (None without)."""
        return [names[0].rpartition(".")[0] if names else None for names in self.param_names]

    def with_bits(self, w_bits: Tensor, a_bits: Tensor) -> "ArchGraph":
        """A copy with new ``w_bits``/``a_bits`` ([N] each); every other field is shared
        with this graph, which is left unchanged.

        Raises:
            ValueError: a bit tensor of another length than the node count.
        """
        for what, bits in (("w_bits", w_bits), ("a_bits", a_bits)):
            if bits.shape != (self.num_nodes,):
                raise ValueError(f"{what} of shape {tuple(bits.shape)} for a graph of "
                                 f"{self.num_nodes} nodes")
        out = copy.copy(self)
        out.w_bits, out.a_bits = w_bits.long(), a_bits.long()
        return out

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key in INDEX_FIELDS:
            return self.num_nodes
        return 0

    def __cat_dim__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key in INDEX_FIELDS:
            return -1
        return 0

    def op_names(self) -> list[str]:
        """Return the primitive name of every node."""
        names = vocabulary().primitives
        return [names[i] for i in self.op.tolist()]

    def act_names(self) -> list[str]:
        """Return the activation name of every node."""
        names = vocabulary().activations
        return [names[i] for i in self.act.tolist()]

    def to_networkx(self) -> nx.DiGraph:
        """Return the DAG (``edge_index`` only) as a ``networkx.DiGraph``.

        Each node carries ``op``, ``act`` (names), ``shape`` (tuple), ``w_bits``,
        ``a_bits`` (ints), ``level`` (``level_fw``) and ``params`` (list of names).
        """
        graph = nx.DiGraph(name=self.name)
        ops, acts = self.op_names(), self.act_names()
        shapes = [tuple(s) for s in self.shape.tolist()]
        w_bits, a_bits = self.w_bits.tolist(), self.a_bits.tolist()
        levels = self.level_fw.tolist()
        for v in range(self.num_nodes):
            graph.add_node(v, op=ops[v], act=acts[v], shape=shapes[v], w_bits=w_bits[v],
                           a_bits=a_bits[v], level=levels[v], params=list(self.param_names[v]))
        graph.add_edges_from(map(tuple, self.edge_index.t().tolist()))
        return graph


class BitAssigner(Protocol):
    """Anything that sets a graph's bit-widths, e.g. :class:`~ghn_pyg.quant.QuantSpec`."""

    def annotate(self, graph: ArchGraph) -> ArchGraph:
        """A copy of ``graph`` with its ``w_bits``/``a_bits`` set."""
