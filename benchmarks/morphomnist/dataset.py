"""Morpho-MNIST thickness-intensity (DeepSCM's synthetic data set) on the benchmark's own images,
with exact truth.

Causal graph and structural equations (Pawlowski et al. 2020; ``BENCHMARKS.md`` section 4)::

    thickness ──> intensity          t = 0.5 + u_t,                       u_t ~ Gamma(10, rate 5)
        │             │              i = 64 + 191 sigmoid(2 (t - 2.5) + 0.5 u_i),  u_i ~ N(0, 1)
        └──> image <──┘ <── digit    image = render(handwriting, t, i)    (:mod:`.legacy_morpho`)

The digit is the MNIST label and the original handwriting (uint8 28x28) is the image's exogenous
style. The splits are the benchmark's: the **test** split is the published file
(``t10k-images-idx3-ubyte.gz``, targets ``t10k-morpho.csv``: :mod:`.published`), the **train**
split the MNIST training digits rendered at ``train-morpho.csv``'s targets with the faithful
renderer (:mod:`.render_split`'s chunk cache; the published training images are not shipped). The
noise of each row is abducted from its csv targets (``u_t = t - 0.5``; ``u_i`` by inverting the
intensity equation), so do(thickness) and do(intensity) have exact true counterfactuals *of the
benchmark's own images*: the noise pushed through the equations under the intervention and the
same handwriting re-rendered (intensity after do(t) follows its true mechanism). do(digit) has no
true image (the generative process does not say how this writer would draw another digit):
:meth:`MorphoMNIST.counterfactual` refuses it by name.

Values: ``thickness``, ``intensity`` float32 ``(n,)`` (the csv's), ``digit`` long ``(n,)``,
``image`` float32 ``(n, 1, 32, 32)`` (``size`` 32: zero-padded as in the benchmark) in ``[-1, 1]``
(``uint8 / 127.5 - 1``). Exogenous: ``handwriting`` uint8 ``(n, 28, 28)``, ``u_thickness``,
``u_intensity`` float32, ``index`` (the split's row).

The class registers as the data set ``morphomnist`` when this module is imported; specs resolve the
name through the entry-point group ``causaldiff.datasets`` (``pyproject.toml``), which imports it. It
needs the ``morphomnist`` extra (scipy, scikit-image) and a source checkout (``benchmarks/`` is not
part of the installed package).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pyro.distributions as dist
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from causaldiff.datasets.base import SPLITS, Draw, GroundTruth, split_seed
from causaldiff.datasets.mnist import ENV_VAR, SIZES, candidate_dirs, locate, read_idx, verify
from causaldiff.errors import DataError, InterventionError
from causaldiff.interventions import as_intervention, intervene
from causaldiff.registry import DATASETS

from benchmarks.morphomnist import legacy_morpho, published
from benchmarks.morphomnist.parallel import RowJob, map_rows
from benchmarks.morphomnist.render_split import load_rendered, render_split

#: the nodes, their edges and the nodes with an exact true counterfactual
EDGES = (("thickness", "intensity"), ("thickness", "image"), ("intensity", "image"), ("digit", "image"))
TRUE_INTERVENTIONS = ("intensity", "thickness")
#: the benchmark's interventions (do(digit) has no true image)
BENCHMARK_INTERVENTIONS = ("digit", "intensity", "thickness")
#: the generative constants (DeepSCM ``create_synth_thickness_intensity_data.py``)
GAMMA_CONCENTRATION, GAMMA_RATE, THICKNESS_OFFSET = 10.0, 5.0, 0.5
INTENSITY_OFFSET, INTENSITY_RANGE, INTENSITY_SLOPE, INTENSITY_CENTRE, INTENSITY_NOISE = \
    64.0, 191.0, 2.0, 2.5, 0.5
#: min-max scaling of the benchmark (counterfactual-benchmark, commit 581dbb4)
ATTRIBUTE_RANGES = {"thickness": (0.87598526, 6.255515), "intensity": (66.601204, 254.90317)}
EXOGENOUS = ("handwriting", "u_thickness", "u_intensity", "index")
#: version of the rendered train split's cache folder (bumped when the renderer changes)
RENDER_VERSION = 2
DEFAULT_CACHE = Path.home() / ".cache" / "causaldiff" / "morphomnist"


class MorphoMNISTConfig(BaseModel):
    """Options of the ``"morphomnist"`` data set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: str | None = Field(None, description="folder of the MNIST IDX files (load_mnist's search path)")
    subset: int | None = Field(None, ge=1, le=SIZES["train"],
                               description="first images of each split only (of the test split's 10k at most)")
    size: int = Field(32, description="28, or 32: zero-padded as in the benchmark")
    workers: int = Field(2, ge=1, le=64, description="rendering processes")
    cache_dir: str | None = Field(None, description="rendered train split's folder "
                                                    "(None: ~/.cache/causaldiff/morphomnist)")


