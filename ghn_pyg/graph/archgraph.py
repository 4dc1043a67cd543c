"""``ArchGraph``: a CNN's computational graph as a PyG ``Data`` object."""

from __future__ import annotations

from typing import Any

import networkx as nx
from torch_geometric.data import Data

from .ops import ACTIVATIONS, PRIMITIVES

__all__ = ["ArchGraph"]

#: Fields whose values are node indices and must be offset when graphs are batched.
INDEX_FIELDS: frozenset[str] = frozenset({"edge_index", "dist_index"})


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
    """

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
        return [PRIMITIVES[i] for i in self.op.tolist()]

    def act_names(self) -> list[str]:
        """Return the activation name of every node."""
        return [ACTIVATIONS[i] for i in self.act.tolist()]

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
