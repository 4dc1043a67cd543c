"""Pictures of architecture graphs: Graphviz DOT text and matplotlib images."""

from __future__ import annotations

import os
from pathlib import Path

from ..fileio import atomic_path
from ..plotting import pyplot, save_figure
from .archgraph import ArchGraph
from .bits import bits_label
from .ops import PRIMITIVES, QUANTIZABLE_OPS

__all__ = ["to_dot", "draw", "node_label", "op_color"]

_PALETTE = ["#bdbdbd", "#4e79a7", "#76b7b2", "#59a14f", "#f28e2b", "#edc948", "#b07aa1",
            "#ff9da7", "#9c755f", "#e15759", "#d37295", "#86bcb6", "#fabfd2", "#8cd17d",
            "#b6992d"]


def op_color(op_id: int) -> str:
    """A fixed colour per primitive id (hex string)."""
    return _PALETTE[op_id % len(_PALETTE)]


def node_label(graph: ArchGraph, v: int) -> str:
    """Two-line label: the op (with kernel size and activation) and its bit-widths."""
    op = PRIMITIVES[int(graph.op[v])]
    out, _, kh, kw = graph.shape[v].tolist()
    text = op
    if op in QUANTIZABLE_OPS and kh:
        text += f" {kh}x{kw}" if op != "linear" else ""
        text += f" ({out})"
    act = graph.act_names()[v]
    if act != "none":
        text += f"+{act}"
    w_bits, a_bits = int(graph.w_bits[v]), int(graph.a_bits[v])
    if op in QUANTIZABLE_OPS:
        text += "\n" + bits_label(w_bits, a_bits)
    return text


def to_dot(graph: ArchGraph) -> str:
    """The DAG as Graphviz DOT text, nodes filled by op and labelled with bits."""
    lines = [f'digraph "{graph.name}" {{', "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];']
    for v in range(graph.num_nodes):
        label = node_label(graph, v).replace('"', "'").replace("\n", "\\n")
        lines.append(f'  n{v} [label="{label}", fillcolor="{op_color(int(graph.op[v]))}"];')
    for u, v in graph.edge_index.t().tolist():
        lines.append(f"  n{u} -> n{v};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(graph: ArchGraph, path: str | os.PathLike) -> Path:
    """Write a picture of ``graph`` to ``path``.

    ``.dot`` writes Graphviz text; ``.png``, ``.svg`` and ``.pdf`` draw with matplotlib
    (extra ``plots``), one row per ``level_fw``, nodes coloured by op.

    Returns:
        The path written.

    Raises:
        ValueError: unsupported suffix.
        ImportError: matplotlib is missing for an image format.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".dot":
        with atomic_path(path) as tmp:
            tmp.write_text(to_dot(graph))
        return path
    if suffix not in (".png", ".svg", ".pdf"):
        raise ValueError(f"cannot draw to {path.name!r}: use .dot, .png, .svg or .pdf")
    try:
        plt = pyplot(required=True)
    except ImportError as err:
        raise ImportError(f"{err} (or write a .dot file)") from err

    levels = graph.level_fw.tolist()
    rows: dict[int, list[int]] = {}
    for v, level in enumerate(levels):
        rows.setdefault(level, []).append(v)
    pos = {v: (i - (len(members) - 1) / 2, -level)
           for level, members in rows.items() for i, v in enumerate(members)}
    width = max(len(m) for m in rows.values())
    fig, ax = plt.subplots(figsize=(max(4.0, 2.2 * width), max(3.0, 0.55 * len(rows))))
    for u, v in graph.edge_index.t().tolist():
        (x0, y0), (x1, y1) = pos[u], pos[v]
        ax.annotate("", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
                    arrowprops=dict(arrowstyle="->", color="#555555", lw=0.6))
    for v, (x, y) in pos.items():
        ax.text(x, y, node_label(graph, v), ha="center", va="center", fontsize=6,
                bbox=dict(boxstyle="round,pad=0.25", fc=op_color(int(graph.op[v])),
                          ec="#333333", lw=0.4))
    ax.set_xlim(-width / 2 - 0.5, width / 2 + 0.5)
    ax.set_ylim(-max(rows) - 0.7, 0.7)
    ax.set_axis_off()
    ax.set_title(f"{graph.name}: {graph.num_nodes} nodes, {len(rows)} levels", fontsize=9)
    save_figure(fig, path, dpi=110)
    return path