@lru_cache(maxsize=4)
def mnist_uint8(root: str | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The original MNIST ``split`` (checksum-verified): uint8 images ``(N, 28, 28)`` and labels."""
    paths = locate(split, root)
    if paths is None:
        raise DataError(f"MNIST {split} files not found in {[str(d) for d in candidate_dirs(root)]}; "
                        f"set {ENV_VAR} or the data set's root")
    for p in paths:
        verify(p)
    images, labels = (read_idx(p) for p in paths)
    images.flags.writeable = False
    return images, labels


def intensity_mean_logit(t: Tensor) -> Tensor:
    return INTENSITY_SLOPE * (t - INTENSITY_CENTRE)


def thickness_equation(u_t: Tensor) -> Tensor:
    return THICKNESS_OFFSET + u_t


def intensity_equation(t: Tensor, u_i: Tensor) -> Tensor:
    return INTENSITY_OFFSET + INTENSITY_RANGE * torch.sigmoid(intensity_mean_logit(t) + INTENSITY_NOISE * u_i)


def abduct_noise(t: np.ndarray, i: np.ndarray) -> tuple[Tensor, Tensor]:
    """The noise of given float32 targets: ``u_t = t - 0.5`` (exact in float32) and ``u_i`` the
    inverse of :func:`intensity_equation` (in float64, stored as float32)."""
    t64, i64 = np.asarray(t, np.float64), np.asarray(i, np.float64)
    p = (i64 - INTENSITY_OFFSET) / INTENSITY_RANGE
    if not ((p > 0) & (p < 1)).all():
        raise DataError(f"intensity targets must lie in ({INTENSITY_OFFSET:g}, "
                        f"{INTENSITY_OFFSET + INTENSITY_RANGE:g})")
    u_i = (np.log(p / (1 - p)) - INTENSITY_SLOPE * (t64 - INTENSITY_CENTRE)) / INTENSITY_NOISE
    u_t = np.asarray(t, np.float32) - np.float32(THICKNESS_OFFSET)
    return torch.from_numpy(u_t), torch.from_numpy(u_i.astype(np.float32))


def draw_noise(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``u_t ~ Gamma(10, rate 5)`` and ``u_i ~ N(0, 1)``, float32 ``(n,)`` (numpy's PCG64)."""
    rng = np.random.default_rng(seed)
    u_t = rng.gamma(GAMMA_CONCENTRATION, 1.0 / GAMMA_RATE, n)
    u_i = rng.standard_normal(n)
    return torch.from_numpy(u_t).float(), torch.from_numpy(u_i).float()


def to_unit_images(images: np.ndarray | Tensor, size: int) -> Tensor:
    """uint8 ``(n, 28, 28)`` -> float32 ``(n, 1, size, size)`` in ``[-1, 1]``."""
    x = torch.tensor(np.asarray(images)).float().div(127.5).sub(1).unsqueeze(1)  # a copy: read-only ok
    pad = (size - 28) // 2
    return torch.nn.functional.pad(x, (pad, pad, pad, pad), value=-1.0) if pad else x


def to_uint8(images: Tensor | np.ndarray) -> np.ndarray:
    """Images in ``[-1, 1]`` ``(n, 1, H, W)`` (or uint8 ``(n, H, W)``) -> uint8 ``(n, H, W)``, rounded."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images.reshape(len(images), *images.shape[-2:])
    x = torch.as_tensor(images).detach().float().cpu()
    x = x.reshape(x.shape[0], *x.shape[-2:])
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def _measure_chunk(images: np.ndarray) -> tuple[np.ndarray]:
    return (legacy_morpho.measure_images(images),)


def measure(images: Tensor | np.ndarray, workers: int = 1) -> dict[str, Tensor]:
    """Morpho-MNIST's measurement of each image (medial axis at scale 4; median intensity):
    ``{"thickness", "intensity"}`` float64 ``(n,)``. Images in ``[-1, 1]`` or uint8; measured in
    up to ``workers`` processes (about 36 ms an image on one core)."""
    u8 = to_uint8(images)
    if len(u8) == 0:
        return {"thickness": torch.zeros(0, dtype=torch.float64), "intensity": torch.zeros(0, dtype=torch.float64)}
    m = torch.from_numpy(map_rows(_measure_chunk, [u8], workers, "measuring Morpho-MNIST")[0])
    return {"thickness": m[:, 0], "intensity": m[:, 1]}


def _render_chunk(handwriting: np.ndarray, t: np.ndarray, i: np.ndarray) -> tuple[np.ndarray]:
    return (legacy_morpho.render_rows(handwriting, t, i),)


class CounterfactualJob:
    """The exact counterfactual of :meth:`MorphoMNIST.counterfactual`, rendered in worker
    processes (in the background when asked); :meth:`result` returns its rows."""

    def __init__(self, ds: "MorphoMNIST", draw: Draw, t: Tensor, i: Tensor, background: bool):
        self._size, self._device = ds.config.size, draw.values["digit"].device
        self._t, self._i, self._digit = t, i, draw.values["digit"].clone()
        arrays = [draw.exogenous["handwriting"].cpu().numpy(), t.numpy(), i.numpy()]
        self._job = RowJob(_render_chunk, arrays, ds.config.workers,
                           "rendering true counterfactuals", background=background)

    def cancel(self) -> None:
        self._job.cancel()

    def result(self) -> dict[str, Tensor]:
        (images,) = self._job.result()
        d = self._device  # rendered on the CPU, returned where the draw lives
        return {"thickness": self._t.to(d), "intensity": self._i.to(d), "digit": self._digit,
                "image": to_unit_images(images, self._size).to(d)}


@DATASETS.register("morphomnist")
class MorphoMNIST(GroundTruth):
    """Morpho-MNIST thickness -> intensity -> image <- digit, with exact true counterfactuals."""

    Config = MorphoMNISTConfig

    def __init__(self, config: BaseModel | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        if self.config.size not in (28, 32):
            raise DataError(f"morphomnist: size must be 28 or 32, got {self.config.size}")

    @classmethod
    def quick(cls, config: BaseModel) -> BaseModel:
        return config.model_copy(update={"subset": min(config.subset or 32, 32), "workers": 1})

    @classmethod
    def rows_available(cls, config: BaseModel, split: str) -> int | None:
        """The ``subset`` (the first images of each split), or None for the whole split."""
        return None if config.subset is None else min(config.subset, SIZES[split])

    @property
    def intervention_nodes(self) -> tuple[str, ...]:
        """The nodes with exact true counterfactuals (do(digit) has no true image)."""
        return TRUE_INTERVENTIONS

    def graph(self) -> nx.DiGraph:
        return nx.DiGraph(EDGES)

    def handwriting(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The split's original uint8 images ``(N, 28, 28)`` and labels (first ``subset``)."""
        images, labels = mnist_uint8(self.config.root, split)
        n = self.config.subset or len(labels)
        return images[:n], labels[:n]

    def true_mechanisms(self) -> dict[str, Any]:
        """Pyro mechanisms of thickness and intensity (exactly abductable transformed laws)."""
        t_law = dist.TransformedDistribution(
            dist.Gamma(torch.tensor(GAMMA_CONCENTRATION), torch.tensor(GAMMA_RATE)),
            [dist.transforms.AffineTransform(THICKNESS_OFFSET, 1.0)])

        def intensity(thickness: Tensor) -> dist.Distribution:
            base = dist.Normal(intensity_mean_logit(thickness), INTENSITY_NOISE)
            return dist.TransformedDistribution(base, [
                dist.transforms.SigmoidTransform(),
                dist.transforms.AffineTransform(INTENSITY_OFFSET, INTENSITY_RANGE)])

        return {"thickness": t_law, "intensity": intensity}

    # ------------------------------------------------------------------------------ sampling
    def sample(self, n: int, generator: torch.Generator | None = None, split: str = "train") -> Draw:
        """``n`` new rows: handwriting drawn uniformly from ``split`` (with replacement), fresh
        noise, rendered now (not cached)."""
        if not isinstance(n, int) or n < 1:
            raise DataError(f"n must be a positive integer, got {n!r}")
        images, labels = self.handwriting(split)
        index = torch.randint(len(labels), (n,), generator=generator)
        seed = int(torch.randint(2**62, (), generator=generator))
        u_t, u_i = draw_noise(n, seed)
        t = thickness_equation(u_t)
        i = intensity_equation(t, u_i)
        handwriting = images[index.numpy()]
        rendered = legacy_morpho.render_rows(handwriting, t.numpy(), i.numpy())
        return self.as_draw(rendered, labels[index.numpy()], t, i, handwriting, u_t, u_i, index)

    def as_draw(self, images: np.ndarray, labels: np.ndarray, t: Tensor, i: Tensor,
                handwriting: np.ndarray, u_t: Tensor, u_i: Tensor, index: Tensor) -> Draw:
        values = {"thickness": t, "intensity": i, "digit": torch.as_tensor(labels.astype(np.int64)),
                  "image": to_unit_images(images, self.config.size)}
        exogenous = {"handwriting": torch.from_numpy(np.ascontiguousarray(handwriting)),
                     "u_thickness": u_t, "u_intensity": u_i, "index": torch.as_tensor(index).long()}
        return Draw(values, exogenous)

    def load(self, split: str, n: int, seed: int = 0) -> Draw:
        """``n`` rows of ``split``, drawn without replacement with ``split_seed(seed, split)``
        (all rows, in order, when ``n`` is the split's size)."""
        data = self.generated(split)
        size = len(data["labels"])
        if not isinstance(n, int) or not 1 <= n <= size:
            raise DataError(f"n must be an integer in 1..{size} for split {split!r}, got {n!r}"
                            + (f" (the data set keeps the first subset={self.config.subset} images)"
                               if self.config.subset else ""))
        g = torch.Generator().manual_seed(split_seed(seed, split))
        rows = torch.arange(size) if n == size else torch.randperm(size, generator=g)[:n]
        r = rows.numpy()
        u_t, u_i = abduct_noise(data["thickness"][r], data["intensity"][r])
        return self.as_draw(data["images"][r], data["labels"][r], torch.from_numpy(data["thickness"][r]),
                            torch.from_numpy(data["intensity"][r]), data["handwriting"][r], u_t, u_i, rows)

    def generated(self, split: str) -> dict[str, np.ndarray]:
        """The benchmark's split (first ``subset`` rows): ``images`` (test: the published file;
        train: rendered once into the chunk cache), ``labels``, ``handwriting``, and the csv
        ``thickness`` and ``intensity`` targets (float32)."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {split!r}")
        handwriting, labels = self.handwriting(split)
        t, i = published.targets(split)
        n = len(labels)
        if split == "test":
            images = published.t10k_images()[:n]
        else:
            folder = Path(self.config.cache_dir).expanduser() if self.config.cache_dir else DEFAULT_CACHE
            folder = folder / f"render-v{RENDER_VERSION}"
            render_split(folder, split, n, workers=self.config.workers)
            images = load_rendered(folder, split, n)
        return {"images": images, "labels": np.asarray(labels, np.int64), "handwriting": handwriting,
                "thickness": t[:n], "intensity": i[:n]}

    # ------------------------------------------------------------------------------ counterfactuals
    def counterfactual(self, draw: Draw, do: Mapping[str, Any]) -> dict[str, Tensor]:
        """The exact counterfactual of ``draw`` under ``do`` on thickness and/or intensity: the
        draw's noise through the equations under graph surgery, the same handwriting re-rendered
        (in up to ``config.workers`` processes)."""
        return self.counterfactual_job(draw, do).result()

    def counterfactual_job(self, draw: Draw, do: Mapping[str, Any], background: bool = False) -> CounterfactualJob:
        """:meth:`counterfactual` as a job: checked now, rendered in worker processes, in the
        background with ``background=True`` (``.result()`` waits for the rows)."""
        if not isinstance(do, Mapping) or not do:
            raise InterventionError("do must be a non-empty mapping node -> intervention")
        if "digit" in do:
            raise InterventionError(
                "node 'digit': do(digit) has no true counterfactual image in Morpho-MNIST (the "
                "generative process does not say how this handwriting would draw another digit); "
                "evaluate do(digit) with the benchmark's predictors (benchmarks.morphomnist.protocol)")
        unknown = [k for k in do if k not in TRUE_INTERVENTIONS]
        if unknown:
            raise InterventionError(f"cannot intervene on {unknown}; intervenable nodes with truth: "
                                    f"{list(TRUE_INTERVENTIONS)}")
        missing = [k for k in EXOGENOUS if k not in draw.exogenous]
        if missing:
            raise DataError(f"the draw lacks the exogenous variables {missing}; counterfactuals need "
                            "a draw from MorphoMNIST.sample or .load")
        t, i = self._parents(draw, {k: as_intervention(k, v) for k, v in do.items()})
        # The image's exogenous noise is the handwriting alone: re-rendered at the new (t, i).
        return CounterfactualJob(self, draw, t, i, background)

    def counterfactual_parents(self, draw: Draw, do: Mapping[str, Any]) -> dict[str, Tensor]:
        """The true counterfactual thickness, intensity and digit under ``do`` (``digit``
        included: the parents are defined, only the image is not), without rendering."""
        ivs = {k: as_intervention(k, v) for k, v in do.items()}
        unknown = [k for k in ivs if k not in BENCHMARK_INTERVENTIONS]
        if unknown:
            raise InterventionError(f"cannot intervene on {unknown}; parents: {list(BENCHMARK_INTERVENTIONS)}")
        t, i = self._parents(draw, {k: v for k, v in ivs.items() if k != "digit"})
        digit = draw.values["digit"]
        if "digit" in ivs:
            digit = intervene(ivs["digit"], "digit", digit, len(draw), (), digit.dtype, digit.device).long()
        device = draw.values["digit"].device
        return {"thickness": t.to(device), "intensity": i.to(device), "digit": digit.to(device)}

    def _parents(self, draw: Draw, ivs: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        ex, n = draw.exogenous, len(draw)
        t = thickness_equation(ex["u_thickness"])
        if "thickness" in ivs:
            t = intervene(ivs["thickness"], "thickness", t, n, (), t.dtype, t.device)
            _check_range("thickness", t, 0.0, float("inf"))
        i = intensity_equation(t, ex["u_intensity"])
        if "intensity" in ivs:
            i = intervene(ivs["intensity"], "intensity", i, n, (), i.dtype, i.device)
            _check_range("intensity", i, 0.0, 255.0)
        return t.cpu(), i.cpu()


def _check_range(node: str, value: Tensor, low: float, high: float) -> None:
    if not torch.isfinite(value).all() or (value <= low).any() or (value > high).any():
        raise InterventionError(f"node {node!r}: values must be finite and in ({low}, {high}]")


__all__ = ["MorphoMNIST", "MorphoMNISTConfig", "CounterfactualJob", "measure", "to_uint8", "to_unit_images", "EDGES",
           "TRUE_INTERVENTIONS", "BENCHMARK_INTERVENTIONS", "ATTRIBUTE_RANGES", "thickness_equation",
           "intensity_equation", "draw_noise", "abduct_noise", "RENDER_VERSION"]
