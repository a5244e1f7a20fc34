"""Figures of the evaluation: image grids, DAG drawings and guidance-scale sweeps.

matplotlib (Agg backend, no display) is imported when a figure is drawn; every PNG is written
atomically (a sibling temporary file, then ``os.replace``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
from torch import Tensor

from ..optional import optional_import
from ..storage import write_atomic


def pyplot() -> Any:
    optional_import("matplotlib", "plot", "figures").use("Agg")
    return optional_import("matplotlib.pyplot", "plot", "figures")


def save_figure(fig: Any, path: str | os.PathLike, **savefig: Any) -> Path:
    """``fig.savefig(path, **savefig)`` as a PNG, atomically (parents created); the figure is closed."""
    try:
        return write_atomic(path, lambda f: fig.savefig(f, format="png", **savefig), binary=True)
    finally:
        pyplot().close(fig)


def save_grid(rows: Sequence[Tensor], labels: Sequence[str], out: str | os.PathLike, title: str = "", *,
              columns: Sequence[str] | None = None, cell: float = 0.6) -> Path:
    """A PNG grid: one row of images per entry of ``rows`` (each ``(n, C, H, W)`` in [-1, 1]),
    labelled on the left, ``cell`` inches per image, ``columns`` labelling the images above the grid."""
    from torchvision.utils import make_grid

    plt = pyplot()
    n, width = rows[0].shape[0], rows[0].shape[-1]
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(4, cell * n), 1.5 * cell * len(rows) + 0.5), squeeze=False)
    for i, (ax, imgs, label) in enumerate(zip(axes[:, 0], rows, labels)):
        grid = make_grid(imgs.detach().float().cpu().clamp(-1, 1), nrow=imgs.shape[0], padding=1,
                         normalize=True, value_range=(-1, 1))
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_yticks([])
        ax.set_xticks([1 + j * (width + 1) + width / 2 - 0.5 for j in range(n)] if columns and i == 0 else [])
        if columns and i == 0:
            ax.set_xticklabels(columns, fontsize=8)
            ax.xaxis.tick_top()
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out, dpi=120, bbox_inches="tight")


#: DAG drawings are laid out in inches (one data unit = one inch), so text sizes are known
_FONT = 10
_CHAR_W, _LINE_H = 0.62 * _FONT / 72, 1.25 * _FONT / 72  # DejaVu Sans: mean glyph width < 0.62 em
_PAD, _GAP, _LAYER_GAP, _SIDE = 0.16, 0.45, 0.7, 0.3


@dataclass(frozen=True)
class DagLayout:
    """Where :func:`draw_graph` puts things, in inches: ``boxes[node] = (x, y, width, height)``
    (centre and size), ``layers`` the topological generations (roots first, drawn top down), and
    ``edges[(u, v)]`` the polyline/Bezier control points of each edge, from the bottom of ``u``'s box
    to the top of ``v``'s, with ``codes`` (matplotlib path codes)."""

    boxes: dict[Any, tuple[float, float, float, float]]
    layers: list[list[Any]]
    edges: dict[tuple[Any, Any], tuple[list[tuple[float, float]], list[int]]]


def _layer_order(graph: nx.DiGraph, layers: list[list[Any]], widths: Mapping[Any, float]) -> dict[Any, float]:
    """Node centres along x: each layer centred on 0, ordered by the mean x of its parents."""
    xs: dict[Any, float] = {}
    for layer in layers:
        def key(n: Any) -> tuple[float, str]:
            ps = [xs[p] for p in graph.predecessors(n)]
            return (sum(ps) / len(ps) if ps else 0.0, str(n))
        layer.sort(key=key)
        total = sum(widths[n] for n in layer) + _GAP * (len(layer) - 1)
        x = -total / 2
        for n in layer:
            xs[n] = x + widths[n] / 2
            x += widths[n] + _GAP
    return xs


def _gaps(layer: list[Any], boxes: Mapping[Any, tuple[float, float, float, float]]) -> list[tuple[float, float]]:
    """The free x-intervals of a layer an edge may pass through: left of it, between boxes, right of it."""
    spans = [(boxes[n][0] - boxes[n][2] / 2, boxes[n][0] + boxes[n][2] / 2) for n in layer]
    inner = [(a[1], b[0]) for a, b in zip(spans, spans[1:])]
    return [(spans[0][0] - 1.0, spans[0][0])] + inner + [(spans[-1][1], spans[-1][1] + 1.0)]


