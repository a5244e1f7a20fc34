"""Atomic directories: a saved model appears whole or not at all.

:func:`atomic_directory` yields a sibling temporary directory, then fsyncs it and renames it into
place; an existing model is replaced by one atomic exchange (``renameat2(RENAME_EXCHANGE)``), or
where the file system lacks it by renaming the old one aside, the new one in, then removing the old.
At every point of a crash ``path`` holds the old or the new model, or (between the two renames)
the old one lies aside, where :func:`saved_location` finds it. Leftover temporaries are never read
and removed by the next save. Every storage failure is a
:class:`~causaldiff.errors.SerializationError` naming the path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

from .errors import SerializationError

#: called with each step's name during a save (fault-injection tests pause or kill the process there):
#: "written", "synced", then "renamed" (new path), "exchanged" or "aside" + "renamed", then "cleaned"
STEP_HOOK: Callable[[str], None] | None = None
#: replace an existing directory by one atomic exchange where the OS supports it
EXCHANGE = True
DIR_MODE = 0o755


def _step(name: str) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(name)


def storage_error(path: Path, action: str, e: OSError) -> SerializationError:
    """``e`` as the one error type of storage, naming ``path`` (and the file the OS named)."""
    named = getattr(e, "filename", None)
    where = f" ({named})" if named and str(named) != str(path) else ""
    return SerializationError(f"{path}: cannot {action}: {e.strerror or e}{where}")


def _sibling(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            _fsync(Path(dirpath) / f)
        _fsync(Path(dirpath))


def existing_ancestor(path: Path) -> Path | None:
    """The nearest of ``path``'s ancestors (parent, grandparent, ...) that exists, or None."""
    return next((p for p in path.parents if p.exists()), None)


def _check_target(path: Path, is_ours: Callable[[Path], bool]) -> None:
    if not path.name:
        raise SerializationError(f"{path}: cannot save to the root of a file system")
    if path.exists() and not path.is_dir():
        raise SerializationError(f"{path}: is a file, not a directory; choose a folder to save to")
    above = existing_ancestor(path)
    if above is not None and not above.is_dir():
        raise SerializationError(f"{path}: {above} is a file, not a folder")
    try:
        foreign = path.is_dir() and any(path.iterdir()) and not is_ours(path)
    except OSError as e:
        raise storage_error(path, "read the folder it would replace", e) from None
    if foreign:
        raise SerializationError(f"{path}: exists and holds files that are not a saved model; refusing to "
                                 "replace it (choose an empty or new folder)")


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` atomically; False where the OS or file system cannot."""
    if not EXCHANGE:
        return False
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # not supported here
        return False
    raise OSError(err, os.strerror(err), str(b))


def _commit(tmp: Path, path: Path) -> None:
    """Put the complete directory ``tmp`` at ``path`` (see the module's docstring)."""
    if not path.exists():
        os.rename(tmp, path)
        _step("renamed")
    elif _exchange(tmp, path):  # tmp now holds the old model
        _step("exchanged")
        _fsync(path.parent)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        old = _sibling(path, "old")
        os.rename(path, old)
        try:
            _fsync(path.parent)
            _step("aside")
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)
            raise
        _step("renamed")
        _fsync(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    _fsync(path.parent)
    _remove_leftovers(path)
    _step("cleaned")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _beside(path: Path, kind: str) -> list[Path]:
    """The temporaries (``kind="tmp-"``), old copies (``"old-"``) or both (``""``) of saves of ``path``."""
    prefix = f".{path.name}.{kind}"
    return [p for p in path.parent.iterdir() if p.name.startswith(prefix)] if path.parent.is_dir() else []


def _remove_leftovers(path: Path) -> None:
    """Remove temporaries of crashed saves of ``path`` (their process is gone) and old copies set aside."""
    for p in _beside(path, ""):
        kind, _, rest = p.name[len(path.name) + 2:].partition("-")
        pid = rest.partition("-")[0]
        if kind == "old" or (kind == "tmp" and pid.isdigit() and not _alive(int(pid))):
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, is_ours: Callable[[Path], bool]) -> Iterator[Path]:
    """Fill the yielded temporary directory; it replaces ``path`` when the block ends without error
    (else it is removed). A non-empty ``path`` is replaced only if ``is_ours(path)``."""
    path = Path(os.path.realpath(path))
    _check_target(path, is_ours)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _sibling(path, "tmp")
        tmp.mkdir(mode=DIR_MODE)
        os.chmod(tmp, DIR_MODE)  # the umask may have narrowed it
    except OSError as e:
        raise storage_error(path, "create a temporary folder beside it", e) from None
    try:
        yield tmp
        _step("written")
        _sync_tree(tmp)
        _step("synced")
        _commit(tmp, path)
    except OSError as e:
        raise storage_error(path, "save", e) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to the new file ``path`` (inside a temporary directory) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, mode)


def write_atomic(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = False,
                 mode: int | None = 0o644) -> Path:
    """``write(file)`` into a sibling temporary file, fsynced, then renamed to ``path`` (parents
    created; ``mode``: its permissions, None: the temporary's 0600): a killed run never leaves half
    a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def saved_location(path: str | os.PathLike) -> Path:
    """``path``, or, after a save crashed between its two renames, the (newest) old model set aside."""
    path = Path(os.path.realpath(path))
    if path.exists() or not path.name:
        return path
    aside = sorted(_beside(path, "old-"), key=lambda p: p.stat().st_mtime)
    return aside[-1] if aside else path


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``; a failure is a :class:`SerializationError` naming it."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise storage_error(path, "read", e) from None


__all__ = ["atomic_directory", "existing_ancestor", "read_bytes", "saved_location", "storage_error",
           "write_atomic", "write_file"]
