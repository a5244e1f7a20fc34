"""MNIST IDX loader: parsing, checksums, folder resolution, clear errors."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from causaldiff.datasets import mnist
from causaldiff.datasets.base import DataSet, GroundTruth
from causaldiff.datasets.mnist import ENV_VAR, MNIST, MNISTConfig, load_mnist, locate, read_idx
from causaldiff.errors import DataError
from causaldiff.registry import DATASETS



def _shared() -> Path:
    """The first folder of the loader's search path ($CAUSALDIFF_MNIST_DIR first) holding the gzipped
    files (these tests copy and corrupt them), else that variable's folder or the first folder."""
    dirs = mnist.candidate_dirs()
    held = [d for d in dirs if all((d / f"{stem}.gz").is_file() for stem in mnist.FILES["test"])]
    return (held or dirs)[0]


SHARED = _shared()
needs_mnist = pytest.mark.skipif(
    not all((SHARED / f"{stem}.gz").is_file() for stem in mnist.FILES["test"]),
    reason=f"MNIST IDX files (.gz) not found (looked in {', '.join(map(str, mnist.candidate_dirs()))}): "
           f"set {ENV_VAR} to their folder")


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_read_idx_known_answer(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x").write_bytes(_idx(a))
    (tmp_path / "x.gz").write_bytes(gzip.compress(_idx(a)))
    assert np.array_equal(read_idx(tmp_path / "x"), a)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), a)
    (tmp_path / "bad").write_bytes(_idx(a)[:-1])
    with pytest.raises(DataError, match="header promises"):
        read_idx(tmp_path / "bad")


@needs_mnist
def test_load_test_split_from_shared(monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(SHARED))
    x, y = load_mnist(split="test")
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.long and y[:5].tolist() == [7, 2, 1, 0, 4]
    assert x.min().item() == -1 and x.max().item() == 1
    assert torch.bincount(y).tolist()[:3] == [980, 1135, 1032]
    first, _ = load_mnist(split="test", n=10)
    assert torch.equal(first, x[:10])
    a, la = load_mnist(split="test", n=50, seed=3)
    b, lb = load_mnist(split="test", n=50, seed=3)
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(la, y[:50])


@needs_mnist
def test_raw_files_and_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in mnist.FILES["test"]:
        (raw / stem).write_bytes(gzip.decompress((SHARED / f"{stem}.gz").read_bytes()))
    x, y = load_mnist(tmp_path, split="test", n=20)
    ref, ref_y = load_mnist(SHARED, split="test", n=20)
    assert torch.equal(x, ref) and torch.equal(y, ref_y)


@needs_mnist
def test_checksum_mismatch_is_refused(tmp_path):
    for stem in mnist.FILES["test"]:
        shutil.copy(SHARED / f"{stem}.gz", tmp_path / f"{stem}.gz")
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(labels.read_bytes()))
    data[100] = (data[100] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError, match="SHA256.*does not match"):
        load_mnist(tmp_path, split="test")
    x, y = load_mnist(tmp_path, split="test", verify_checksums=False)
    assert y[100 - 8].item() == data[100]  # labels start after an 8-byte header


def test_missing_files_error_says_where(tmp_path):
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path / "nowhere", split="train")
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path / "nowhere") in msg and ENV_VAR in msg and "download=True" in msg


def test_candidate_dirs_order(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert mnist.candidate_dirs(tmp_path / "arg") == [tmp_path / "arg"]
    dirs = mnist.candidate_dirs()
    assert dirs[0] == tmp_path / "env"
    assert any(d.parts[-3:] == ("shared", "data", "mnist") for d in dirs)


def test_bad_arguments():
    with pytest.raises(DataError, match="split"):
        load_mnist(split="validation")
    with pytest.raises(DataError, match="n must be"):
        load_mnist(split="test", n=10_001)


def test_wrong_shapes_are_refused(tmp_path):
    for stem, arr in zip(mnist.FILES["test"], (np.zeros((5, 28, 28)), np.zeros(5))):
        (tmp_path / stem).write_bytes(_idx(arr))
    with pytest.raises(DataError, match="SHA256"):
        load_mnist(tmp_path, split="test")
    with pytest.raises(DataError, match="unexpected shapes"):
        load_mnist(tmp_path, split="test", verify_checksums=False)


def test_registered_data_set_without_truth(tmp_path):
    assert DATASETS.get("mnist") is MNIST
    ds = MNIST(MNISTConfig.model_validate({}))
    assert isinstance(ds, DataSet) and not isinstance(ds, GroundTruth)
    assert set(ds.graph().edges) == {("digit", "image")}
    with pytest.raises(DataError, match="not found"):
        MNIST(root=str(tmp_path)).load("test", 4)
    assert locate("test", tmp_path) is None


@needs_mnist
def test_load_equals_the_spec_path_of_before():
    """``load`` gives what ``causaldiff.build.load_rows`` gave: ``load_mnist(root, split, n,
    seed=seed + (0 train | 1 test))`` as ``{"digit": labels, "image": images}``."""
    ds = DATASETS.get("mnist")(MNISTConfig.model_validate({"root": str(SHARED)}))
    for split, offset in (("train", 0), ("test", 1)):
        images, labels = load_mnist(str(SHARED), split=split, n=30, seed=4 + offset)
        draw = ds.load(split, 30, seed=4)
        assert draw.exogenous == {} and set(draw.values) == {"digit", "image"}
        assert torch.equal(draw.values["digit"], labels) and torch.equal(draw.values["image"], images)
        assert draw.values["image"].dtype == torch.float32 and draw.values["digit"].dtype == torch.long
    assert locate("test", SHARED) is not None


def test_the_environment_variable_is_where_files_are_read(tmp_path, monkeypatch):
    """``CAUSALDIFF_MNIST_DIR`` (no ``root``) is the folder read: a synthetic test split there loads."""
    images = np.zeros((mnist.SIZES["test"], 28, 28), dtype=np.uint8)
    images[:, 0, 0] = 255
    labels = (np.arange(mnist.SIZES["test"]) % 10).astype(np.uint8)
    for stem, arr in zip(mnist.FILES["test"], (images, labels)):
        (tmp_path / stem).write_bytes(_idx(arr))
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert locate("test") == (tmp_path / mnist.FILES["test"][0], tmp_path / mnist.FILES["test"][1])
    x, y = load_mnist(split="test", n=12, verify_checksums=False)
    assert y.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert x[:, 0, 0, 0].eq(1).all() and x[:, 0, 1:, :].eq(-1).all()
