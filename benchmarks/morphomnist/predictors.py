"""The benchmark's released effectiveness predictors (Melistas et al. 2024), loaded from safetensors.

Architecture (counterfactual-benchmark 581dbb4 ``models/classifiers/classifier.py``, after
biomedia-mira/causal-gen's ``pgm/layers.py``): a width-8 CNN on the padded ``(n, 1, 32, 32)`` image
in ``[-1, 1]``, LeakyReLU (slope 0.01) after every BatchNorm, spatial mean, then the context
(thickness only: the scaled intensity) concatenated before a two-layer head.  Outputs: thickness and
intensity scaled to ``[-1, 1]`` (unscaled with the benchmark's ranges; **no sigmoid on
intensity**, which the benchmark's ``effectiveness.py`` applies and which cannot give its published
figures), digit 10 logits.

BatchNorm runs either in eval mode (running statistics) or, as the benchmark's ``evaluate.py``
runs the predictors (never put in eval mode), on each batch's own statistics (batches of 256 in the
data's order): ``bn="batch"``.  Scoring never updates or mutates the running statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from causaldiff.datasets.mnist import DataError
#: predictor names, their output sizes and context sizes
OUTPUTS = {"thickness": 1, "intensity": 1, "digit": 10}
CONTEXT = {"thickness": 1, "intensity": 0, "digit": 0}
#: the benchmark's evaluation batch size (``batch_size_val`` of its configs)
BATCH = 256
WIDTH = 8
BNMode = Literal["eval", "batch"]


def _conv_block(c_in: int, c_out: int, k: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU()]


class Predictor(nn.Module):
    """One released predictor (module indices match the checkpoints' state-dict keys)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in OUTPUTS:
            raise ValueError(f"unknown predictor {name!r} (one of {list(OUTPUTS)})")
        self.name, w = name, WIDTH
        layers = _conv_block(1, w, 7, 1) + [nn.Identity()] + _conv_block(w, 2 * w, 3, 2)
        for c_in, c_out, stride in ((2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1),
                                    (4 * w, 8 * w, 2)):
            layers += _conv_block(c_in, c_out, 3, stride)
        self.cnn = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(8 * w + CONTEXT[name], 8 * w, bias=False),
                                nn.BatchNorm1d(8 * w), nn.LeakyReLU(), nn.Linear(8 * w, OUTPUTS[name]))

    @staticmethod
    def _run(layers: nn.Sequential, x: Tensor, batch_stats: bool) -> Tensor:
        for layer in layers:
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                x = F.batch_norm(x, None if batch_stats else layer.running_mean,
                                 None if batch_stats else layer.running_var, layer.weight, layer.bias,
                                 training=batch_stats, eps=layer.eps)
            else:
                x = layer(x)
        return x

    def forward(self, images: Tensor, context: Tensor | None = None, bn: BNMode = "eval") -> Tensor:
        """Raw outputs ``(n, out)`` of padded ``[-1, 1]`` images; ``context`` ``(n,)`` is the scaled
        intensity (thickness only); ``bn="batch"``: BatchNorm on this batch's statistics."""
        if bn not in ("eval", "batch"):
            raise ValueError(f"bn must be 'eval' or 'batch', got {bn!r}")
        if (context is None) != (CONTEXT[self.name] == 0):
            raise ValueError(f"the {self.name} predictor takes {CONTEXT[self.name]} context column(s)")
        h = self._run(self.cnn, images, bn == "batch").mean(dim=(-2, -1))
        if context is not None:
            h = torch.cat([h, context.to(h.dtype).reshape(-1, 1)], dim=1)
        return self._run(self.fc, h, bn == "batch")


def load_predictor(path: str | Path, name: str) -> Predictor:
    """A predictor from its safetensors file, keys and shapes checked strictly (frozen, eval)."""
    path = Path(path)
    try:
        state = load_file(path)
    except (OSError, SafetensorError) as e:
        raise DataError(f"{path}: cannot read the {name} predictor's safetensors ({e})") from e
    model = Predictor(name)
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or extra or wrong:
        raise DataError(f"{path}: not the {name} predictor's weights (missing {missing}, "
                        f"unexpected {extra}, wrong shape {wrong})")
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


__all__ = ["OUTPUTS", "CONTEXT", "BATCH", "BNMode", "Predictor", "load_predictor"]
