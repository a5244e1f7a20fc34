"""Morpho-MNIST: the renderer's operations, measurement, exact counterfactuals, cache, contract."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import morphology

from benchmarks.morphomnist import legacy_morpho as morpho
from benchmarks.morphomnist import published
from benchmarks.morphomnist.dataset import (RENDER_VERSION, MorphoMNIST, MorphoMNISTConfig,
                                            intensity_equation, measure, thickness_equation,
                                            to_unit_images)
from benchmarks.morphomnist.protocol import law_statistics, within_published
from causaldiff.datasets.mnist import ENV_VAR, locate
from causaldiff.errors import DataError, InterventionError
from causaldiff.spec import load_spec
from causaldiff.testing.dataset_contract import GroundTruthContract

needs_mnist = pytest.mark.skipif(locate("train") is None or locate("test") is None,
                                 reason=f"MNIST files not found: set {ENV_VAR} to their folder")
needs_published = pytest.mark.skipif(
    published.data_dir() is None or locate("train") is None or locate("test") is None,
    reason=f"needs the published files (${published.ENV_VAR}) and MNIST (${ENV_VAR})")
CACHE = tempfile.mkdtemp(prefix="causaldiff-morphomnist-test-")


def bar(height: int, value: int = 200, size: int = 28) -> np.ndarray:
    """A horizontal bar of ``height`` rows and 16 columns, uint8."""
    img = np.zeros((size, size), dtype=np.uint8)
    top = (size - height) // 2
    img[top:top + height, 6:22] = value
    return img


# ------------------------------------------------------------------------------ image operations
def test_intensity_is_the_median_of_the_bright_pixels():
    img = bar(4, 200)
    img[12, 6] = 250  # one brighter pixel does not move the median
    img[0, 0] = 90  # below 50% of the range: not counted
    assert morpho.intensity(img) == 200.0


def test_thickness_of_bars_grows_with_their_height():
    got = [morpho.thickness(bar(h)) for h in (2, 4, 6)]
    assert got[0] < got[1] < got[2]
    assert abs(got[1] - 4) < 0.6 and abs(got[2] - 6) < 0.8, got


def test_a_blank_image_has_no_thickness_and_no_warning():
    assert np.isnan(morpho.hires_thickness(np.zeros((8, 8), bool), 4))


def test_footprints_are_the_supports_of_the_reduced_disks():
    for r in range(3):
        assert morpho.footprint(r).shape == (2 * r + 1, 2 * r + 1) and morpho.footprint(r).all()
    big = morpho.footprint(12)
    assert big.shape == (25, 25) and not big[0, 0] and big[12].all()


@pytest.mark.parametrize("target", [0.8, 1.9, 2.05, 3.5, 6.5])
def test_set_thickness_equals_skimage_dilation_and_erosion(target):
    img = bar(5)
    img[:, 26:] = 255  # a stroke at the border: the reflected border matters
    binary = morpho.binarise_hires(img, morpho.RENDER_SCALE)
    fp = morpho.footprint(int(16 * abs(target - 2.0) / 2))
    want = (morphology.dilation if target >= 2.0 else morphology.erosion)(binary, fp)
    assert np.array_equal(morpho.set_thickness(binary, 2.0, target), want)


def test_set_intensity_hits_the_target():
    img = morpho.set_intensity(bar(4, 100), 180.0)
    assert img.dtype == np.uint8 and morpho.intensity(img) == 180.0
    assert np.array_equal(morpho.set_intensity(np.zeros((4, 4), np.uint8), 100.0), np.zeros((4, 4)))


def test_measure_accepts_unit_and_uint8_images():
    u8 = np.stack([bar(4, 200), bar(6, 120)])
    unit = torch.from_numpy(u8).float().div(127.5).sub(1).unsqueeze(1)
    a, b = measure(u8), measure(unit)
    assert torch.equal(a["thickness"], b["thickness"]) and a["intensity"].tolist() == [200.0, 120.0]


# ------------------------------------------------------------------------------ the law
def test_the_law_matches_the_published_statistics():
    stats = law_statistics(60_000, seed=0)
    assert all(within_published(stats).values()), stats


def test_config_is_validated():
    with pytest.raises(DataError, match="size"):
        MorphoMNIST(size=30)
    with pytest.raises(ValueError, match="subset"):
        MorphoMNISTConfig(subset=0)
    with pytest.raises(ValueError, match="subset"):
        MorphoMNISTConfig(subset=60_001)
    big = MorphoMNISTConfig(subset=12_000)  # more training rows than the test split holds
    assert MorphoMNIST.rows_available(big, "train") == 12_000 and MorphoMNIST.rows_available(big, "test") == 10_000


# ------------------------------------------------------------------------------ with MNIST
def small(**kw) -> MorphoMNIST:
    return MorphoMNIST(**{"subset": 24, "workers": 1, "cache_dir": CACHE, **kw})


@needs_mnist
def test_renders_are_deterministic_and_hit_their_targets():
    ds = small()
    a, b = (ds.sample(8, torch.Generator().manual_seed(5)) for _ in range(2))
    assert a.values["image"].numpy().tobytes() == b.values["image"].numpy().tobytes()
    m = measure(a.values["image"])
    assert (m["thickness"] - a.values["thickness"].double()).abs().mean() < 0.3
    assert (m["intensity"] - a.values["intensity"].double()).abs().max() < 3.0
    assert a.values["image"].shape == (8, 1, 32, 32) and (a.values["image"][..., :2, :] == -1).all()


@needs_mnist
def test_true_counterfactuals_of_thickness_and_intensity():
    ds = small()
    draw = ds.sample(4, torch.Generator().manual_seed(1))
    image = draw.values["image"]
    near = ds.counterfactual(draw, {"thickness": measure(image)["thickness"].float()})
    thick = ds.counterfactual(draw, {"thickness": draw.values["thickness"] + 1.5})
    assert (near["image"] - image).pow(2).mean() < 0.1 * (thick["image"] - image).pow(2).mean()
    assert (thick["intensity"] > draw.values["intensity"]).all(), "intensity follows its mechanism"
    assert (measure(thick["image"])["thickness"] > measure(image)["thickness"]).all()
    bright = ds.counterfactual(draw, {"intensity": torch.full((4,), 200.0)})
    assert torch.equal(bright["thickness"], draw.values["thickness"])
    assert (measure(bright["image"])["intensity"] - 200).abs().max() <= 2


@needs_mnist
def test_do_digit_is_refused_with_a_reason():
    ds = small()
    draw = ds.sample(2, torch.Generator().manual_seed(0))
    with pytest.raises(InterventionError, match="digit.*no true counterfactual image"):
        ds.counterfactual(draw, {"digit": 3})
    with pytest.raises(InterventionError, match="thickness"):
        ds.counterfactual(draw, {"thickness": -1.0})


@needs_published
def test_the_test_split_is_the_published_file_with_abducted_noise():
    ds = small(subset=6)
    draw = ds.load("test", 6)
    t, i = published.targets("test")
    assert torch.equal(draw.values["image"], to_unit_images(published.t10k_images()[:6], 32))
    assert torch.equal(draw.values["thickness"], torch.from_numpy(t[:6]))
    assert torch.equal(draw.values["digit"], torch.from_numpy(published.labels("test")[:6]))
    ex = draw.exogenous
    assert torch.equal(thickness_equation(ex["u_thickness"]), draw.values["thickness"])
    again = intensity_equation(draw.values["thickness"], ex["u_intensity"])
    assert (again - draw.values["intensity"]).abs().max() < 1e-3


@needs_published
def test_the_train_split_is_rendered_once_into_the_chunk_cache(tmp_path):
    ds = small(subset=4, cache_dir=str(tmp_path))
    first = ds.load("train", 4)
    files = sorted((tmp_path / f"render-v{RENDER_VERSION}").glob("*.npz"))
    assert [f.name for f in files] == ["train-00000-00004.npz"]
    stamp = files[0].stat().st_mtime_ns
    again = ds.load("train", 4)
    assert files[0].stat().st_mtime_ns == stamp and torch.equal(first.values["image"], again.values["image"])
    t, i = published.targets("train")
    want = morpho.render_rows(published.mnist_digits("train")[:4], t[:4], i[:4])
    assert torch.equal(first.values["image"], to_unit_images(want, 32))


@needs_published
def test_loaded_rows_are_their_own_true_counterfactual():
    ds = small(subset=6)
    draw = ds.load("test", 6)
    cf = ds.counterfactual(draw, {"intensity": draw.values["intensity"]})
    assert torch.equal(cf["image"], draw.values["image"])


def test_true_mechanisms_abduct_the_noise():
    mech = small().true_mechanisms()
    t = torch.tensor([1.5, 2.5, 4.0])
    law = mech["intensity"](t)
    i = torch.tensor([100.0, 160.0, 240.0])
    assert torch.isfinite(law.log_prob(i)).all() and torch.isfinite(mech["thickness"].log_prob(t)).all()


def test_quick_asks_a_data_set_for_no_more_rows_than_it_holds():
    """Morpho-MNIST's quick setting renders the first 32 images of each split: a quick spec asks
    for at most those (it asked for 300 before and every quick fit of the spec failed)."""
    spec = load_spec(Path(__file__).resolve().parents[2] / "graphs" / "morphomnist.toml").quick()
    assert spec.dataset.config().subset == 32
    assert (spec.dataset.n_train, spec.dataset.n_test) == (32, 32)


@pytest.mark.skipif(locate("train") is None or locate("test") is None,
                    reason=f"MNIST files not found: set {ENV_VAR} to their folder")
class TestMorphoMNIST(GroundTruthContract):
    dataset_class = MorphoMNIST
    config = MorphoMNISTConfig(subset=16, workers=1, cache_dir=tempfile.mkdtemp(prefix="causaldiff-morphomnist-"))
    n = 4
