"""The contract every registered mechanism passes (after diffusers' common test classes)::

    class TestMyMechanism(MechanismContract):
        mechanism_class = MyMechanism
        parent_order = ("a",)

        def make_data(self):
            g = torch.Generator().manual_seed(0)
            a = torch.randn(64, generator=g)
            return a + 0.1 * torch.randn(64, generator=g), {"a": a}

``from_config(config)`` (default ``quick(Config())``) is fitted once per class and checked: a frozen
``Config`` forbidding extras; ``quick`` valid; an unfitted mechanism built; a fit of seconds; the
shapes of ``sample_noise`` / ``forward`` / ``abduct``; ``forward(abduct(x)) == x`` to the tolerance of
its declared :class:`~causaldiff.mechanisms.Abduction`; save / load and ``.to(device)``
(``CAUSALDIFF_TEST_DEVICE``) keep the outputs; a staged move changes nothing before its commit;
binding to other parents after fit raises :class:`~causaldiff.GraphError`.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch
from pydantic import BaseModel, ValidationError
from torch import Tensor

from ..errors import AbductionError, GraphError
from ..mechanisms.base import Abduction, Conditional, Mechanism
from ..mechanisms.moves import Move
from ..registry import MECHANISMS

#: registered name -> the contract classes that test it (filled as subclasses are defined)
COVERED: dict[str, list[type]] = {}


@dataclass
class Fitted:
    """A mechanism fitted on the contract's rows, and how long that took."""

    mechanism: Mechanism
    x: Tensor
    parents: dict[str, Tensor]
    seconds: float


