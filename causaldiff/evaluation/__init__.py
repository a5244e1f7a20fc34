"""What users evaluate their own models with (the benchmarks are built over it): :mod:`.axioms`
(Monteiro et al. 2023's axioms with IM1/IM2/CLD, guidance sweeps), :mod:`.fitted` (what
``causaldiff evaluate`` / ``sweep`` report), :mod:`.report` (environment stamps, timers, ``batched``,
atomic writers), :mod:`.plotting` (image grids, DAGs, sweeps; the ``plot`` extra). Every metric is
defined once, in :mod:`causaldiff.metrics`. Each name is imported on first use (``causaldiff
graph`` draws without loading the metrics).
"""

from ..lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".axioms": ["guidance_sweep", "image_counterfactual_metrics", "with_inference"],
    ".plotting": ["draw_graph", "plot_sweep", "save_grid"],
    ".report": ["Timer", "batched", "environment", "write_results"],
}, modules=("axioms", "fitted", "plotting", "report"))

__all__ = ["axioms", "fitted", "plotting", "report", "guidance_sweep", "image_counterfactual_metrics", "with_inference",
           "draw_graph", "plot_sweep", "save_grid", "Timer", "batched", "environment", "write_results"]