def _route(u: Any, v: Any, layer_of: Mapping[Any, int], layers: list[list[Any]],
           boxes: Mapping[Any, tuple[float, float, float, float]], load: dict) -> list[tuple[float, float]]:
    """The inner waypoints of ``u -> v``: for each layer it skips, an entry and an exit point on a
    vertical line through a gap of that layer (the nearest, least used; outer sides balanced)."""
    (xu, _, _, _), (xv, _, _, _) = boxes[u], boxes[v]
    points: list[tuple[float, float]] = []
    sides: set = set()
    for i in range(layer_of[u] + 1, layer_of[v]):
        y = boxes[layers[i][0]][1]
        h = max(boxes[n][3] for n in layers[i])
        target = xu + (xv - xu) * (i - layer_of[u]) / (layer_of[v] - layer_of[u])
        gaps = _gaps(layers[i], boxes)
        side = {0: "left", len(gaps) - 1: "right"}

        def x_in(j: int) -> float:
            lo, hi = gaps[j]
            k = load.get((i, j), 0)
            if j == 0:
                return hi - _SIDE - 0.18 * k
            if j == len(gaps) - 1:
                return lo + _SIDE + 0.18 * k
            return (lo + hi) / 2 + 0.1 * k * (-1) ** k

        def cost(j: int) -> tuple[float, int]:
            turn = abs(x_in(j) - points[-1][0]) if points else 0.0  # keep to one side of a column
            return abs(x_in(j) - target) + turn + 0.6 * load.get((i, j), 0) + 0.3 * load.get(side.get(j), 0), j

        j = min(range(len(gaps)), key=cost)
        x = x_in(j)
        load[(i, j)] = load.get((i, j), 0) + 1
        sides.add(side.get(j))
        points += [(x, y + h / 2 + 0.05), (x, y - h / 2 - 0.05)]
    for s in sides - {None}:
        load[s] = load.get(s, 0) + 1
    return points


def _ports(edges: Mapping[tuple[Any, Any], list[tuple[float, float]]], boxes: Mapping[Any, tuple],
           end: int) -> dict[tuple[Any, Any], float]:
    """The x where each edge leaves (``end`` 0) or enters (1) its box: spread over the middle of the
    box's side, in the order of the x each edge comes from or goes to."""
    out: dict[tuple[Any, Any], float] = {}
    for node in boxes:
        mine = [e for e in edges if e[end] == node]

        def toward(e: tuple[Any, Any]) -> float:
            inner = edges[e]
            return (inner[0] if end == 0 else inner[-1])[0] if inner else boxes[e[1 - end]][0]

        mine.sort(key=lambda e: (toward(e), str(e)))
        x, _, w, _ = boxes[node]
        for k, e in enumerate(mine):
            out[e] = x if len(mine) == 1 else x - 0.3 * w + 0.6 * w * k / (len(mine) - 1)
    return out


def _smooth(points: list[tuple[float, float]]) -> tuple[list[tuple[float, float]], list[int]]:
    """A path through ``points`` (pairs inside a skipped layer joined by a vertical line, the rest by
    cubic Beziers with vertical tangents, so y only decreases and no segment enters a layer's band)."""
    from matplotlib.path import Path as MPath

    verts, codes = [points[0]], [MPath.MOVETO]
    for k, (a, b) in enumerate(zip(points, points[1:])):
        if k % 2 == 1:  # through a skipped layer
            verts.append(b)
            codes.append(MPath.LINETO)
            continue
        mid = (a[1] + b[1]) / 2
        verts += [(a[0], mid), (b[0], mid), b]
        codes += [MPath.CURVE4] * 3
    return verts, codes


def dag_layout(graph: nx.DiGraph, labels: Mapping[Any, str]) -> DagLayout:
    """Nodes in layers by topological generation, each box sized to its label; edges routed down
    the layers, around the nodes of the layers they skip."""
    layers = [list(layer) for layer in nx.topological_generations(graph)]
    size = {n: (max(len(line) for line in labels[n].split("\n")) * _CHAR_W + 2 * _PAD,
                labels[n].count("\n") * _LINE_H + _LINE_H + 2 * _PAD) for n in graph}
    xs = _layer_order(graph, layers, {n: w for n, (w, _) in size.items()})
    boxes, y = {}, 0.0
    for layer in layers:
        h = max(size[n][1] for n in layer)
        for n in layer:
            boxes[n] = (xs[n], y - h / 2, size[n][0], size[n][1])
        y -= h + _LAYER_GAP
    layer_of = {n: i for i, layer in enumerate(layers) for n in layer}
    load: dict = {}
    inner = {(u, v): _route(u, v, layer_of, layers, boxes, load)
             for u, v in sorted(graph.edges, key=lambda e: (layer_of[e[0]] - layer_of[e[1]], str(e)))}
    tails, heads = _ports(inner, boxes, 0), _ports(inner, boxes, 1)
    edges = {}
    for (u, v), points in inner.items():
        (_, yu, _, hu), (_, yv, _, hv) = boxes[u], boxes[v]
        edges[(u, v)] = _smooth([(tails[(u, v)], yu - hu / 2), *points, (heads[(u, v)], yv + hv / 2)])
    return DagLayout(boxes, layers, edges)


