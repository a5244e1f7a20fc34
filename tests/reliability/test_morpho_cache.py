"""Reliability, second round (issue 25): a truncated, corrupt or foreign chunk of the Morpho-MNIST
render cache (benchmarks/morphomnist/render_split.py) is re-rendered (truncated or empty) or
refused with one DataError naming the file, never a numpy or zipfile traceback."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.morphomnist import published
from benchmarks.morphomnist.render_split import chunk_path, load_rendered, render_split
from causaldiff.datasets import mnist
from causaldiff.errors import DataError

pytestmark = pytest.mark.skipif(
    published.data_dir() is None or mnist.locate("test") is None,
    reason=f"needs ../shared/data/{published.FOLDER} (or ${published.ENV_VAR}) and the MNIST test digits")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two rows of the test split rendered once: the chunk's bytes and images."""
    folder = tmp_path_factory.mktemp("cache")
    render_split(folder, "test", n=2, chunk=2)
    return chunk_path(folder, "test", 0, 2).read_bytes(), load_rendered(folder, "test", 2, chunk=2)


def damaged(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "empty":
        return b""
    if how == "one byte":
        return data[:1]
    start = data.index(b"images.npy") + 200  # inside the compressed images: the zip stays a zip
    return data[:start] + bytes(b ^ 0xFF for b in data[start:start + 64]) + data[start + 64:]


@pytest.mark.parametrize("how", ["truncated", "empty", "one byte"])
def test_a_truncated_chunk_is_re_rendered(tmp_path, rendered, how):
    path = chunk_path(tmp_path, "test", 0, 2)
    path.write_bytes(damaged(rendered[0], how))
    with pytest.raises(DataError, match=r"test-00000-00002.npz: not a readable chunk"):
        load_rendered(tmp_path, "test", 2, chunk=2)
    render_split(tmp_path, "test", n=2, chunk=2)
    np.testing.assert_array_equal(load_rendered(tmp_path, "test", 2, chunk=2), rendered[1])


@pytest.mark.parametrize("how", ["corrupt"])
def test_a_corrupt_chunk_is_refused_naming_the_file(tmp_path, rendered, how):
    path = chunk_path(tmp_path, "test", 0, 2)
    path.write_bytes(damaged(rendered[0], how))
    with pytest.raises(DataError, match=r"test-00000-00002.npz: not a readable chunk .*delete it"):
        load_rendered(tmp_path, "test", 2, chunk=2)


@pytest.mark.parametrize("arrays", [{"pictures": np.zeros(2)}, {"images": np.zeros(2), "index": np.arange(2)}])
def test_a_foreign_npz_is_refused_naming_the_file(tmp_path, arrays):
    np.savez(chunk_path(tmp_path, "test", 0, 2), **arrays)
    with pytest.raises(DataError, match=r"test-00000-00002.npz: not a readable chunk"):
        load_rendered(tmp_path, "test", 2, chunk=2)
