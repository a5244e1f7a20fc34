"""Launcher variables validated before a process group is joined, ranks that disagree refused on
every rank, errors that survive the trip between ranks, checkpoints' world_size checked (issue 25)."""

from __future__ import annotations

import math
import pickle

import networkx as nx
import pyro.distributions as pdist
import pytest
import torch
import torch.distributed as dist

import causaldiff as cd
from causaldiff.cli import main
from causaldiff.distributed import launch, launcher_rank
from causaldiff.errors import DataError, LaunchError, SeedError, SerializationError
from causaldiff.rng import ROW_BLOCK
from causaldiff.sharding import portable
from causaldiff.testing import run_distributed
from causaldiff.training.checkpoint import Checkpointer, save_atomic
from causaldiff.training.ddp import DEFAULT_TIMEOUT, check_timeout, init_process_group, launcher_env

GOOD = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29512"}
LAUNCHER = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "CAUSALDIFF_DIST_TIMEOUT")


@pytest.fixture
def env(monkeypatch):
    """Set the launcher's variables (``GOOD`` changed by the test); None removes one."""
    def set_env(**changes: str | None) -> None:
        for k in LAUNCHER:
            monkeypatch.delenv(k, raising=False)
        for k, v in {**GOOD, **changes}.items():
            if v is not None:
                monkeypatch.setenv(k, v)
    return set_env


def test_a_valid_environment_is_read(env):
    env(RANK="2", WORLD_SIZE="4", LOCAL_RANK="2", CAUSALDIFF_DIST_TIMEOUT="12.5")
    assert launcher_env() == (2, 4, 2, 12.5)
    env()
    assert launcher_env() == (0, 1, 0, DEFAULT_TIMEOUT) and launcher_env(3) == (0, 1, 0, 3.0)


BAD_ENV = [
    ({"RANK": "1"}, ["$RANK=1", "$WORLD_SIZE=1"]),
    ({"RANK": "4", "WORLD_SIZE": "4"}, ["$RANK=4", "0 .. 3"]),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, ["$RANK='-1'"]),
    ({"RANK": "abc"}, ["$RANK='abc'"]),
    ({"RANK": ""}, ["$RANK=''"]),
    ({"RANK": "1.0", "WORLD_SIZE": "2"}, ["$RANK='1.0'"]),
    ({"RANK": "--1"}, ["$RANK='--1'"]),
    ({"RANK": "\u0661"}, ["$RANK="]),  # an Arabic-Indic digit one
    ({"RANK": "9" * 5000}, ["$RANK="]),
    ({"RANK": None}, ["$RANK is not set"]),
    ({"WORLD_SIZE": "0"}, ["$WORLD_SIZE='0'"]),
    ({"WORLD_SIZE": "-2"}, ["$WORLD_SIZE='-2'"]),
    ({"WORLD_SIZE": "two"}, ["$WORLD_SIZE='two'"]),
    ({"WORLD_SIZE": str(2 ** 40)}, ["$WORLD_SIZE="]),
    ({"WORLD_SIZE": None}, ["$WORLD_SIZE is not set"]),
    ({"LOCAL_RANK": "-1"}, ["$LOCAL_RANK='-1'"]),
    ({"LOCAL_RANK": "x"}, ["$LOCAL_RANK='x'"]),
    ({"LOCAL_RANK": "3", "WORLD_SIZE": "2"}, ["$LOCAL_RANK='3'"]),
    ({"MASTER_PORT": None}, ["$MASTER_PORT is not set"]),
    ({"MASTER_PORT": "0"}, ["$MASTER_PORT='0'"]),
    ({"MASTER_PORT": "70000"}, ["$MASTER_PORT='70000'"]),
    ({"MASTER_PORT": "http"}, ["$MASTER_PORT='http'"]),
    ({"MASTER_ADDR": ""}, ["$MASTER_ADDR is not set"]),
    ({"MASTER_ADDR": None}, ["$MASTER_ADDR is not set"]),
    ({"CAUSALDIFF_DIST_TIMEOUT": "0"}, ["$CAUSALDIFF_DIST_TIMEOUT='0'"]),
    ({"CAUSALDIFF_DIST_TIMEOUT": "-5"}, ["$CAUSALDIFF_DIST_TIMEOUT='-5'"]),
    ({"CAUSALDIFF_DIST_TIMEOUT": "nan"}, ["$CAUSALDIFF_DIST_TIMEOUT='nan'"]),
    ({"CAUSALDIFF_DIST_TIMEOUT": "inf"}, ["$CAUSALDIFF_DIST_TIMEOUT='inf'"]),
    ({"CAUSALDIFF_DIST_TIMEOUT": "1e9"}, ["$CAUSALDIFF_DIST_TIMEOUT='1e9'"]),
    ({"CAUSALDIFF_DIST_TIMEOUT": "soon"}, ["$CAUSALDIFF_DIST_TIMEOUT='soon'"]),
]


