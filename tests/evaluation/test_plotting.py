"""Figures: PNG files of the expected size, written atomically (nothing left behind on failure)."""

from __future__ import annotations

import struct

import networkx as nx
import numpy as np
import pytest
import torch

from causaldiff.evaluation.plotting import draw_graph, plot_sweep, save_figure, save_grid

PNG = b"\x89PNG\r\n\x1a\n"


def _size(path) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG
    return struct.unpack(">II", data[16:24])


def _images(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_grid_is_a_png_that_grows_with_rows_and_columns(tmp_path):
    one = save_grid([_images(6)], ["factual"], tmp_path / "a" / "one.png")
    three = save_grid([_images(6)] * 3, ["factual", "cf", "true"], tmp_path / "three.png", title="t")
    wide = save_grid([_images(12)], ["factual"], tmp_path / "wide.png")
    (w1, h1), (w3, h3), (ww, hw) = _size(one), _size(three), _size(wide)
    assert h3 > 2 * h1 and ww > w1  # one strip per row; one image per column
    # 120 dpi: a 6-column strip is max(4, 0.6 * 6) = 4 inches wide, less the trimmed margins
    assert 300 < w1 <= 4 * 120


def test_graph_and_sweep_are_pngs(tmp_path):
    g = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c")])
    assert _size(draw_graph(g, tmp_path / "dag.png", labels={n: n.upper() for n in g}, title="abc"))[0] > 0
    sweeps = {0.75: {0.0: {"CLD": {"mean": 1.3, "sem": 0.01}, "effectiveness": 0.1},
                     1.0: {"CLD": {"mean": 1.1, "sem": 0.02}, "effectiveness": 0.9, "in_sweep": True},
                     9.0: {"CLD": {"mean": 9.9, "sem": 0.0}, "effectiveness": 0.0, "in_sweep": False}},
              1.0: {0.0: {"CLD": {"mean": 1.2, "sem": 0.0}, "effectiveness": 0.2},
                    1.0: {"CLD": {"mean": 1.0, "sem": 0.0}, "effectiveness": 0.8}}}
    refs = {"CLD": [{"x": [0.0, 1.0], "y": [1.31, 1.06], "label": "paper"}, {"y": 1.313, "ls": ":"}]}
    w, h = _size(plot_sweep(sweeps, tmp_path / "sweep.png", keys=("CLD", "effectiveness"), title="s",
                            references=refs))
    assert (w, h) == (7 * 120, int(3.3 * 120))  # 3.5 inches per panel at 120 dpi, no trimming
    assert _size(plot_sweep({None: {0.0: {"m": 1.0}, 1.0: {"m": 0.5}}}, tmp_path / "one.png", keys=("m",)))


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    import matplotlib.pyplot as plt

    with pytest.raises(ValueError):
        save_figure(plt.figure(), tmp_path / "bad.png", facecolor="no such colour")
    assert list(tmp_path.iterdir()) == []
    path = save_grid([_images(2)], ["x"], tmp_path / "ok.png")
    before = path.read_bytes()
    with pytest.raises(ValueError):
        save_figure(plt.figure(), path, facecolor="no such colour")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ok.png"]
    assert plt.get_fignums() == []  # every figure closed, failed or not


def _dag_cases():
    return {"chain": nx.DiGraph([("a", "b"), ("b", "c")]),
            "diamond": nx.DiGraph([("x1", "x2"), ("x1", "x3"), ("x2", "x3"), ("x2", "x4"), ("x3", "x4")]),
            "shapes": nx.DiGraph([("shape", "size"), ("size", "intensity"), ("shape", "image"),
                                  ("size", "image"), ("intensity", "image")]),
            "wide": nx.DiGraph([("r", c) for c in "abcde"] + [("a", "z"), ("e", "z"), ("r", "z"), ("c", "y")])}


def _inside(point, box, margin=1e-9) -> bool:
    x, y, w, h = box
    return abs(point[0] - x) < w / 2 - margin and abs(point[1] - y) < h / 2 - margin


@pytest.mark.parametrize("name", ["chain", "diamond", "shapes", "wide"])
def test_dag_is_drawn_in_layers_without_overlaps_every_edge_pointing_down(name):
    """Nodes in layers by topological generation; no two boxes overlap; every edge is drawn, from
    the bottom of its tail's box to the top of its head's, y only decreasing along it, through no
    other box (edges that skip a layer go around its nodes)."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MPath

    from causaldiff.evaluation.plotting import dag_figure

    g = _dag_cases()[name]
    labels = {n: f"{n}\n[additive_noise]" for n in g}
    fig, lay = dag_figure(g, labels=labels, title="t")
    try:
        assert [sorted(layer) for layer in lay.layers] == [sorted(x) for x in nx.topological_generations(g)]
        ys = [lay.boxes[layer[0]][1] for layer in lay.layers]
        assert ys == sorted(ys, reverse=True) and len(set(ys)) == len(ys)  # roots on top, one row each
        for i, layer in enumerate(lay.layers):
            assert all(lay.boxes[n][1] == ys[i] for n in layer)
        nodes = list(g)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                (xa, ya, wa, ha), (xb, yb, wb, hb) = lay.boxes[a], lay.boxes[b]
                assert abs(xa - xb) >= (wa + wb) / 2 or abs(ya - yb) >= (ha + hb) / 2, (a, b)
        arrows = {p.get_gid(): p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)}
        assert set(arrows) == {f"edge:{u}->{v}" for u, v in g.edges}
        for (u, v), (verts, codes) in lay.edges.items():
            path = MPath(verts, codes)
            pts = path.interpolated(40).vertices
            assert np.all(np.diff(pts[:, 1]) <= 1e-9), (u, v)  # points down the layers
            (xu, yu, wu, hu), (xv, yv, wv, hv) = lay.boxes[u], lay.boxes[v]
            assert pts[0][1] == pytest.approx(yu - hu / 2) and abs(pts[0][0] - xu) <= wu / 2
            assert pts[-1][1] == pytest.approx(yv + hv / 2) and abs(pts[-1][0] - xv) <= wv / 2
            for n in g:
                assert not any(_inside(p, lay.boxes[n]) for p in pts), (u, v, n)  # never behind a node
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_dag_labels_inside_their_nodes_and_the_whole_title_shown():
    from matplotlib.patches import FancyBboxPatch

    from causaldiff.evaluation.plotting import dag_figure

    g = _dag_cases()["shapes"]
    labels = {n: f"{n}\n[{'additive_noise' if n != 'image' else 'diffusion'}]" for n in g}
    title = "shapes: Procedural shapes: shape -> size -> intensity, all three -> image (exact true counterfactuals)"
    fig, lay = dag_figure(g, labels=labels, title=title)
    try:
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        boxes = {p.get_gid(): p.get_window_extent(renderer) for p in ax.patches if isinstance(p, FancyBboxPatch)}
        for t in ax.texts:
            node = t.get_gid().removeprefix("label:")
            text, box = t.get_window_extent(renderer), boxes[f"node:{node}"]
            assert box.x0 < text.x0 and text.x1 < box.x1 and box.y0 < text.y0 and text.y1 < box.y1, node
        sup = fig._suptitle
        assert sup.get_text().replace("\n", " ") == title  # wrapped, never cut
        extent, page = sup.get_window_extent(renderer), fig.bbox
        assert page.x0 <= extent.x0 and extent.x1 <= page.x1
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
