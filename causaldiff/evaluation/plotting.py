"""Figures of the evaluation: image grids, DAG drawings and guidance-scale sweeps.

matplotlib (Agg backend, no display) is imported when a figure is drawn; every PNG is written
atomically (a sibling temporary file, then ``os.replace``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
from torch import Tensor


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, **savefig: Any) -> Path:
    """``fig.savefig(path, **savefig)`` as a PNG, atomically (parents created); the figure is closed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", **savefig)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _pyplot().close(fig)
    return path


def save_grid(rows: Sequence[Tensor], labels: Sequence[str], out: str | os.PathLike, title: str = "") -> Path:
    """A PNG grid: one row of images per entry of ``rows`` (each ``(n, C, H, W)`` in [-1, 1])."""
    from torchvision.utils import make_grid

    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(4, 0.6 * rows[0].shape[0]), 0.9 * len(rows) + 0.5),
                             squeeze=False)
    for ax, imgs, label in zip(axes[:, 0], rows, labels):
        grid = make_grid(imgs.detach().float().cpu().clamp(-1, 1), nrow=imgs.shape[0], padding=1,
                         normalize=True, value_range=(-1, 1))
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out, dpi=120, bbox_inches="tight")


def draw_graph(graph: nx.DiGraph, out: str | os.PathLike, *, labels: Mapping[str, str] | None = None,
               title: str = "") -> Path:
    """The DAG drawn in layers (a node's layer: its longest path from a root), roots on top."""
    plt = _pyplot()
    g = nx.DiGraph(graph)
    for n in nx.topological_sort(g):
        g.nodes[n]["layer"] = max((g.nodes[p]["layer"] + 1 for p in g.predecessors(n)), default=0)
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal", scale=2.0)
    pos = {k: (x, -y) for k, (x, y) in pos.items()}
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(g)), 3.5))
    nx.draw_networkx(g, pos, ax=ax, node_color="#dbe9f6", node_size=2600, edgecolors="#2b5d8a",
                     arrowsize=18, font_size=10, labels=dict(labels) if labels else {n: n for n in g})
    ax.set_title(title[:90], fontsize=10)
    ax.axis("off")
    return save_figure(fig, out, dpi=120, bbox_inches="tight")


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
    """Metrics against the guidance scale, one panel per key and one line per abduction fraction
    (``{fraction: {scale: row}}``; fraction None: an unlabelled line), like Diff-SCM's CLD figure.

    ``references[key]``: lines to compare with, each ``{"x": [...], "y": [...], "fmt": ..., **kw}``
    (points) or ``{"y": v, **kw}`` (a horizontal line).
    """
    plt = _pyplot()
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


__all__ = ["save_figure", "save_grid", "draw_graph", "plot_sweep"]
