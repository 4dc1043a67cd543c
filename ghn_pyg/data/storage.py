"""Compact shard storage of ArchGraphs: a few kilobytes per graph.

A shard holds many graphs as concatenated small-integer arrays plus, per graph, a
zlib-compressed JSON blob with its spec and parameter names/shapes. Virtual edges
(``dist_index``, ``dist``) are not stored: they are recomputed when a graph is read,
for the ``s_max`` the dataset asks for.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
import torch

from ..graph.archgraph import ArchGraph

__all__ = ["encode_graph", "pack_shard", "Shard", "SHARD_FORMAT"]

SHARD_FORMAT = "ghn_pyg.shard.v1"
_NODE_FIELDS = {"op": np.uint8, "act": np.uint8, "stride": np.uint8, "level_fw": np.int16,
                "level_bw": np.int16}
#: Fields stored as int16 when every value fits, else int32.
_WIDE_FIELDS = ("shape", "groups", "edge_index")


def encode_graph(graph: ArchGraph, spec: dict[str, Any]) -> dict[str, Any]:
    """Turn one graph into numpy arrays and a compressed blob (picklable, small)."""
    params = [[v, name, list(shape)] for v, (names, shapes)
              in enumerate(zip(graph.param_names, graph.param_shapes))
              for name, shape in zip(names, shapes)]
    blob = json.dumps({"spec": spec, "params": params, "name": graph.name},
                      separators=(",", ":")).encode()
    out = {k: graph[k].numpy().astype(dtype) for k, dtype in _NODE_FIELDS.items()}
    for key in _WIDE_FIELDS:
        out[key] = graph[key].numpy().astype(np.int32)
    out["blob"] = np.frombuffer(zlib.compress(blob, 6), dtype=np.uint8)
    out["num_classes"] = int(graph.num_classes)
    return out


def pack_shard(encoded: list[dict[str, Any]], hashes: list[int]) -> dict[str, Any]:
    """Concatenate encoded graphs into one shard dict for ``torch.save``."""
    shard: dict[str, Any] = {"format": SHARD_FORMAT, "hashes": torch.tensor(hashes, dtype=torch.long)}
    shard["num_nodes"] = torch.tensor([len(e["op"]) for e in encoded], dtype=torch.int32)
    shard["num_edges"] = torch.tensor([e["edge_index"].shape[1] for e in encoded], dtype=torch.int32)
    shard["blob_len"] = torch.tensor([len(e["blob"]) for e in encoded], dtype=torch.int32)
    shard["num_classes"] = torch.tensor([e["num_classes"] for e in encoded], dtype=torch.int32)
    for key in (*_NODE_FIELDS, "blob"):
        shard[key] = torch.from_numpy(np.concatenate([e[key] for e in encoded]))
    for key in _WIDE_FIELDS:
        values = np.concatenate([e[key] for e in encoded], axis=-1 if key == "edge_index" else 0)
        small = values.size == 0 or np.abs(values).max() < 2 ** 15
        shard[key] = torch.from_numpy(values.astype(np.int16 if small else np.int32))
    return shard


class Shard:
    """Random access to the graphs of one loaded shard."""

    def __init__(self, data: dict[str, Any]) -> None:
        if data.get("format") != SHARD_FORMAT:
            raise ValueError(f"not a ghn_pyg shard (format {data.get('format')!r})")
        self.data = data
        zero = torch.zeros(1, dtype=torch.long)
        self.node_ptr = torch.cat([zero, data["num_nodes"].long().cumsum(0)]).tolist()
        self.edge_ptr = torch.cat([zero, data["num_edges"].long().cumsum(0)]).tolist()
        self.blob_ptr = torch.cat([zero, data["blob_len"].long().cumsum(0)]).tolist()

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    def spec(self, j: int) -> dict[str, Any]:
        """The architecture spec of graph ``j``."""
        return self._blob(j)["spec"]

    def _blob(self, j: int) -> dict[str, Any]:
        raw = self.data["blob"][self.blob_ptr[j]:self.blob_ptr[j + 1]].numpy().tobytes()
        return json.loads(zlib.decompress(raw))

    def graph(self, j: int, s_max: int, in_shape: tuple[int, ...]) -> ArchGraph:
        """Rebuild graph ``j`` as an :class:`ArchGraph` with virtual edges up to ``s_max``."""
        d = self.data
        lo, hi = self.node_ptr[j], self.node_ptr[j + 1]
        n = hi - lo
        blob = self._blob(j)
        names: list[list[str]] = [[] for _ in range(n)]
        shapes: list[list[tuple[int, ...]]] = [[] for _ in range(n)]
        for v, name, shape in blob["params"]:
            names[v].append(name)
            shapes[v].append(tuple(shape))
        edge_index = d["edge_index"][:, self.edge_ptr[j]:self.edge_ptr[j + 1]].long()
        fields = {k: d[k][lo:hi] for k in (*_NODE_FIELDS, "groups", "shape")}
        return ArchGraph.create(
            **fields, param_names=names, param_shapes=shapes, edge_index=edge_index,
            name=blob["name"], spec=json.dumps(blob["spec"], sort_keys=True),
            in_shape=in_shape, num_classes=int(d["num_classes"][j]), s_max=s_max)
