"""Reliability catalogue, seeds (issue 14, point 3): seeded queries give the same rows in threads as
run one after the other, leave the caller's global RNG untouched, and a seed of the wrong type is
refused naming ``seed``."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from bad_inputs import make_scm, refuse

import causaldiff as cd
from causaldiff.errors import SeedError


@pytest.fixture(scope="module")
def scm():
    return make_scm()


@pytest.fixture(scope="module")
def data(scm):
    return dict(scm.sample(40, seed=0))


QUERIES = {
    "sample": lambda scm, data, seed: scm.sample(5, seed=seed),
    "sample_chunked": lambda scm, data, seed: scm.sample(5, seed=seed, batch_size=2),
    "interventional_samples": lambda scm, data, seed: scm.interventional_samples(5, do={"x": 1.0}, seed=seed),
    "counterfactual": lambda scm, data, seed: scm.counterfactual(data, do={"x": 1.0}, seed=seed),
    "abduct": lambda scm, data, seed: scm.abduct(data, seed=seed),
    "predict": lambda scm, data, seed: scm.predict(dict(scm.abduct(data, seed=0)), seed=seed),
}
BAD_SEEDS = [1.5, 1.0, float("nan"), "3", b"3", True, False, np.float64(2.0), np.bool_(True), torch.tensor(3),
             2 ** 64, -(2 ** 63) - 1, [1], 1j]


@pytest.mark.parametrize("query", list(QUERIES))
@pytest.mark.parametrize("seed", BAD_SEEDS, ids=[repr(s)[:20] for s in BAD_SEEDS])
def test_a_seed_of_the_wrong_type_is_refused(scm, data, query, seed):
    err = refuse(SeedError, r"seed must (be an integer or None|lie in)", lambda: QUERIES[query](scm, data, seed),
                 scm=scm, data=data)
    assert isinstance(err, TypeError) and isinstance(err, cd.DataError)


@pytest.mark.parametrize("query", list(QUERIES))
def test_integer_seeds_of_any_integer_type_agree(scm, data, query):
    a, b = QUERIES[query](scm, data, 7), QUERIES[query](scm, data, np.int64(7))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("query", list(QUERIES))
def test_a_seeded_query_leaves_the_global_rng_untouched(scm, data, query):
    torch.manual_seed(123)
    before = torch.get_rng_state().clone()
    QUERIES[query](scm, data, 5)
    assert torch.equal(torch.get_rng_state(), before)


def _run(scm, data, jobs):
    return [{k: v.clone() for k, v in QUERIES[q](scm, data, s).items()} for q, s in jobs]


def test_threads_get_the_rows_they_get_one_after_the_other(scm, data):
    """Eight threads, each running seeded queries of every kind (some of more than one RNG block
    of rows, Gumbel-max abduction of the categorical node), while two more run unseeded queries."""
    jobs = [[(q, 10 * i + j) for j, q in enumerate(QUERIES)] for i in range(8)]
    alone = [_run(scm, data, js) for js in jobs]
    big_alone = scm.sample(2500, seed=99)
    torch.manual_seed(5)
    before = torch.get_rng_state().clone()
    results, errors = [None] * len(jobs), []
    stop = threading.Event()

    def seeded(i):
        try:
            barrier.wait()
            results[i] = _run(scm, data, jobs[i])
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    def unseeded():
        while not stop.is_set():
            scm.sample(30)
            scm.counterfactual(data, do={"c": 1})

    barrier = threading.Barrier(len(jobs))
    noisy = [threading.Thread(target=unseeded) for _ in range(2)]
    threads = [threading.Thread(target=seeded, args=(i,)) for i in range(len(jobs))]
    big = {}
    threads.append(threading.Thread(target=lambda: big.update(scm.sample(2500, seed=99))))
    for th in noisy + threads:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    for th in noisy:
        th.join()
    assert not errors, errors
    for got, want in zip(results, alone):
        for a, b in zip(got, want):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(big[k], big_alone[k]) for k in big_alone)
    torch.set_rng_state(before)  # (the unseeded queries drew from the global RNG, as they should)


def test_the_caller_rng_is_untouched_by_seeded_queries_in_other_threads(scm, data):
    torch.manual_seed(11)
    expected = torch.rand(5)
    torch.manual_seed(11)
    threads = [threading.Thread(target=lambda: [QUERIES[q](scm, data, 3) for q in QUERIES]) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert torch.equal(torch.rand(5), expected)
