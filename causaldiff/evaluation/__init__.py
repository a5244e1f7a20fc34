"""What users evaluate their own models with; the benchmarks (``benchmarks/`` in a source checkout)
are built over it.

* :mod:`~causaldiff.evaluation.axioms`: image-counterfactual metrics in the vocabulary of Monteiro
  et al. 2023 (effectiveness, composition, reversibility, minimality) with IM1/IM2/CLD, guidance sweeps;
* :mod:`~causaldiff.evaluation.fitted`: what ``causaldiff evaluate`` / ``sweep`` report on a fitted run;
* :mod:`~causaldiff.evaluation.report`: environment stamps, timers, ``batched``, atomic writers;
* :mod:`~causaldiff.evaluation.plotting`: image grids, DAG pictures, sweep plots (the ``plot`` extra).

Every metric is defined once, in :mod:`causaldiff.metrics`. Each name is imported on first use
(``causaldiff graph`` draws without loading the metrics).
"""

from ..lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".axioms": ["guidance_sweep", "image_counterfactual_metrics", "with_inference"],
    ".plotting": ["draw_graph", "plot_sweep", "save_grid"],
    ".report": ["Timer", "batched", "environment", "write_results"],
}, modules=("axioms", "fitted", "plotting", "report"))

__all__ = ["axioms", "fitted", "plotting", "report", "guidance_sweep", "image_counterfactual_metrics", "with_inference",
           "draw_graph", "plot_sweep", "save_grid", "Timer", "batched", "environment", "write_results"]
