"""The published Morpho-MNIST files (DeepSCM's thickness/intensity set, as the benchmark of
Melistas et al. 2024 ships it) and the MNIST digits they were rendered from.

The folder (``../shared/data/morphomnist-deepscm``: its ``README.md`` describes the files) is
``$CAUSALDIFF_MORPHO_DIR`` when set, else ``../shared/data/morphomnist-deepscm`` relative to the
current directory, then to the repository's parent.  MNIST is found by
:func:`causaldiff.datasets.mnist.locate` (``$CAUSALDIFF_MNIST_DIR``, ``../shared/data/mnist``, ...).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from causaldiff.datasets.mnist import DataError, locate, read_idx, verify

#: environment variable naming the folder of the published files
ENV_VAR = "CAUSALDIFF_MORPHO_DIR"
#: the folder's name under ``shared/data``
FOLDER = "morphomnist-deepscm"
#: file-name prefix of each split
PREFIX = {"train": "train", "test": "t10k"}


def candidate_dirs() -> list[Path]:
    """The folders searched for the published files, in order."""
    dirs = [Path(os.environ[ENV_VAR]).expanduser()] if os.environ.get(ENV_VAR) else []
    dirs.append(Path.cwd().parent / "shared" / "data" / FOLDER)
    dirs.append(Path(__file__).resolve().parents[2].parent / "shared" / "data" / FOLDER)
    return dirs


def data_dir() -> Path | None:
    """The first candidate folder holding ``t10k-morpho.csv``, or ``None``."""
    return next((d for d in candidate_dirs() if (d / "t10k-morpho.csv").is_file()), None)


def require_dir() -> Path:
    """:func:`data_dir`, or :class:`DataError` naming the folders searched."""
    found = data_dir()
    if found is None:
        raise DataError("the published Morpho-MNIST files were not found in any of "
                        f"{[str(d) for d in candidate_dirs()]}: set {ENV_VAR}")
    return found


def _split(split: str) -> str:
    if split not in PREFIX:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    return PREFIX[split]


def targets(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The thickness and intensity each image was rendered with (float32 ``(N,)`` each: the
    generator's torch float32 draws, written exactly)."""
    path = require_dir() / f"{_split(split)}-morpho.csv"
    with path.open() as f:
        header = f.readline().strip().split(",")
    if header != ["index", "thickness", "intensity"]:
        raise DataError(f"{path}: expected the columns index,thickness,intensity, got {header}")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    if not np.array_equal(table[:, 0], np.arange(len(table))):
        raise DataError(f"{path}: the index column is not 0..{len(table) - 1}")
    return table[:, 1].astype(np.float32), table[:, 2].astype(np.float32)


def t10k_images() -> np.ndarray:
    """The published test images (uint8 ``(10000, 28, 28)``)."""
    return read_idx(require_dir() / "t10k-images-idx3-ubyte.gz")


def labels(split: str) -> np.ndarray:
    """The digit labels of a split (int64 ``(N,)``; the same as MNIST's)."""
    return read_idx(require_dir() / f"{_split(split)}-labels-idx1-ubyte.gz").astype(np.int64)


def mnist_digits(split: str) -> np.ndarray:
    """The original MNIST handwriting of a split (uint8 ``(N, 28, 28)``), checksum-verified."""
    paths = locate(split)
    if paths is None:
        raise DataError(f"MNIST {split} files not found: set CAUSALDIFF_MNIST_DIR")
    verify(paths[0])
    return read_idx(paths[0])


__all__ = ["ENV_VAR", "FOLDER", "PREFIX", "candidate_dirs", "data_dir", "require_dir", "targets",
           "t10k_images", "labels", "mnist_digits"]
