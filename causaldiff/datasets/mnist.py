"""MNIST from the four standard IDX files (``.gz`` or raw), checksum-verified: :class:`MNIST`, the
registered data set ``"mnist"`` (``digit -> image``, no ground truth).

The files are looked for (first match wins, each folder also in torchvision's ``MNIST/raw/``) in the
``root`` argument, ``$CAUSALDIFF_MNIST_DIR``, ``../shared/data/mnist`` from the current directory
then from the repository holding this package, and ``~/.cache/causaldiff/mnist``, where only
``download=True`` puts them (through torchvision).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from functools import lru_cache
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ..errors import DataError
from ..registry import DATASETS
from .base import DataSet, Draw, split_seed

ENV_VAR = "CAUSALDIFF_MNIST_DIR"

#: The four files per split: (images, labels).
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: SHA256 of the gzipped files (as distributed) and of the uncompressed IDX files.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "35d2d5d91dc53458c7bc9d9e6bb5a62541ea629047b6473795dbe2b3362097d6",
    "train-labels-idx1-ubyte.gz": "37a3a6534748c1da3420dcd1a20530cf44ec3b990220dab568f2aba57e935978",
    "t10k-images-idx3-ubyte.gz": "6fa0ce746b15ea5b18ea2af97be32afb13077ddc76a63a32c5a9c112593a3667",
    "t10k-labels-idx1-ubyte.gz": "ee1468ed4b8b9a1d34c7847ff6f1d2546c9a2829a4080d5f6e3c6193130521d0",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SIZES = {"train": 60_000, "test": 10_000}
_CACHE_DIR = Path.home() / ".cache" / "causaldiff" / "mnist"


def candidate_dirs(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched, in order (see the module docstring)."""
    if root is not None:
        return [Path(root).expanduser()]
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs.append(Path.cwd().parent / "shared" / "data" / "mnist")
    repo = Path(__file__).resolve().parents[2]
    dirs.append(repo.parent / "shared" / "data" / "mnist")
    dirs.append(_CACHE_DIR)
    unique: dict[Path, Path] = {}
    for d in dirs:
        unique.setdefault(d.resolve(), d)
    return list(unique.values())


def _find(folder: Path, stem: str) -> Path | None:
    for sub in (folder, folder / "MNIST" / "raw"):
        for name in (stem + ".gz", stem):
            if (sub / name).is_file():
                return sub / name
    return None


def _locate(split: str, dirs: list[Path]) -> tuple[Path, Path] | None:
    for d in dirs:
        found = [_find(d, stem) for stem in FILES[split]]
        if all(found):
            return found[0], found[1]
    return None


def locate(split: str, root: str | os.PathLike | None = None) -> tuple[Path, Path] | None:
    """The (images, labels) files of ``split`` in the first folder of :func:`candidate_dirs`
    that holds both, or ``None`` when no folder does."""
    return _locate(split, candidate_dirs(root))


def _missing_message(split: str, dirs: list[Path]) -> str:
    names = ", ".join(f"{stem}.gz" for stem in FILES[split])
    where = "\n".join(f"  - {d}" for d in dirs)
    return (f"MNIST {split} files not found. Put {names} (gzipped or raw IDX) in one of:\n{where}\n"
            f"or set {ENV_VAR}=/path/to/folder, or pass root=...; on a machine with internet "
            "access, load_mnist(..., download=True) fetches them with torchvision.")


@lru_cache(maxsize=16)
def _verified(path: str, size: int, mtime_ns: int) -> str:
    """SHA256 of a file (cached per path, size and modification time)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path) -> None:
    """Raise :class:`DataError` unless ``path`` has the known SHA256 of its file name."""
    expected = SHA256.get(path.name)
    if expected is None:
        raise DataError(f"{path}: not an MNIST file name this loader knows")
    st = path.stat()
    got = _verified(str(path), st.st_size, st.st_mtime_ns)
    if got != expected:
        raise DataError(f"{path}: SHA256 {got} does not match the MNIST digest {expected}; "
                        "the file is corrupted or not the standard MNIST file: replace it")


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (big-endian header: 0, 0, dtype code, ndim; then the dimensions)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - offset != expected:
        raise DataError(f"{path}: header promises {dims} ({expected} bytes), "
                        f"file has {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _download(split: str) -> Path:
    try:
        from torchvision.datasets import MNIST
    except ImportError as e:  # pragma: no cover - torchvision is a dependency
        raise DataError("download=True needs torchvision") from e
    try:
        MNIST(str(_CACHE_DIR), train=split == "train", download=True)
    except Exception as e:  # network errors come in many types
        raise DataError(f"downloading MNIST with torchvision failed ({e}); is this machine "
                        "online? " + _missing_message(split, [_CACHE_DIR])) from e
    return _CACHE_DIR


def load_mnist(root: str | os.PathLike | None = None, split: str = "train", n: int | None = None,
               *, seed: int | None = None, verify_checksums: bool = True,
               download: bool = False) -> tuple[Tensor, Tensor]:
    """An MNIST split as ``(images, labels)``: float32 ``(N, 1, 28, 28)`` in ``[-1, 1]``, long ``(N,)``;
    ``n`` keeps the first ``n`` rows (or, with ``seed``, ``n`` drawn without replacement);
    ``download=True`` fetches missing files with torchvision into ``~/.cache/causaldiff/mnist``."""
    if split not in FILES:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if n is not None and (not isinstance(n, int) or not 1 <= n <= SIZES[split]):
        raise DataError(f"n must be an integer in 1..{SIZES[split]} for split {split!r}, got {n!r}")
    dirs = candidate_dirs(root)
    paths = _locate(split, dirs)
    if paths is None and download:
        paths = _locate(split, [_download(split)])
    if paths is None:
        raise DataError(_missing_message(split, dirs))
    if verify_checksums:
        for p in paths:
            verify(p)
    images, labels = (read_idx(p) for p in paths)
    if images.shape != (SIZES[split], 28, 28) or labels.shape != (SIZES[split],):
        raise DataError(f"MNIST {split}: unexpected shapes {images.shape} and {labels.shape}")
    if n is None or seed is None:
        index = np.arange(len(labels))[:n]
    else:
        index = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n].numpy()
    x = torch.from_numpy(images[index].copy()).float().div_(127.5).sub_(1).unsqueeze(1)
    y = torch.from_numpy(labels[index].astype(np.int64))
    return x, y


class MNISTConfig(BaseModel):
    """Options of the ``"mnist"`` data set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: str | None = Field(None, description="folder of the IDX files (None: the search path "
                                               f"of load_mnist: {ENV_VAR}, ../shared/data/mnist, ...)")


@DATASETS.register("mnist")
class MNIST(DataSet):
    """MNIST digits and images (no ground truth): ``digit -> image``; images float32
    ``(n, 1, 28, 28)`` in ``[-1, 1]``, digits long ``(n,)``."""

    Config = MNISTConfig

    def graph(self) -> nx.DiGraph:
        return nx.DiGraph([("digit", "image")])

    def load(self, split: str, n: int, seed: int = 0) -> Draw:
        """``n`` rows of ``split`` drawn without replacement with the seed ``split_seed(seed, split)``."""
        images, labels = load_mnist(self.config.root, split=split, n=n, seed=split_seed(seed, split))
        return Draw({"digit": labels, "image": images})


__all__ = ["ENV_VAR", "FILES", "SHA256", "SIZES", "MNIST", "MNISTConfig", "candidate_dirs", "locate",
           "load_mnist", "read_idx", "verify"]
