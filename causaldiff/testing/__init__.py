"""Testing tools for causaldiff models: counterfactual laws, hypothesis strategies, and the
contract suites that every registered mechanism and data set passes.

``check_counterfactual_laws(scm)`` checks a user's own SCM in one line; :func:`dags` and
:func:`scms` generate random models for hypothesis.
"""

from .laws import (FAMILIES, LINKS, LawReport, LawViolation, check_batch_invariance, check_commutation,
                   check_composition, check_counterfactual_laws, check_effectiveness, check_idempotence,
                   check_non_descendants, check_reversibility, dags, named_callable, scms)

__all__ = ["dags", "scms", "named_callable", "LawViolation", "LawReport", "check_counterfactual_laws",
           "check_effectiveness", "check_non_descendants", "check_composition", "check_reversibility",
           "check_idempotence", "check_commutation", "check_batch_invariance", "FAMILIES", "LINKS"]