class MechanismContract:
    """Base class of a mechanism's contract tests; see the module docstring."""

    #: the registered class under test (subclasses set it)
    mechanism_class: ClassVar[type[Mechanism] | None] = None
    #: the config to build it from; ``None``: ``quick(Config())``
    config: ClassVar[BaseModel | None] = None
    #: the node's parents, in the SCM's (sorted) order
    parent_order: ClassVar[tuple[str, ...]] = ()
    #: the node's name
    node: ClassVar[str] = "x"
    #: EXACT: ``forward(abduct(x))`` within this absolute and relative tolerance of ``x``
    exact_tolerance: ClassVar[float] = 1e-5
    #: APPROXIMATE: mean ``|forward(abduct(x)) - x|`` at most this fraction of ``x``'s std
    approximate_tolerance: ClassVar[float] = 0.05
    #: fitting on the contract's rows takes at most this many seconds
    fit_seconds: ClassVar[float] = 20.0
    #: whether ``get_config`` saves it (False: code such as a callable, which it must refuse)
    saveable: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.mechanism_class is not None:
            COVERED.setdefault(cls.mechanism_class.name or "?", []).append(cls)

    # ----------------------------------------------------------------------------- hooks
    def make_config(self) -> BaseModel:
        cls = self.mechanism_class
        return self.config if self.config is not None else cls.quick(cls.Config())

    def make_mechanism(self) -> Mechanism:
        """An unfitted mechanism (default: ``from_config(make_config())``)."""
        return self.mechanism_class.from_config(self.make_config())

    def make_data(self) -> tuple[Tensor, dict[str, Tensor]]:
        """Tiny seeded training rows ``(x, parents)``."""
        raise NotImplementedError(f"{type(self).__name__} must define make_data()")

    # ----------------------------------------------------------------------------- fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls) -> Fitted:
        """The mechanism fitted once per contract class on ``make_data()``."""
        contract = cls()
        torch.manual_seed(0)
        x, parents = contract.make_data()
        m = contract.make_mechanism()
        m.check_binding(cls.node, cls.parent_order)
        t0 = time.perf_counter()
        m.fit(x, parents, parent_order=cls.parent_order)
        return Fitted(m, x, parents, time.perf_counter() - t0)

    def _outputs(self, m: Mechanism, fitted: Fitted, seed: int = 1) -> tuple[Tensor, Tensor]:
        """``(noise, forward(noise))`` for the contract's parents, drawn from a generator seeded ``seed``."""
        c = m.given(fitted.parents, fitted.x.shape[0])
        u = c.sample_noise(torch.Generator(device=fitted.x.device).manual_seed(seed))
        return u, c.forward(u)

    # ----------------------------------------------------------------------------- registry
    def test_registered_under_its_name(self):
        cls = self.mechanism_class
        assert cls.name is not None and MECHANISMS.get(cls.name) is cls

    def test_config_is_frozen_and_forbids_extra_keys(self):
        config = self.mechanism_class.Config()
        with pytest.raises(ValidationError):
            self.mechanism_class.Config(not_an_option=1)
        field = next(iter(type(config).model_fields), None)
        if field is not None:
            with pytest.raises(ValidationError):
                setattr(config, field, getattr(config, field))

    def test_quick_gives_a_valid_config(self):
        cls = self.mechanism_class
        quick = cls.quick(cls.Config())
        assert isinstance(quick, cls.Config)
        assert cls.Config.model_validate(quick.model_dump()) == quick

    def test_from_config_builds_an_unfitted_mechanism(self):
        m = self.make_mechanism()
        assert isinstance(m, self.mechanism_class)
        assert m.fitted_parents is None and m.is_fitted == (not m.learnable)

    def test_contract_signatures(self):
        for name in ("check_binding", "why_not_abductable", "abduction", "given", "sample_noise", "abduct"):
            own = inspect.signature(getattr(self.mechanism_class, name)).parameters
            base = inspect.signature(getattr(Mechanism, name)).parameters
            assert list(own) == list(base), f"{self.mechanism_class.__name__}.{name} signature"

    # ----------------------------------------------------------------------------- fitted
    def test_noise_is_drawn_from_the_generator_given(self, fitted: Fitted):
        """The same seed gives the same noise, and torch's global RNG is not drawn from."""
        state = torch.get_rng_state()
        a, b = (self._outputs(fitted.mechanism, fitted, seed=5)[0] for _ in range(2))
        assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)

    def test_fits_in_seconds(self, fitted: Fitted):
        assert fitted.mechanism.is_fitted
        assert fitted.mechanism.fitted_parents in (None, self.parent_order)
        assert fitted.seconds < self.fit_seconds

    def test_shapes(self, fitted: Fitted):
        m, x, n = fitted.mechanism, fitted.x, fitted.x.shape[0]
        c = m.given(fitted.parents, n)
        assert isinstance(c, Conditional)
        u = c.sample_noise()
        assert u.shape[0] == n
        value = c.forward(u)
        assert value.shape == x.shape
        if c.event_shape() is not None:
            assert tuple(c.event_shape()) == tuple(x.shape[1:])
        if c.value_dtype() is not None:
            assert value.dtype == c.value_dtype()
        if c.abduction is not Abduction.IMPOSSIBLE:
            assert c.abduct(x).shape == u.shape

    def test_forward_inverts_abduct(self, fitted: Fitted):
        m, x = fitted.mechanism, fitted.x
        c = m.given(fitted.parents, x.shape[0])
        capability = c.abduction
        if capability is Abduction.IMPOSSIBLE:
            assert c.why_not_abductable()
            with pytest.raises((AbductionError, NotImplementedError)):
                c.abduct(x)
            return
        back = c.forward(c.abduct(x))
        if capability is Abduction.EXACT:
            torch.testing.assert_close(back, x, atol=self.exact_tolerance, rtol=self.exact_tolerance)
        elif capability is Abduction.APPROXIMATE:
            err = (back - x).abs().mean().item()
            assert err <= self.approximate_tolerance * x.float().std().item(), err
        else:  # STOCHASTIC: a posterior noise sample; discrete values come back exactly
            assert torch.equal(back, x)

    def test_save_load_round_trip(self, fitted: Fitted):
        m = fitted.mechanism
        if not self.saveable:
            with pytest.raises(NotImplementedError):
                m.get_config()
            return
        config = json.loads(json.dumps(m.get_config()))
        loaded = type(m).from_saved(config, {k: v.clone() for k, v in m.state_tensors().items()})
        loaded.check_binding(self.node, self.parent_order)
        assert torch.equal(self._outputs(loaded, fitted)[1], self._outputs(m, fitted)[1])

    def test_to_device_keeps_outputs(self, fitted: Fitted):
        m, device = fitted.mechanism, torch.device(os.environ.get("CAUSALDIFF_TEST_DEVICE", "cpu"))
        u, before = self._outputs(m, fitted)
        try:
            assert m.to(device) is m
            on = {k: v.to(device) for k, v in fitted.parents.items()}
            after = m.given(on, u.shape[0]).forward(u.to(device)).cpu()
        finally:
            m.to("cpu")
        if device.type == "cpu" or not before.is_floating_point():
            assert torch.equal(after, before)
        else:
            torch.testing.assert_close(after, before, atol=1e-3, rtol=1e-3)

    def test_a_staged_move_changes_nothing_until_commit(self, fitted: Fitted):
        """``stage_to`` only copies (``SCM.to`` is all or nothing): the mechanism's tensors and
        their holders are untouched until the move is committed."""
        m = fitted.mechanism
        holders = {k: id(v) for k, v in vars(m).items() if not isinstance(v, (int, float, str, bool, type(None)))}
        tensors = {k: (v.data_ptr(), v.device) for k, v in m.state_tensors().items()}
        m.stage_to(Move(torch.device("cpu")))
        assert {k: id(v) for k, v in vars(m).items() if k in holders} == holders
        assert {k: (v.data_ptr(), v.device) for k, v in m.state_tensors().items()} == tensors

    def test_binding_to_other_parents_is_refused(self, fitted: Fitted):
        with pytest.raises(GraphError, match=repr(self.node)):
            fitted.mechanism.check_binding(self.node, tuple(sorted(self.parent_order + ("zz_other",))))
        fitted.mechanism.check_binding(self.node, self.parent_order)  # the fitted binding still works


def uncovered_mechanisms() -> list[str]:
    """Registered mechanism names that no contract class tests (in this session)."""
    return sorted(set(MECHANISMS.names()) - set(COVERED))


__all__ = ["COVERED", "Fitted", "MechanismContract", "uncovered_mechanisms"]
