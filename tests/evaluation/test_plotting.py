"""Figures: PNG files of the expected size, written atomically (nothing left behind on failure)."""

from __future__ import annotations

import struct

import networkx as nx
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
