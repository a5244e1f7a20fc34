"""Explicit randomness: block generators, and seeded forks of the global RNG that restore exactly the
generators they seed."""

from __future__ import annotations

import pytest
import torch

from causaldiff.rng import ROW_BLOCK, RowStreams, block_seed, forked_seed, generator, opaque_draw
from causaldiff.training import seeded_rng


def test_block_generators_are_seeded_per_block():
    streams = RowStreams(7, ROW_BLOCK, 2 * ROW_BLOCK + 5, torch.device("cpu"))
    assert streams.single is None and len(streams.generators) == 3
    got = streams.draw(lambda rows, m, g: torch.rand(m, generator=g))
    want = torch.cat([torch.rand(m, generator=generator(block_seed(7, b))) for b, m in
                      ((1, ROW_BLOCK), (2, ROW_BLOCK), (3, 5))])
    assert torch.equal(got, want)


def test_a_forked_seed_seeds_the_cpu_generator_and_restores_it():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    with forked_seed(11):
        inside = torch.rand(4)
    assert torch.equal(inside, torch.rand(4, generator=generator(11)))
    assert torch.equal(torch.rand(4), expected)


def test_an_opaque_draw_is_a_draw_of_its_generator():
    d = torch.distributions.StudentT(3.0)
    a = opaque_draw(generator(5), lambda: d.sample((6,)))
    b = opaque_draw(generator(5), lambda: d.sample((6,)))
    assert torch.equal(a, b)


@pytest.mark.gpu
def test_seeding_one_gpu_leaves_the_other_gpus_rng_alone():
    """``torch.manual_seed`` reseeds every GPU while ``fork_rng(devices=[0])`` restores only GPU 0:
    the seeded fork must touch exactly the generators it restores."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    before = torch.cuda.get_rng_state(1)
    with seeded_rng("cuda:0", 5):
        torch.randn(3, device="cuda:0")
    assert torch.equal(torch.cuda.get_rng_state(1), before)