@pytest.mark.parametrize("changes, words", BAD_ENV, ids=lambda v: repr(v)[:40] if isinstance(v, dict) else "")
def test_a_bad_launcher_variable_is_refused_before_joining(env, changes, words):
    env(**changes)
    with pytest.raises(LaunchError) as info:
        init_process_group("cpu")
    assert all(w in str(info.value) for w in words), str(info.value)
    assert not dist.is_initialized()


@pytest.mark.parametrize("timeout", [0, -5, 0.0, math.nan, math.inf, -math.inf, True, "5", 1e12, [3], 10 ** 400],
                         ids=lambda v: repr(v)[:12])
def test_a_bad_timeout_is_refused_before_joining(env, timeout):
    env()
    with pytest.raises(LaunchError, match="timeout="):
        with launch("cpu", timeout=timeout):
            pass
    assert not dist.is_initialized()


@pytest.mark.parametrize("timeout", [0.5, 1, 30.0, 86400])
def test_a_good_timeout_is_kept(timeout):
    assert check_timeout(timeout) == float(timeout)


@pytest.mark.parametrize("changes", [{"RANK": "abc"}, {"RANK": "5"}, {"RANK": "-1", "WORLD_SIZE": "2"},
                                     {"MASTER_PORT": None}, {"CAUSALDIFF_DIST_TIMEOUT": "0"},
                                     {"WORLD_SIZE": "two"}])
