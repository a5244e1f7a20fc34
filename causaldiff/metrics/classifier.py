"""Effectiveness: does the counterfactual show the intervened value? (Monteiro et al. 2023)

Measured by a classifier trained independently of the model under test (never the guidance
classifier): ``effectiveness = mean(argmax classifier(x_cf) == target)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..errors import DataError
from ..training import seeded_module
from ._checks import check_images, check_labels, resolve_device
from ._fit import MetricTrainConfig, fit_metric_model, with_seed


class ClassifierConfig(MetricTrainConfig):
    """Hyperparameters of the effectiveness classifier and its training."""

    hidden: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)


class ImageClassifier(nn.Module):
    """A small CNN on single-channel images of any size; returns logits ``(n, num_classes)``.

    Inputs are in ``value_range`` (the project's ``[-1, 1]`` by default).
    """

    def __init__(self, num_classes: int, hidden: int = 32,
                 value_range: tuple[float, float] = (-1.0, 1.0)):
        super().__init__()
        h = hidden
        self.net = nn.Sequential(
            nn.Conv2d(1, h, 3, padding=1), nn.ReLU(), nn.Conv2d(h, h, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(h, 2 * h, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * h, 2 * h, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(2 * h, num_classes))
        self.num_classes, self.value_range = num_classes, value_range
        #: mean training cross-entropy of each ``log_every`` window (filled by
        #: :func:`train_classifier`)
        self.history: list[float] = []

    def forward(self, images: Tensor) -> Tensor:
        lo, hi = self.value_range
        return self.net(2 * (images - lo) / (hi - lo) - 1)

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 1024) -> Tensor:
        """Predicted classes ``(n,)`` (long), in batches."""
        return predict(self, images, batch_size)


def predict(classifier: Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 1024) -> Tensor:
    """``argmax`` of ``classifier(images)`` in batches, on the classifier's device if it has one."""
    check_images(images, "predict")
    params = list(classifier.parameters()) if isinstance(classifier, nn.Module) else []
    dev = params[0].device if params else images.device
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            logits = classifier(images[start:start + batch_size].to(dev))
            if logits.dim() != 2 or logits.shape[0] != min(batch_size, images.shape[0] - start):
                raise DataError(f"classifier must return logits (n, classes), got {tuple(logits.shape)}")
            out.append(logits.argmax(1))
    return torch.cat(out)


def train_classifier(images: Tensor, labels: Tensor, *, num_classes: int | None = None,
                     config: ClassifierConfig | None = None,
                     device: torch.device | str | None = None, seed: int | None = None,
                     value_range: tuple[float, float] = (-1.0, 1.0)) -> ImageClassifier:
    """Train an :class:`ImageClassifier` with cross-entropy on ``(images, labels)``; ``seed``
    (initial weights and batches) replaces ``config.seed`` when given."""
    config = with_seed(config or ClassifierConfig(), seed)
    check_images(images, "train_classifier")
    k = check_labels(labels, images.shape[0], num_classes, "train_classifier")
    dev = resolve_device(device, images)
    x, y = images.to(dev, torch.float32), labels.to(dev).long()
    model = seeded_module(lambda: ImageClassifier(k, config.hidden, value_range), config.seed, dev)
    model.history = fit_metric_model(model, lambda net, idx, _: F.cross_entropy(net(x[idx]), y[idx]),
                                     len(x), config, desc="effectiveness classifier")
    return model.eval()


def effectiveness(classifier: Callable[[Tensor], Tensor], images: Tensor, targets: Tensor,
                  batch_size: int = 1024) -> Tensor:
    """Accuracy (float64 scalar) of ``classifier`` on ``images`` w.r.t. the intervened ``targets``."""
    check_labels(targets, images.shape[0] if images.dim() else -1, None, "effectiveness targets")
    pred = predict(classifier, images, batch_size)
    return (pred == targets.to(pred.device)).double().mean()
