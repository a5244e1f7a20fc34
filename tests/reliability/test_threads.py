"""Explicit randomness across threads (issue 22, part C): seeded queries running beside fits and
global-RNG draws in other threads get the rows they get alone, never rewind those threads' draws,
and run at the same time (no process-wide lock)."""

from __future__ import annotations

import threading

import networkx as nx
import pyro.distributions as dist
import torch
from bad_inputs import make_scm

import causaldiff as cd
from causaldiff.mechanisms.base import Abduction, Mechanism

F64 = torch.float64


def _fit_scm() -> tuple[cd.SCM, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(120, generator=g, dtype=F64)
    rows = {"a": a, "b": torch.tanh(a) + 0.1 * torch.randn(120, generator=g, dtype=F64)}
    return cd.SCM(nx.DiGraph([("a", "b")]), mechanisms={"b": cd.AdditiveNoiseMechanism(steps=15, hidden=(8,)),
                                                        "a": dist.Normal(torch.tensor(0.0, dtype=F64), 1.0)}), rows


def _run_together(targets):
    errors = []

    def guard(fn):
        def run():
            try:
                fn()
            except Exception as e:  # noqa: BLE001  (reported below)
                errors.append(e)
        return run

    threads = [threading.Thread(target=guard(fn)) for fn in targets]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors


def test_seeded_counterfactuals_beside_fits_and_global_draws():
    """4 threads run seeded counterfactuals (Gumbel-max abduction of a categorical node, rows over
    several RNG blocks) on one SCM while 2 threads fit and draw from torch's global RNG: every
    seeded thread gets the rows it gets alone, and no global draw of the other threads comes twice
    (a query or a fit that reseeded or restored the global RNG under them would repeat values)."""
    scm = make_scm()
    data = dict(scm.sample(1500, seed=0))
    jobs = [[(do, 10 * i + j) for j, do in enumerate(({"x": 1.0}, {"c": 1}, {"x": -0.5}))] for i in range(4)]

    def answer(i):
        return [dict(scm.counterfactual(data, do=do, seed=s)) for do, s in jobs[i]]

    alone = [answer(i) for i in range(4)]
    got, drawn = [None] * 4, [[], []]

    def seeded(i):
        got[i] = answer(i)

    def fit_and_draw(k):
        for _ in range(3):
            fit, rows = _fit_scm()
            drawn[k].append(torch.rand(200, dtype=F64))
            fit.fit(rows)
            drawn[k].append(torch.rand(200, dtype=F64))

    _run_together([lambda i=i: seeded(i) for i in range(4)] + [lambda k=k: fit_and_draw(k) for k in range(2)])
    for mine, ref in zip(got, alone):
        for a, b in zip(mine, ref):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    values = torch.cat([torch.cat(d) for d in drawn])
    assert values.unique().numel() == values.numel()


class _Meeting(Mechanism):
    """A root whose noise is drawn only once two queries are drawing at the same time."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self.barrier = barrier

    def abduction(self, parents=None):
        return Abduction.EXACT

    def sample_noise(self, n, parents, generator=None):
        self.barrier.wait()  # broken (BrokenBarrierError) unless another query is here too
        return torch.randn(n, generator=generator, dtype=F64)

    def forward(self, noise, parents):
        return noise

    def abduct(self, x, parents, generator=None):
        return x


def test_two_seeded_queries_overlap_in_time():
    """Each query's draw waits for the other's: with a process-wide lock the second could not start
    until the first ended, and the barrier would break after its timeout."""
    barrier = threading.Barrier(2, timeout=60)
    scm = cd.SCM(nx.DiGraph([("u", "v")]), mechanisms={"u": _Meeting(barrier),
                                                      "v": lambda u: dist.Normal(u, 1.0)})
    out = [None, None]

    def query(i):
        out[i] = scm.sample(8, seed=i)

    _run_together([lambda i=i: query(i) for i in range(2)])
    assert not torch.equal(out[0]["u"], out[1]["u"])
    assert torch.equal(out[0]["u"], torch.randn(8, generator=torch.Generator().manual_seed(0), dtype=F64))