def dag_figure(graph: nx.DiGraph, *, labels: Mapping[Any, str] | None = None, title: str = "") -> tuple[Any, DagLayout]:
    """The figure of :func:`draw_graph` and its layout (the caller closes the figure)."""
    import textwrap

    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MPath

    plt = pyplot()
    labels = {n: str((labels or {}).get(n, n)) for n in graph}
    lay = dag_layout(graph, labels)
    x0 = min(x - w / 2 for x, _, w, _ in lay.boxes.values()) - 1.0
    x1 = max(x + w / 2 for x, _, w, _ in lay.boxes.values()) + 1.0
    y0 = min(y - h / 2 for _, y, _, h in lay.boxes.values()) - 0.2
    fig = plt.figure(figsize=(max(x1 - x0, 3.0), 0.4 - y0))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x0 + max(x1 - x0, 3.0))
    ax.set_ylim(y0, 0.4)
    ax.axis("off")
    for (u, v), (verts, codes) in lay.edges.items():
        ax.add_patch(FancyArrowPatch(path=MPath(verts, codes), arrowstyle="-|>", mutation_scale=14, lw=1.3,
                                     color="#2b5d8a", shrinkA=0, shrinkB=0, zorder=1, gid=f"edge:{u}->{v}"))
    for n, (x, y, w, h) in lay.boxes.items():
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.08",
                                    fc="#dbe9f6", ec="#2b5d8a", lw=1.3, zorder=2, gid=f"node:{n}"))
        ax.text(x, y, labels[n], ha="center", va="center", fontsize=_FONT, zorder=3, gid=f"label:{n}",
                linespacing=1.25)
    if title:
        width = max(20, int(fig.get_figwidth() * 72 / (0.6 * _FONT)))
        fig.suptitle(textwrap.fill(title, width), fontsize=_FONT, y=1.0, va="bottom")
    return fig, lay


def draw_graph(graph: nx.DiGraph, out: str | os.PathLike, *, labels: Mapping[str, str] | None = None,
               title: str = "") -> Path:
    """The DAG as a PNG: nodes in layers by topological generation (roots on top), labels inside
    their boxes, edges pointing down the layers and curving around the nodes of layers they skip,
    the whole title wrapped above."""
    fig, _ = dag_figure(graph, labels=labels, title=title)
    return save_figure(fig, out, dpi=120, bbox_inches="tight", pad_inches=0.15)


_COLORS = ("#2b5d8a", "#e08a1e", "#4f9a4f", "#8a2b7d")


def _plot_lines(ax: Any, sweeps: Mapping[Any, Mapping[float, Mapping[str, Any]]], key: str) -> None:
    """One line per entry of ``sweeps`` (mean ± sem band for ``{"mean", "sem"}`` values)."""
    for color, (f, per_scale) in zip(_COLORS, sorted(sweeps.items(), key=lambda kv: (kv[0] is None, kv[0]))):
        xs = sorted(x for x, r in per_scale.items() if r.get("in_sweep", True))
        vals = [per_scale[x][key] for x in xs]
        mean = [v["mean"] if isinstance(v, dict) else v for v in vals]
        label = None if f is None else f"causaldiff, abduction {f:g}"
        ax.plot(xs, mean, "o-", color=color, ms=4, label=label)
        if isinstance(vals[0], dict):
            sem = [v["sem"] for v in vals]
            ax.fill_between(xs, [m - e for m, e in zip(mean, sem)], [m + e for m, e in zip(mean, sem)],
                            color=color, alpha=0.2)


def plot_sweep(sweeps: Mapping[Any, Mapping[float, Mapping[str, Any]]], path: str | os.PathLike, *,
               keys: Sequence[str], title: str = "",
               references: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
               higher_is_better: Sequence[str] = ("effectiveness",)) -> Path:
    """Metrics against the guidance scale (Diff-SCM's CLD figure): a panel per key, a line per
    abduction fraction of ``{fraction: {scale: row}}`` (None: unlabelled); ``references[key]``: lines
    ``{"x": [...], "y": [...], "fmt": ..., **kw}`` or horizontal ``{"y": v, **kw}``."""
    plt = pyplot()
    references = references or {}
    fig, axes = plt.subplots(1, len(keys), figsize=(3.5 * len(keys), 3.3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        _plot_lines(ax, sweeps, key)
        for ref in references.get(key, ()):
            kw = {k: v for k, v in ref.items() if k not in ("x", "y", "fmt")}
            if "x" in ref:
                ax.plot(ref["x"], ref["y"], ref.get("fmt", "s--"), **kw)
            else:
                ax.axhline(ref["y"], **kw)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
        ax.set_xlabel("guidance scale s")
        ax.set_title(key + (" (higher is better)" if key in higher_is_better else " (lower is better)"),
                     fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


__all__ = ["pyplot", "save_figure", "save_grid", "DagLayout", "dag_layout", "dag_figure", "draw_graph", "plot_sweep"]
