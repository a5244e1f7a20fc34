"""Storage faults, for real: a save killed with SIGKILL at each of its steps, a full disk (a tiny
tmpfs, or a file-size limit), a read-only folder (a read-only mount, an unprivileged user, or
chmod). After each, the old model (or the new one) loads intact and equal, every failure is one
SerializationError naming the path, and the next save cleans up what a crash left."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

import causaldiff as cd
import storage_models as sm
from causaldiff import storage

PAUSE_AND_SAVE = """
import os, sys, time
import causaldiff as cd
from causaldiff import storage
src, dst, step, exchange, marker = sys.argv[1:]
storage.EXCHANGE = exchange == "1"
model = cd.load(src)
def hook(name):
    if name == step:
        with open(marker, "w") as f:
            f.write(name)
        time.sleep(120)
storage.STEP_HOOK = hook
model.save(dst)
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Model A (the old one) and model B (the new one), saved once."""
    root = tmp_path_factory.mktemp("models")
    sm.tabular_scm(hidden=(4,), seed=0).save(root / "A")
    sm.tabular_scm(hidden=(6,), seed=1).save(root / "B")
    return root / "A", root / "B"


def _forked(work, log: Path) -> int:
    """Run ``work()`` in a forked child process (causaldiff already imported: no start-up cost)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            work()
        except BaseException:
            log.write_text(traceback.format_exc())
            code = 1
        os._exit(code)
    return pid


def _pause_at(step: str, marker: Path):
    def hook(name: str) -> None:
        if name == step:
            marker.write_text(name)
            time.sleep(120)
    return hook


def _kill_at(src: Path, dst: Path, step: str, exchange: bool, tmp: Path, spawn: bool = False) -> None:
    """Save ``src`` to ``dst`` in a child process (forked, or a fresh interpreter if ``spawn``) and
    SIGKILL it when it reaches ``step``."""
    marker, log = tmp / f"at-{step}", tmp / "child.log"
    if spawn:
        env = {**os.environ, "PYTHONPATH": str(sm.REPO), "OMP_NUM_THREADS": "1", "CAUSALDIFF_PROGRESS": "0"}
        with open(log, "wb") as err:
            child = subprocess.Popen([sys.executable, "-c", PAUSE_AND_SAVE, str(src), str(dst), step,
                                      "1" if exchange else "0", str(marker)], cwd=sm.REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=err)
        pid, poll = child.pid, lambda: child.poll() is not None
    else:
        model = cd.load(src)

        def work() -> None:
            storage.EXCHANGE, storage.STEP_HOOK = exchange, _pause_at(step, marker)
            model.save(dst)

        pid = _forked(work, log)
        poll = lambda: os.waitpid(pid, os.WNOHANG)[0] != 0  # noqa: E731
    deadline = time.monotonic() + 120
    while not marker.exists():
        if poll() or time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"the child never reached {step!r}: {log.read_text()[-2000:] if log.exists() else ''}")
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    if spawn:
        assert child.wait(timeout=30) == -signal.SIGKILL
    else:
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


# (old model there?, exchange?, step, which model loads afterwards: "A", "B" or None, spawn?)
KILLS = [(True, True, "written", "A", False), (True, True, "synced", "A", True), (True, True, "exchanged", "B", False),
         (True, True, "cleaned", "B", False),
         (True, False, "written", "A", False), (True, False, "synced", "A", False), (True, False, "aside", "A", True),
         (True, False, "renamed", "B", False), (True, False, "cleaned", "B", False),
         (False, True, "synced", None, False), (False, True, "renamed", "B", False)]


@pytest.mark.parametrize("old, exchange, step, survivor, spawn", KILLS,
                         ids=[f"{'replace' if o else 'fresh'}-{'exchange' if x else 'aside'}-{s}{'-spawned' if p else ''}"
                              for o, x, s, _, p in KILLS])
