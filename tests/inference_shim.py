"""TEMPORARY stand-ins for ``DiffusionMechanism.with_inference`` and ``SCM.with_mechanisms``,
which other parts of issue 9 are adding to the library right now. ``install()`` adds them only
where the library lacks them, so once the real ones land this module does nothing (delete it then).
"""

from __future__ import annotations

from typing import Any

from causaldiff.mechanisms.diffusion import DiffusionConfig, DiffusionMechanism
from causaldiff.scm import SCM


def _with_inference(self: DiffusionMechanism, *, guidance_scale: Any = None, abduction_fraction: Any = None,
                    num_inference_steps: Any = None) -> DiffusionMechanism:
    update: dict[str, Any] = {}
    if guidance_scale is not None:
        update["guidance_scale"] = guidance_scale
    if abduction_fraction is not None:
        update["abduction_fraction"] = float(abduction_fraction)
    if num_inference_steps is not None:
        update["sampler"] = {**self.config.sampler.model_dump(), "num_inference_steps": num_inference_steps}
    new = DiffusionMechanism(DiffusionConfig.model_validate({**self.config.model_dump(), **update}))
    new.denoiser, new.predictor, new.stats, new._device = self.denoiser, self.predictor, self.stats, self._device
    new.node, new.fitted_parents = self.node, self.fitted_parents
    return new


def _with_mechanisms(self: SCM, mechanisms: dict[str, Any]) -> SCM:
    return SCM(self.graph, {**self.mechanisms, **mechanisms})


def install() -> None:
    if not hasattr(DiffusionMechanism, "with_inference"):
        DiffusionMechanism.with_inference = _with_inference
    if not hasattr(SCM, "with_mechanisms"):
        SCM.with_mechanisms = _with_mechanisms
