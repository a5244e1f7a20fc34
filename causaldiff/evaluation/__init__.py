"""Evaluation as library code: the benchmarks, the demos and the CLI are thin layers over it.

* :mod:`~causaldiff.evaluation.systems`: the :class:`System` protocol (fit, counterfactual,
  interventional) with causaldiff and DoWhy gcm systems;
* :mod:`~causaldiff.evaluation.dcm`: the DCM tabular protocol (Chao et al., BENCHMARKS.md section 2);
* :mod:`~causaldiff.evaluation.axioms`: image-counterfactual metrics in the vocabulary of Monteiro
  et al. 2023 (effectiveness, composition, reversibility, minimality) with IM1/IM2/CLD, guidance sweeps;
* :mod:`~causaldiff.evaluation.fitted`: what ``causaldiff evaluate`` / ``sweep`` report on a fitted run;
* :mod:`~causaldiff.evaluation.mnist`: the Diff-SCM MNIST benchmark (settings in ``mnist_settings``);
* :mod:`~causaldiff.evaluation.report`: environment stamps, timers, ``batched``, atomic writers;
* :mod:`~causaldiff.evaluation.plotting`: image grids, DAG pictures, sweep plots.

Every metric is defined once, in :mod:`causaldiff.metrics`.
"""

from . import axioms as axioms
from . import budget as budget
from . import dcm as dcm
from . import fitted as fitted
from . import mnist as mnist
from . import mnist_settings as mnist_settings
from . import morphomnist as morphomnist
from . import morphomnist_plan as morphomnist_plan
from . import morphomnist_report as morphomnist_report
from . import morphomnist_run as morphomnist_run
from . import morphomnist_settings as morphomnist_settings
from . import plotting as plotting
from . import report as report
from . import systems as systems
from .axioms import choose_main as choose_main
from .axioms import guidance_sweep as guidance_sweep
from .axioms import image_counterfactual_metrics as image_counterfactual_metrics
from .axioms import with_inference as with_inference
from .budget import Budget as Budget
from .dcm import DCMSettings as DCMSettings
from .dcm import run_dcm as run_dcm
from .plotting import draw_graph as draw_graph
from .plotting import plot_sweep as plot_sweep
from .plotting import save_grid as save_grid
from .report import Timer as Timer
from .report import batched as batched
from .report import environment as environment
from .report import write_results as write_results
from .systems import CausaldiffSystem as CausaldiffSystem
from .systems import DowhySystem as DowhySystem
from .systems import System as System

__all__ = ["axioms", "budget", "dcm", "fitted", "mnist", "mnist_settings", "morphomnist", "morphomnist_plan", "morphomnist_report", "morphomnist_run", "morphomnist_settings", "plotting", "report", "systems",
           "choose_main", "guidance_sweep", "image_counterfactual_metrics", "with_inference", "Budget", "DCMSettings",
           "run_dcm", "draw_graph", "plot_sweep", "save_grid", "Timer", "batched", "environment",
           "write_results", "CausaldiffSystem", "DowhySystem", "System"]
