"""Render a split of the benchmark's images (the MNIST digits at the published ``*-morpho.csv``
targets) with the faithful renderer (:mod:`.legacy_morpho`) into a chunked cache.

The published train images are not available: they are these renders (the test split's renders
match the published file bit for bit in 297 of its first 300 images).  Each chunk of rows is one
``{split}-{start:05d}-{stop:05d}.npz`` (``images`` uint8, ``index``, the ``thickness`` and
``intensity`` targets), written atomically when it is done, so a killed run resumes where it
stopped; chunks render in ``workers`` processes.  Usage::

    python -m benchmarks.morphomnist.render_split --out DIR --split train --n 200 --workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zipfile
import zlib
from concurrent.futures import as_completed
from pathlib import Path

import numpy as np

from causaldiff import DataError


from . import legacy_morpho, published
from .parallel import shared_pool

#: rows per cache file
CHUNK = 500


def chunk_path(folder: Path, split: str, start: int, stop: int) -> Path:
    return Path(folder) / f"{split}-{start:05d}-{stop:05d}.npz"


def _render_chunk(handwriting: np.ndarray, t: np.ndarray, i: np.ndarray) -> np.ndarray:
    return legacy_morpho.render_rows(handwriting, t, i)


def _write_chunk(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` through a temporary sibling file and ``os.replace``: never half a chunk."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def render_split(folder: str | Path, split: str = "train", n: int | None = None,
                 chunk: int = CHUNK, workers: int = 1) -> list[Path]:
    """Render the first ``n`` rows of ``split`` (all when ``None``) into ``folder``, skipping the
    chunks already there; the chunk files, in row order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digits, (t, i) = published.mnist_digits(split), published.targets(split)
    if len(digits) != len(t):
        raise DataError(f"{split}: {len(digits)} MNIST digits but {len(t)} csv targets")
    n = len(t) if n is None else n
    if not 1 <= n <= len(t) or chunk < 1:
        raise ValueError(f"n must lie in 1..{len(t)} and chunk be positive, got n={n}, chunk={chunk}")
    spans = _chunks(n, chunk)
    todo = [s for s in spans if not zipfile.is_zipfile(chunk_path(folder, split, *s))]  # missing or truncated

    def rows(span: tuple[int, int]) -> tuple[np.ndarray, ...]:
        return digits[span[0]:span[1]], t[span[0]:span[1]], i[span[0]:span[1]]

    if workers > 1 and len(todo) > 1:
        pool = shared_pool(workers)
        futures = {pool.submit(_render_chunk, *rows(s)): s for s in todo}
        for future in as_completed(futures):
            _save(folder, split, futures[future], future.result(), t, i)
    else:
        for s in todo:
            _save(folder, split, s, _render_chunk(*rows(s)), t, i)
    return [chunk_path(folder, split, *s) for s in spans]


def _save(folder: Path, split: str, span: tuple[int, int], images: np.ndarray, t: np.ndarray,
          i: np.ndarray) -> None:
    start, stop = span
    _write_chunk(chunk_path(folder, split, start, stop),
                 {"images": images, "index": np.arange(start, stop), "thickness": t[start:stop],
                  "intensity": i[start:stop]})


def _read_chunk(path: Path) -> dict[str, np.ndarray]:
    """A chunk's arrays; a truncated, corrupt or foreign file is refused naming it."""
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as f:  # (numpy leaks a file it fails on)
            return {k: f[k] for k in ("images", "index", "thickness", "intensity")}
    except (AttributeError, TypeError, OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: not a readable chunk of this cache ({type(e).__name__}: {e}); delete it and "
                        "render_split renders it again") from None


def load_rendered(folder: str | Path, split: str, n: int, chunk: int = CHUNK) -> np.ndarray:
    """The first ``n`` rendered images of ``split`` (uint8 ``(n, 28, 28)``), every chunk checked
    to hold the rows and targets it should."""
    t, i = published.targets(split)
    out = []
    for start, stop in _chunks(n, chunk):
        path = chunk_path(Path(folder), split, start, stop)
        if not path.exists():
            raise DataError(f"{path}: missing; run render_split to render it")
        arrays = _read_chunk(path)
        if not (np.array_equal(arrays["index"], np.arange(start, stop))
                and np.array_equal(arrays["thickness"], t[start:stop])
                and np.array_equal(arrays["intensity"], i[start:stop])):
            raise DataError(f"{path}: its rows or targets are not those of {split} {start}..{stop}")
        out.append(arrays["images"])
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="cache folder")
    parser.add_argument("--split", default="train", choices=sorted(published.PREFIX))
    parser.add_argument("--n", type=int, default=None, help="first rows only (default: all)")
    parser.add_argument("--chunk", type=int, default=CHUNK)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    paths = render_split(args.out, args.split, args.n, args.chunk, args.workers)
    seconds = time.perf_counter() - start
    rows = len(load_rendered(args.out, args.split, args.n or len(published.targets(args.split)[0]),
                             args.chunk))
    print(f"{args.split}: {rows} rows in {len(paths)} chunk(s) under {args.out}; {seconds:.1f} s wall "
          f"with {args.workers} worker(s) ({seconds / rows:.3f} s per image, including chunks found)")


if __name__ == "__main__":
    main()


__all__ = ["CHUNK", "chunk_path", "render_split", "load_rendered", "main"]
