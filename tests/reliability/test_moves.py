"""``scm.to(device)`` moves everything or nothing: a device that does not exist is refused before
anything moves, and a failure while moving one mechanism leaves every weight where it was."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

import causaldiff as cd
import storage_models as sm
from causaldiff.devices import check_device, device_problem
from causaldiff.errors import DeviceError


def _state(scm: cd.SCM) -> list[tuple]:
    """Every mechanism's holders of tensors (their identity: a commit, even to the same device,
    replaces them) and every tensor's storage and device."""
    out = []
    for n in scm.nodes:
        m = scm.mechanisms[n]
        out += [(n, a, id(getattr(m, a))) for a in ("stats", "spec", "state") if hasattr(m, a)]
        out += [(n, k, v.data_ptr(), v.device) for k, v in m.state_tensors().items()]
    return out


@pytest.fixture(scope="module")
def scm():
    return sm.full_scm()


BAD = ["meta", "cpu:1", "cpu:99", "tpu", "nowhere", "cuda:99", "", 3.5, None, True, ["cpu"]]
if not torch.cuda.is_available():
    BAD += ["cuda", "cuda:0", 0]


@pytest.mark.parametrize("device", BAD, ids=[repr(d) for d in BAD])
def test_a_device_that_does_not_exist_is_refused_before_anything_moves(scm, device):
    before, where = _state(scm), scm.device
    with pytest.raises(DeviceError, match=r"scm.to: ") as e:
        scm.to(device)
    assert repr(device) in str(e.value) or type(device).__name__ in str(e.value) or "meta" in str(e.value)
    assert _state(scm) == before and scm.device == where
    assert isinstance(e.value, cd.CausalDiffError) and isinstance(e.value, ValueError)


class Stuck(cd.Mechanism):
    """A user's mechanism whose tensors cannot go to the target (its staging fails)."""

    def __init__(self):
        super().__init__()
        self.loc = torch.zeros(())

    def sample_noise(self, n, parents, generator=None):
        return torch.randn(n, generator=generator)

    def forward(self, noise, parents):
        return noise + self.loc

    def stage_to(self, move):
        raise RuntimeError(f"node {self.node!r}: this mechanism's weights cannot move to {move.device}")


class OldStyle(cd.Mechanism):
    """A user's mechanism that only overrides ``to`` (the contract before staged moves)."""

    def __init__(self):
        super().__init__()
        self.moved_to = []

    def sample_noise(self, n, parents, generator=None):
        return torch.randn(n, generator=generator)

    def forward(self, noise, parents):
        return noise

    def to(self, device):
        self.moved_to.append(torch.device(device))
        return self


def _with(extra: str, mechanism: cd.Mechanism, parent: str | None) -> cd.SCM:
    base = sm.full_scm()
    g = nx.DiGraph(base.graph)
    g.add_node(extra)
    if parent is not None:
        g.add_edge(parent, extra)
    return cd.SCM(g, {**base.mechanisms, extra: mechanism})


@pytest.mark.parametrize("name, parent", [("a_first", None), ("m_middle", "y"), ("zz_last", "d")])
def test_a_failure_half_way_leaves_every_weight_where_it_was(name, parent):
    scm = _with(name, Stuck(), parent)
    before = _state(scm)
    with pytest.raises(RuntimeError, match=rf"node '{name}': this mechanism's weights cannot move"):
        scm.to("cpu")
    assert _state(scm) == before and scm.device == torch.device("cpu")
    assert scm.sample(5, seed=1).keys() == set(scm.nodes)  # still usable


def test_a_successful_move_commits_every_mechanism():
    scm = sm.full_scm()
    before, a = _state(scm), scm.sample(30, seed=2)
    assert scm.to("cpu") is scm
    after = _state(scm)
    assert [x[:2] for x in after] == [x[:2] for x in before]
    assert all(x[2] != y[2] for x, y in zip(before, after) if len(x) == 3)  # every holder replaced
    b = scm.sample(30, seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_mechanism_that_only_overrides_to_is_still_moved():
    m = OldStyle()
    scm = _with("old", m, None)
    scm.to("cpu")
    assert m.moved_to == [torch.device("cpu")]


def test_shared_networks_stay_shared_after_a_move():
    scm = sm.full_scm()
    d = scm.mechanisms["d"]
    fast = d.with_inference(num_inference_steps=2)
    scm.to("cpu")
    assert fast.denoiser is d.denoiser


@pytest.mark.parametrize("device", ["cpu", "cpu:0", torch.device("cpu")], ids=str)
def test_check_device_accepts_the_cpu(device):
    assert check_device(device).type == "cpu"


@pytest.mark.gpu
def test_an_out_of_memory_half_way_on_a_gpu_leaves_everything_on_the_cpu():
    """A real failure: the last mechanism's tensors do not fit in the GPU memory allowed."""
    import pyro.distributions as dist

    big = 512 * 2 ** 20  # 2 GiB of float32
    total = torch.cuda.get_device_properties(0).total_memory
    scm = _with("zz_big", cd.PyroMechanism(dist.Normal(torch.zeros(big), torch.ones(big))), None)
    before = _state(scm)
    torch.cuda.set_per_process_memory_fraction(min(1.0, 2 ** 30 / total), 0)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            scm.to("cuda")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()
    assert _state(scm) == before and scm.device == torch.device("cpu")
    small = sm.full_scm()
    a = small.sample(20, seed=3)
    small.to("cuda")
    assert all(v.device.type == "cuda" for n in small.nodes for v in small.mechanisms[n].state_tensors().values())
    b = small.to("cpu").sample(20, seed=3)
    assert all(a[k].shape == b[k].shape for k in a)


@pytest.mark.parametrize("device", ["cpu:1", "meta", "tpu", "", 3.5])
def test_check_device_words_the_reason_device_problem_gives(device):
    problem = device_problem(device)
    assert problem is not None and device_problem("cpu") is None
    with pytest.raises(DeviceError) as e:
        check_device(device, "scm.to")
    assert str(e.value).startswith("scm.to: ") and str(e.value).endswith(problem.reason)
    assert (repr(device) in str(e.value)) == isinstance(device, str)


def test_a_device_kind_left_out_of_kinds_is_not_supported():
    problem = device_problem("cpu", kinds=("cuda",))
    assert problem is not None and not problem.on_machine and "'cpu' is not supported" in problem.reason
