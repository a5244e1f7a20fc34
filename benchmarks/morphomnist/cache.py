"""The generated Morpho-MNIST splits: rendered in parallel processes, cached to versioned files.

A split's file is ``morphomnist-v{VERSION}-{split}-{key}.npz`` where ``key`` hashes every setting
that changes its content (version, split, seed, subset, the MNIST files' SHA256, the generative
constants, the scikit-image version). The file stores those settings and the SHA256 of its arrays;
on reading, both are checked, so a changed setting gives another file and a tampered or foreign
file raises :class:`DataError` naming it (it is never silently reused). Files are written
atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import skimage
import torch

from causaldiff.datasets.mnist import FILES, SHA256
from causaldiff.errors import DataError

from benchmarks.morphomnist import morpho
from benchmarks.morphomnist.parallel import map_rows

VERSION = 1
ARRAYS = ("images", "labels", "handwriting", "base_thickness", "u_thickness", "u_intensity")
DEFAULT_DIR = Path.home() / ".cache" / "causaldiff" / "morphomnist"


def settings(config: Any, split: str, seed: int, constants: list[float]) -> dict[str, Any]:
    """Everything the content of a generated split depends on (``constants``: the equations')."""
    constants = [*constants, morpho.THRESHOLD, morpho.RENDER_SCALE]
    return {"version": VERSION, "split": split, "seed": seed, "subset": config.subset,
            "mnist": [SHA256[f + ".gz"] for f in FILES[split]], "constants": constants,
            "skimage": skimage.__version__}


def cache_path(config: Any, meta: dict[str, Any]) -> Path:
    split = meta["split"]
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(config.cache_dir).expanduser() if config.cache_dir else DEFAULT_DIR
    return folder / f"morphomnist-v{VERSION}-{split}-{key}.npz"


def digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _render_chunk(handwriting: np.ndarray, t: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return morpho.render_rows(handwriting, None, t, i)


def generate(handwriting: np.ndarray, labels: np.ndarray, noise: dict[str, torch.Tensor],
             t: torch.Tensor, i: torch.Tensor, workers: int) -> dict[str, np.ndarray]:
    """Render every handwriting once with its own (t, i), in ``workers`` processes."""
    images, base = map_rows(_render_chunk, [handwriting, t.numpy(), i.numpy()], workers, "rendering Morpho-MNIST")
    return {"images": images, "labels": np.asarray(labels, dtype=np.int64),
            "handwriting": np.ascontiguousarray(handwriting), "base_thickness": base,
            "u_thickness": noise["u_thickness"].numpy(), "u_intensity": noise["u_intensity"].numpy()}


def _write(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a cache file, after checking its settings and its content digest."""
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = json.loads(str(f["meta"]))
            arrays = {name: f[name] for name in ARRAYS}
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a readable Morpho-MNIST cache file ({e}); delete it") from e
    want = {**meta, "sha256": stored.get("sha256")}
    if stored != want:
        raise DataError(f"{path}: its settings {stored} differ from the requested {meta}; delete it")
    if digest(arrays) != stored["sha256"]:
        raise DataError(f"{path}: its content does not match its recorded SHA256 (modified or "
                        "corrupted); delete it to regenerate")
    return arrays


def cached_split(config: Any, meta: dict[str, Any], handwriting: np.ndarray, labels: np.ndarray,
                 noise: dict[str, torch.Tensor], t: torch.Tensor, i: torch.Tensor) -> dict[str, np.ndarray]:
    """The generated split of ``meta`` (:func:`settings`), read from its cache file or rendered
    from the given exogenous noise and parents and cached."""
    path = cache_path(config, meta)
    if path.exists():
        return read(path, meta)
    with torch.inference_mode():
        arrays = generate(handwriting, labels, noise, t, i, config.workers)
    _write(path, arrays, {**meta, "sha256": digest(arrays)})
    return arrays


__all__ = ["VERSION", "settings", "cache_path", "digest", "generate", "read", "cached_split"]
