"""``law_tests(factory)``: a user's SCM factory as parametrised pytest tests, one per law and seed::

    # test_my_model.py
    from causaldiff.testing import law_tests
    test_my_model_obeys_the_laws = law_tests(make_my_scm, seeds=(0, 1))

pytest then collects ``test_my_model_obeys_the_laws[effectiveness-0]``, ``...[round trip-1]`` and so on;
a law the model gives no occasion to check (batch invariance with a stochastic node) is skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from ..scm import SCM
from .suite import LAWS, check_counterfactual_laws
from .tolerances import Tolerances


def law_tests(factory: Callable[[], SCM], *, seeds: Sequence[int] = (0,), n: int = 8,
              tolerances: Tolerances | None = None, laws: Sequence[str] = LAWS, **options: Any) -> Callable[..., None]:
    """A pytest test function parametrised over ``laws`` x ``seeds``; ``factory()`` builds (and fits)
    the SCM once, on first use, and is shared by the tests. ``options`` go to
    :func:`check_counterfactual_laws` (e.g. ``interventions=[...]``)."""
    import pytest  # only when building tests: pytest is not a dependency of the library

    unknown = sorted(set(laws) - set(LAWS))
    if unknown:
        raise ValueError(f"unknown law(s) {unknown}; the laws are {list(LAWS)}")
    model = functools.cache(factory)

    @pytest.mark.parametrize("seed", list(seeds))
    @pytest.mark.parametrize("law", list(laws))
    def test_counterfactual_law(law: str, seed: int) -> None:
        report = check_counterfactual_laws(model(), n=n, seed=seed, tolerances=tolerances, laws=[law], **options)
        if law not in report.laws:
            pytest.skip(f"{law}: nothing to check on this model ({'; '.join(report.skipped) or 'not applicable'})")

    test_counterfactual_law.__name__ = f"test_laws_of_{getattr(factory, '__name__', 'scm')}"
    return test_counterfactual_law


__all__ = ["law_tests"]
