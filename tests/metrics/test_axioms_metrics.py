"""Composition and reversibility on counterfactual functions with known behaviour."""

from __future__ import annotations

import pytest
import torch

from causaldiff.datasets import Draw, ShapesSCM
from causaldiff.errors import DataError
from causaldiff.metrics import composition, reversibility


def _rows(n: int = 4) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"digit": torch.randint(0, 10, (n,), generator=g),
            "image": torch.rand(n, 1, 8, 8, generator=g) * 2 - 1}


def test_identity_counterfactual_scores_zero():
    calls = []

    def identity(rows, do):
        calls.append(dict(do))
        return {**rows, **do}

    rows = _rows()
    out = composition(identity, rows)
    assert sorted(out) == [1, 10] and len(calls) == 10
    assert all(torch.equal(v, torch.zeros(4, dtype=torch.float64)) for v in out.values())
    assert torch.equal(calls[0]["digit"], rows["digit"])  # the null intervention
    assert torch.equal(reversibility(identity, rows, {"digit": 3}), torch.zeros(4, dtype=torch.float64))


def test_drifting_counterfactual_known_answer():
    """A model that brightens the image by c per call: composition after m cycles = m c;
    reversibility = 2 c (two calls)."""
    c = 0.01

    def drift(rows, do):
        return {**rows, **do, "image": rows["image"] + c}

    rows = _rows()
    out = composition(drift, rows, cycles=(1, 3, 10))
    for m, v in out.items():
        torch.testing.assert_close(v, torch.full((4,), m * c, dtype=torch.float64))
    torch.testing.assert_close(reversibility(drift, rows, {"digit": 1}),
                               torch.full((4,), 2 * c, dtype=torch.float64))


def test_reversibility_from_precomputed_counterfactual_rows_calls_only_the_way_back():
    c = 0.01
    calls = []

    def drift(rows, do):
        calls.append(dict(do))
        return {**rows, **do, "image": rows["image"] + c}

    rows = _rows()
    cf = drift(rows, {"digit": 3})
    calls.clear()
    rev = reversibility(drift, rows, {"digit": 3}, counterfactual=cf)
    assert len(calls) == 1 and torch.equal(calls[0]["digit"], rows["digit"])  # only back to the factual
    torch.testing.assert_close(rev, torch.full((4,), 2 * c, dtype=torch.float64))


def test_true_counterfactuals_of_the_shapes_scm_are_sound():
    scm = ShapesSCM()
    batch = scm.sample(64, torch.Generator().manual_seed(3))

    values = set(batch.values)

    def true_cf(rows, do):  # the metrics pass every key along: values and exogenous side by side
        draw = Draw({k: v for k, v in rows.items() if k in values}, {k: v for k, v in rows.items() if k not in values})
        return {**scm.counterfactual(draw, do), **draw.exogenous}

    rows = {**batch.values, **batch.exogenous}
    comp = composition(true_cf, rows, nodes=["shape", "size", "intensity"])
    assert comp[10].max() < 1e-5
    rev = reversibility(true_cf, rows, {"shape": (batch.values["shape"] + 1) % 3})
    assert rev.max() < 1e-5


def test_errors():
    rows = _rows()
    with pytest.raises(DataError, match="'img'"):
        composition(lambda r, d: r, rows, image_node="img")
    with pytest.raises(DataError, match="cycles"):
        composition(lambda r, d: r, rows, cycles=(0,))
    with pytest.raises(DataError, match="parent values"):
        reversibility(lambda r, d: r, rows, {"colour": 1})
