"""Testing tools for causaldiff models: counterfactual laws, hypothesis strategies, a pytest helper,
and the contract suites that every registered mechanism and data set passes.

``check_counterfactual_laws(scm)`` checks a user's own SCM in one line and returns a report of the
largest error each law measured against its tolerance; :func:`dags`, :func:`scms` and
:func:`interventions` generate random models and interventions for hypothesis; ``law_tests(factory)``
turns an SCM factory into parametrised pytest tests.
"""

from .laws import (check_batch_invariance, check_callable_effectiveness, check_commutation, check_composition,
                   check_dtypes, check_effectiveness, check_idempotence, check_non_descendants,
                   check_reversibility, check_round_trip, check_shift_effectiveness)
from .processes import ProcessesFailed, free_port, run_distributed, run_torchrun
from .pytest_helper import law_tests
from .report import LawReport, LawViolation, Measurement
from .strategies import FAMILIES, KINDS, LINKS, SOFT_FUNCTIONS, dags, interventions, named_callable, scms
from .suite import LAWS, check_counterfactual_laws
from .tolerances import Tolerances

__all__ = ["dags", "scms", "interventions", "named_callable", "law_tests", "LawViolation", "LawReport",
           "Measurement", "Tolerances", "LAWS", "check_counterfactual_laws", "check_effectiveness",
           "check_shift_effectiveness", "check_callable_effectiveness", "check_non_descendants",
           "check_composition", "check_reversibility", "check_round_trip", "check_idempotence",
           "check_commutation", "check_batch_invariance", "check_dtypes", "FAMILIES", "LINKS", "KINDS",
           "SOFT_FUNCTIONS", "run_distributed", "run_torchrun", "free_port", "ProcessesFailed"]
