"""What users evaluate their own models with (the benchmarks are built over it): :mod:`.axioms`
(Monteiro et al. 2023's axioms with IM1/IM2/CLD, guidance sweeps), :mod:`.fitted` (what
``causaldiff evaluate`` / ``sweep`` report), :mod:`.report` (environment stamps, timers, ``batched``,
atomic writers), :mod:`.plotting` (image grids, DAGs, sweeps; the ``plot`` extra). Every metric is
defined once, in :mod:`causaldiff.metrics`.
"""

from . import axioms as axioms
from . import fitted as fitted
from . import plotting as plotting
from . import report as report
from .axioms import guidance_sweep as guidance_sweep
from .axioms import image_counterfactual_metrics as image_counterfactual_metrics
from .axioms import with_inference as with_inference
from .plotting import draw_graph as draw_graph
from .plotting import plot_sweep as plot_sweep
from .plotting import save_grid as save_grid
from .report import Timer as Timer
from .report import batched as batched
from .report import environment as environment
from .report import write_results as write_results

__all__ = ["axioms", "fitted", "plotting", "report", "guidance_sweep", "image_counterfactual_metrics", "with_inference",
           "draw_graph", "plot_sweep", "save_grid", "Timer", "batched", "environment", "write_results"]