def test_the_command_line_reports_a_bad_launcher_in_one_line(env, changes, tmp_path, capsys):
    env(**changes)
    assert main(["graph", "graphs/shapes.toml", "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("causaldiff graph: error: $") and "\n" not in err and "Traceback" not in err, err
    assert not (tmp_path / "g.png").exists() and not dist.is_initialized()


@pytest.mark.parametrize("rank, want", [("3", 3), ("abc", 0), ("-1", 0), ("", 0), ("8", 0), ("9" * 5000, 0)], ids=lambda v: repr(v)[:12])
def test_launcher_rank_never_raises(env, rank, want):
    env(RANK=rank, WORLD_SIZE="8")
    assert launcher_rank() == want


class TwoArgs(Exception):
    def __init__(self, node: str, detail: str) -> None:
        super().__init__(f"{node}: {detail}")


class Unpicklable(ValueError):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.callback = lambda: None


class BadReduce(ValueError):
    def __reduce__(self):
        raise TypeError("no")


@pytest.mark.parametrize("error", [TwoArgs("y", "bad rows"), Unpicklable("y: bad rows"), BadReduce("y: bad rows")])
def test_an_error_that_cannot_cross_ranks_keeps_its_type_and_message(error):
    sent = pickle.loads(pickle.dumps(portable(error)))
    assert isinstance(sent, RuntimeError) and str(sent) == f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("error", [ValueError("y: bad"), DataError("node 'y': NaN"), SeedError("seed"), KeyError("y"),
                                   ZeroDivisionError("division by zero")])
def test_an_error_that_crosses_ranks_is_sent_as_it_is(error):
    assert portable(error) is error


def _checkpoint(tmp_path, world_size) -> Checkpointer:
    save_atomic({"fingerprint": "fp", "world_size": world_size}, tmp_path / "checkpoint.pt")
    return Checkpointer(tmp_path)


@pytest.mark.parametrize("world_size", ["two", "2", 2.0, 2.5, 0, -1, True, None, [2], {"n": 2}])
def test_a_checkpoint_whose_world_size_is_not_a_count_is_refused(tmp_path, world_size):
    with pytest.raises(SerializationError, match=r"world_size=.*checkpoint\.pt|checkpoint\.pt.*world_size="):
        _checkpoint(tmp_path, world_size).load("fp", "fit y")


def test_a_checkpoint_of_another_world_size_is_refused_and_its_own_is_read(tmp_path):
    with pytest.raises(SerializationError, match="2 process"):
        _checkpoint(tmp_path, 2).load("fp", "fit y", world_size=1)
    assert _checkpoint(tmp_path, 1).load("fp", "fit y")["world_size"] == 1


@pytest.mark.parametrize("state", [[1, 2], "text", torch.zeros(3)])
def test_a_checkpoint_that_is_not_a_dict_is_refused(tmp_path, state):
    save_atomic(state, tmp_path / "checkpoint.pt")
    with pytest.raises(SerializationError, match="not a training checkpoint"):
        Checkpointer(tmp_path).load("fp", "fit y")


ENV = {"CAUSALDIFF_DIST_TIMEOUT": "30", "CAUSALDIFF_PROGRESS": "0"}
N = 2 * ROW_BLOCK + 5


def _scm() -> cd.SCM:
    f64 = torch.float64

    def y(x: torch.Tensor) -> pdist.Normal:
        if dist.get_rank() == 1 and bool((x > 100).any()):
            raise TwoArgs("y", "a parent above 100")
        return pdist.Normal(2.0 * x, torch.tensor(0.5, dtype=f64))

    return cd.SCM(nx.DiGraph([("x", "y")]), {"x": pdist.Normal(torch.tensor(0.0, dtype=f64), 1.0), "y": y})


def _disagreeing_ranks() -> list[str]:
    """Each query below is one the ranks disagree on; every rank reports what it raised."""
    with launch(device="cpu"):
        rank, scm, seen = dist.get_rank(), _scm(), []
        rows = scm.sample(N, seed=0)
        for query in (lambda: scm.sample(N + rank, seed=1),                    # different n
                      lambda: scm.sample(N, seed=1 + rank),                    # different seeds
                      lambda: scm.sample(N, seed=None if rank else 3),         # seeded and unseeded
                      lambda: scm.counterfactual(rows, {"x": 1.0}, batch_size=None if rank else 100),  # chunks
                      lambda: scm.counterfactual({k: v[: N - rank] for k, v in rows.items()}, {"x": 1.0}),  # no draws
                      lambda: scm.counterfactual(rows, {"x": 1000.0})):  # a two-argument error on rank 1
            try:
                query()
                seen.append("no error")
            except Exception as exc:  # noqa: BLE001: the test compares what each rank raised
                seen.append(f"{type(exc).__name__}: {exc}")
        seen.append(str(torch.equal(scm.sample(N, seed=4)["y"], _scm().sample(N, seed=4)["y"])))  # still in step
        return seen


def test_ranks_that_disagree_are_refused_on_every_rank_with_one_message():
    r0, r1 = run_distributed(_disagreeing_ranks, 2, timeout=180, env=ENV)
    assert r0[:4] == r1[:4] and r0[4] == r1[4], (r0, r1)
    assert r0[0].startswith("DataError") and f"rank 0: {N}, rank 1: {N + 1}" in r0[0]
    assert r0[1].startswith("SeedError") and "rank 0: 1, rank 1: 2" in r0[1]
    assert r0[2].startswith("SeedError") and "rank 0: 3, rank 1: None" in r0[2]
    assert r0[3].startswith("DataError") and "batch_size" in r0[3]
    assert r0[4].startswith("DataError") and f"rank 0: {N}, rank 1: {N - 1}" in r0[4]
    assert "TwoArgs: y: a parent above 100" in r0[5] and "TwoArgs" in r1[5] and "a parent above 100" in r1[5]
    assert r0[6] == r1[6] == "True"