def test_kill_9_at_each_step_of_a_save_leaves_the_old_or_the_new_model(models, tmp_path, old, exchange, step, survivor,
                                                                        spawn):
    a, b = models
    dst = tmp_path / "model"
    if old:
        shutil.copytree(a, dst)
    _kill_at(b, dst, step, exchange, tmp_path, spawn=spawn)
    if survivor is None:
        with pytest.raises(cd.SerializationError, match=rf"{dst}: missing scm.json"):
            cd.load(dst)
    else:
        ref = {"A": a, "B": b}[survivor]
        where = storage.saved_location(dst)
        assert sm.files(where) == sm.files(ref)  # byte-identical to the model saved whole
        assert sm.same_weights(cd.load(dst), cd.load(ref))
    # the next save succeeds and removes what the crash left beside the model
    cd.load(a).save(dst)
    assert sm.siblings(dst) == [] and sm.files(dst) == sm.files(a)


# ------------------------------------------------------------------------------- in-process failures
@pytest.mark.parametrize("step, exchange", [("written", True), ("synced", True), ("aside", False)])
def test_a_failure_inside_a_save_leaves_the_old_model_untouched(models, tmp_path, step, exchange, monkeypatch):
    a, b = models
    dst = tmp_path / "model"
    shutil.copytree(a, dst)

    def fail(name):
        if name == step:
            raise KeyboardInterrupt(name)

    monkeypatch.setattr(storage, "STEP_HOOK", fail)
    monkeypatch.setattr(storage, "EXCHANGE", exchange)
    with pytest.raises(KeyboardInterrupt):
        cd.load(b).save(dst)
    assert sm.files(dst) == sm.files(a) and sm.siblings(dst) == []


# ------------------------------------------------------------------------------- full disk
@pytest.mark.parametrize("old", [True, False], ids=["replace", "fresh"])
def test_a_file_size_limit_is_a_serialization_error_naming_the_path(models, tmp_path, old):
    """RLIMIT_FSIZE in a child process: the kernel refuses the write (EFBIG), as a full quota would."""
    a, b = models
    dst, log = tmp_path / "model", tmp_path / "child.log"
    if old:
        shutil.copytree(a, dst)
    model = cd.load(b)

    def work() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        try:
            model.save(dst)
        except cd.SerializationError as e:
            log.write_text(str(e))
            os._exit(3)

    _, status = os.waitpid(_forked(work, log), 0)
    assert os.WEXITSTATUS(status) == 3, log.read_text()
    assert log.read_text().startswith(f"{dst}: cannot save: File too large")
    if old:
        assert sm.files(dst) == sm.files(a)
    else:
        assert not dst.exists()
    assert sm.siblings(dst) == []


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_is_a_serialization_error_and_the_old_model_stays(models, small_disk):
    a, _ = models
    dst = small_disk / "model"
    cd.load(a).save(dst)
    saved = sm.files(dst)
    big = sm.tabular_scm(hidden=(256, 256))  # ~300 kB of weights on a 64 kB disk
    with pytest.raises(cd.SerializationError, match=rf"{dst}: cannot save: No space left on device"):
        big.save(dst)
    assert sm.files(dst) == saved and sm.siblings(dst) == []
    assert sm.same_weights(cd.load(dst), cd.load(a))
    cd.load(a).save(dst)  # the space was given back: the failed save left nothing


# ------------------------------------------------------------------------------- read-only folders
def test_a_read_only_mount_is_a_serialization_error(models, small_disk):
    a, b = models
    dst = small_disk / "model"
    cd.load(a).save(dst)
    saved = sm.files(dst)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(cd.SerializationError, match=rf"{dst}: cannot create a temporary folder beside it: "
                                                    r"Read-only file system"):
        cd.load(b).save(dst)
    assert sm.files(dst) == saved and sm.same_weights(cd.load(dst), cd.load(a))


