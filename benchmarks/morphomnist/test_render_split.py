"""Rendering a split into the chunked cache: atomic chunks, resumable, checked on reading."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.morphomnist import published
from benchmarks.morphomnist.render_split import chunk_path, load_rendered, render_split
from causaldiff.datasets import mnist
from causaldiff.datasets.mnist import DataError

pytestmark = pytest.mark.skipif(
    published.data_dir() is None or mnist.locate("test") is None,
    reason=f"needs ../shared/data/{published.FOLDER} (or ${published.ENV_VAR}) and the MNIST "
           "test digits (../shared/data/mnist or $CAUSALDIFF_MNIST_DIR)")


def test_render_resume_and_read_back(tmp_path):
    paths = render_split(tmp_path, "test", n=5, chunk=3)
    assert [p.name for p in paths] == ["test-00000-00003.npz", "test-00003-00005.npz"]
    images = load_rendered(tmp_path, "test", 5, chunk=3)
    np.testing.assert_array_equal(images, published.t10k_images()[:5])  # the published ones
    assert not list(tmp_path.glob(".*.tmp"))
    stamps = [p.stat().st_mtime_ns for p in paths]
    paths[1].unlink()
    render_split(tmp_path, "test", n=5, chunk=3)  # resumes: only the missing chunk
    assert paths[0].stat().st_mtime_ns == stamps[0] and paths[1].exists()
    np.testing.assert_array_equal(load_rendered(tmp_path, "test", 5, chunk=3), images)


def test_reading_refuses_missing_or_foreign_chunks(tmp_path):
    with pytest.raises(DataError, match="test-00000-00002.npz: missing"):
        load_rendered(tmp_path, "test", 2, chunk=2)
    path = chunk_path(tmp_path, "test", 0, 2)
    np.savez(path, images=np.zeros((2, 28, 28), np.uint8), index=np.arange(2),
             thickness=np.ones(2, np.float32), intensity=np.ones(2, np.float32))
    with pytest.raises(DataError, match="not those of test 0..2"):
        load_rendered(tmp_path, "test", 2, chunk=2)
    with pytest.raises(ValueError, match="n must lie in 1..10000"):
        render_split(tmp_path, "test", n=0)
