"""load_shards distrusts its manifest and its shard files (issue 25): every bad case is one
SerializationError naming the file, before any rows are joined; nothing is unpickled."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from causaldiff.distributed import load_shards
from causaldiff.errors import SerializationError
from causaldiff.shard_files import MANIFEST, new_run_id, write_manifest, write_shard

N, NAME = 10, "cf"


def _rows(start: int, stop: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    return {"x": torch.arange(start, stop, dtype=dtype), "img": torch.arange(start, stop, dtype=dtype)[:, None] * 2}


def _write(folder: Path, cuts=(0, 4, 10), run: str | None = None) -> dict:
    """A valid sharded result of N rows in ``folder`` (shards cut at ``cuts``); returns its manifest."""
    run = run or new_run_id()
    shards = [{"file": write_shard(_rows(a, b), folder, NAME, r, run), "start": a, "stop": b}
              for r, (a, b) in enumerate(zip(cuts, cuts[1:]))]
    write_manifest(folder, NAME, cuts[-1], run, shards)
    return json.loads((folder / MANIFEST.format(name=NAME)).read_text())


def _rewrite(folder: Path, manifest) -> None:
    (folder / MANIFEST.format(name=NAME)).write_text(json.dumps(manifest))


def _refused(folder: Path, *words: str) -> str:
    with pytest.raises(SerializationError) as info:
        load_shards(folder, NAME)
    msg = str(info.value)
    assert all(w in msg for w in words), msg
    return msg


@pytest.mark.parametrize("cuts", [(0, 10), (0, 4, 10), (0, 0, 10), (0, 10, 10), (0, 3, 6, 9, 10)])
def test_a_valid_result_loads_whole_and_in_order(tmp_path, cuts):
    _write(tmp_path, cuts)
    got = load_shards(tmp_path, NAME)
    assert torch.equal(got["x"], torch.arange(N, dtype=torch.float64)) and got["img"].shape == (N, 1)


@pytest.mark.parametrize("file", ["../secret.pt", "/etc/passwd", "{abs}", "sub/cf.rank00000.pt", "cf.rank00001.pt",
                                  "other.rank00000.pt", "cf.rank0.pt", "", "."])
def test_a_shard_name_outside_the_rank_s_own_file_is_refused(tmp_path, file):
    folder = tmp_path / "run"
    folder.mkdir()
    manifest = _write(folder)
    torch.save(_rows(0, 4), tmp_path / "secret.pt")  # a readable tensor file one level up
    manifest["shards"][0]["file"] = file.format(abs=str(tmp_path / "secret.pt"))
    _rewrite(folder, manifest)
    _refused(folder, "shard 0", "cf.rank00000.pt", str(folder))


def test_a_reversed_list_of_shards_is_refused(tmp_path):
    manifest = _write(tmp_path)
    manifest["shards"].reverse()
    _rewrite(tmp_path, manifest)
    _refused(tmp_path, "shard 0")


def test_a_shard_listed_twice_is_refused(tmp_path):
    manifest = _write(tmp_path)
    manifest["shards"].append(dict(manifest["shards"][1]))
    manifest["n"] = 16
    _rewrite(tmp_path, manifest)
    _refused(tmp_path, "shard 2")


@pytest.mark.parametrize("rows, words", [
    ([(1, 4), (4, 10)], ["shard 0", "rows 1..4"]),      # not from 0
    ([(0, 4), (5, 10)], ["shard 1", "rows 5..10"]),     # a gap
    ([(0, 5), (4, 10)], ["shard 1", "rows 4..10"]),     # overlapping
    ([(0, 4), (4, 3)], ["shard 1", "rows 4..3"]),       # stop before start
    ([(0, 4), (4, 9)], ["9 rows", "n=10"]),             # short of n
    ([(0, 4), (4, 11)], ["11 rows", "n=10"]),           # beyond n
    ([(0, -4), (4, 10)], ["shard 0 stop", "-4"]),
    ([(0, 4.0), (4, 10)], ["shard 0 stop", "4.0"]),
    ([(False, 4), (4, 10)], ["shard 0 start", "False"]),
    ([("0", 4), (4, 10)], ["shard 0 start", "'0'"]),
])
def test_declared_rows_must_be_contiguous_and_cover_n(tmp_path, rows, words):
    manifest = _write(tmp_path)
    for s, (a, b) in zip(manifest["shards"], rows):
        s["start"], s["stop"] = a, b
    _rewrite(tmp_path, manifest)
    _refused(tmp_path, *words)


@pytest.mark.parametrize("n", [-1, "10", 10.0, None, True])
def test_a_bad_row_count_is_refused(tmp_path, n):
    manifest = _write(tmp_path)
    manifest["n"] = n
    _rewrite(tmp_path, manifest)
    _refused(tmp_path, str(tmp_path))


@pytest.mark.parametrize("text", ["", "{", "not json", "[]", "[1, 2]", "null", "3", '"shards"', "{}",
                                  '{"format": 1}', '{"format": 1, "run": "r", "n": 10}',
                                  '{"format": 1, "run": "r", "n": 10, "shards": 5}',
                                  '{"format": 1, "run": "r", "n": 10, "shards": [5]}',
                                  '{"format": 1, "run": "r", "n": 10, "shards": [[]]}',
                                  '{"format": 1, "run": "r", "n": 10, "shards": [{"file": "cf.rank00000.pt"}]}',
                                  '{"format": 1, "run": 7, "n": 10, "shards": []}',
                                  '{"format": 1, "run": "r", "n": 0, "shards": []}',
                                  '{"run": "r", "n": 10, "shards": []}'])
def test_a_malformed_manifest_is_one_serialization_error(tmp_path, text):
    _write(tmp_path)
    (tmp_path / MANIFEST.format(name=NAME)).write_text(text)
    _refused(tmp_path, str(tmp_path / MANIFEST.format(name=NAME)))


def test_a_manifest_of_bytes_and_a_missing_one_are_serialization_errors(tmp_path):
    _write(tmp_path)
    (tmp_path / MANIFEST.format(name=NAME)).write_bytes(b"\xff\xfe\x00garbage")
    _refused(tmp_path, "malformed")
    os.unlink(tmp_path / MANIFEST.format(name=NAME))
    _refused(tmp_path, "no manifest")


def test_shards_of_another_run_are_refused(tmp_path):
    manifest = _write(tmp_path)
    write_shard(_rows(4, 10), tmp_path, NAME, 1, new_run_id())  # rank 1's file from a later run
    _refused(tmp_path, "cf.rank00001.pt", "another run", manifest["run"])


def test_a_shard_holding_other_rows_than_declared_is_refused(tmp_path):
    manifest = _write(tmp_path)
    write_shard(_rows(4, 9), tmp_path, NAME, 1, manifest["run"])
    _refused(tmp_path, "cf.rank00001.pt", "5 rows", "declares 6")


@pytest.mark.parametrize("change, words", [
    (lambda v: {**v, "x": v["x"].float()}, ["'x'", "torch.float32"]),
    (lambda v: {**v, "img": v["img"].repeat(1, 2)}, ["'img'", "(2,)"]),
    (lambda v: {"x": v["x"]}, ["'img'", "nothing"]),
    (lambda v: {**v, "extra": v["x"]}, ["'extra'"]),
])
def test_shards_must_agree_on_nodes_dtypes_and_shapes(tmp_path, change, words):
    manifest = _write(tmp_path)
    write_shard(change(_rows(4, 10)), tmp_path, NAME, 1, manifest["run"])
    _refused(tmp_path, "cf.rank00001.pt", *words)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("content", [b"", b"\x80\x04garbage", b"PK\x03\x04broken", "pickle", "tensor", "list"])
def test_a_shard_that_is_not_one_is_refused_and_never_unpickled(tmp_path, monkeypatch, content):
    _write(tmp_path)
    monkeypatch.chdir(tmp_path)
    shard = tmp_path / "cf.rank00001.pt"
    if content == "pickle":
        shard.write_bytes(pickle.dumps({"run": "r", "values": _Payload()}))
    elif content == "tensor":
        torch.save(torch.zeros(6), shard)
    elif content == "list":
        torch.save({"run": "r", "values": [1, 2]}, shard)
    else:
        shard.write_bytes(content)
    _refused(tmp_path, "cf.rank00001.pt")
    assert not (tmp_path / "pwned").exists()


def test_a_missing_shard_file_is_refused(tmp_path):
    _write(tmp_path)
    os.unlink(tmp_path / "cf.rank00001.pt")
    _refused(tmp_path, "cf.rank00001.pt", "cannot read")