def _deny_writes(folder: Path) -> bool:
    """Make ``folder`` refuse new entries for this process: chmod 0555 as a user; as root (who
    ignores permissions) the immutable attribute. False where neither is possible."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        return True
    return shutil.which("chattr") is not None and subprocess.run(
        ["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def _allow_writes(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    os.chmod(folder, 0o755)


@pytest.mark.parametrize("old", [True, False], ids=["replace", "fresh"])
def test_a_folder_that_refuses_writes_is_a_serialization_error(models, tmp_path, old):
    a, b = models
    folder = tmp_path / "shared"
    folder.mkdir()
    dst = folder / "model"
    if old:
        cd.load(a).save(dst)
    saved = sm.files(folder)
    if not _deny_writes(folder):
        pytest.skip("neither chmod (as a user) nor chattr +i (as root) can deny writes here")
    try:
        with pytest.raises(cd.SerializationError, match=rf"{dst}: cannot create a temporary folder beside it: "
                                                        r"(Permission denied|Operation not permitted)"):
            cd.load(b).save(dst)
    finally:
        _allow_writes(folder)
    assert sm.files(folder) == saved and sm.siblings(dst) == []


# ------------------------------------------------------------------------------- wrong targets
def test_saving_over_a_file_is_refused(models, tmp_path):
    a, _ = models
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(cd.SerializationError, match=rf"{target}: is a file, not a directory"):
        cd.load(a).save(target)
    assert target.read_text() == "mine" and sm.siblings(target) == []


def test_saving_over_a_folder_of_other_files_is_refused(models, tmp_path):
    a, _ = models
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(cd.SerializationError, match=rf"{target}: exists and holds files that are not a saved model"):
        cd.load(a).save(target)
    assert sm.files(target) == {"thesis.tex": b"years of work"}


def test_saving_below_a_file_is_refused(models, tmp_path):
    a, _ = models
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "model"
    with pytest.raises(cd.SerializationError, match=rf"{target}: {tmp_path / 'file'} is a file, not a folder"):
        cd.load(a).save(target)
    assert (tmp_path / "file").read_text() == "x"


def test_saving_to_a_new_nested_folder_and_over_an_empty_one(models, tmp_path):
    a, _ = models
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "deep" / "er" / "model", tmp_path / "empty"):
        cd.load(a).save(target)
        assert sm.files(target) == sm.files(a)
        assert (target.stat().st_mode & 0o777, {p.stat().st_mode & 0o777 for p in target.iterdir()}) == (0o755, {0o644})


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "aside"])
def test_concurrent_saves_to_one_path_leave_one_whole_model(models, tmp_path, exchange):
    """Two processes saving A and B over the same path again and again: every save either lands
    whole or fails with a SerializationError; the path always ends holding A or B whole."""
    a, b = models
    dst = tmp_path / "model"
    cd.load(a).save(dst)
    pids = []
    for i, src in enumerate((a, b)):
        model, log = cd.load(src), tmp_path / f"child{i}.log"

        def work(model=model, log=log) -> None:
            storage.EXCHANGE = exchange
            failures = []
            for _ in range(15):
                try:
                    model.save(dst)
                except cd.SerializationError as e:
                    failures.append(str(e))
            log.write_text("\n".join(failures))

        pids.append((_forked(work, log), log))
    for pid, log in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0, log.read_text()
        assert all(line.startswith(f"{dst}: ") for line in log.read_text().splitlines())
    assert sm.files(dst) in (sm.files(a), sm.files(b))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file whatever its permissions")
@pytest.mark.parametrize("what", ["folder", "weights"])
def test_a_model_the_user_cannot_read_is_a_serialization_error(models, tmp_path, what):
    a, _ = models
    dst = tmp_path / "model"
    shutil.copytree(a, dst)
    target = dst if what == "folder" else dst / "weights.safetensors"
    os.chmod(target, 0)
    try:
        with pytest.raises(cd.SerializationError, match=rf"{dst}.*Permission denied"):
            cd.load(dst)
    finally:
        os.chmod(target, 0o755)
