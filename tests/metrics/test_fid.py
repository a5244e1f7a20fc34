"""FID through torchmetrics: the closed form with a small custom feature extractor; the Inception
path from a local weights file (a random one here: nothing is downloaded)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import causaldiff as cd
from causaldiff.metrics import FID_WEIGHTS_ENV, fid, fid_if_configured
from causaldiff.metrics.fid import weights_path

pytest.importorskip("torchmetrics", reason="needs the optional extra causaldiff[fid]")


class Pixels(nn.Module):
    """Features = the pixels of a 1 x 2 x 2 image (4 features), so FID has a closed form."""

    def forward(self, x):
        return x.flatten(1).double()


def closed_form(a: torch.Tensor, b: torch.Tensor) -> float:
    """Heusel et al. 2017, eq. 6, in float64 with unbiased covariances."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    root = torch.linalg.eigvals(s_a @ s_b).real.clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * root)


def images(n: int, seed: int, scale: float = 0.3, shift: float = 0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, 1, 2, 2, generator=gen) + shift).clamp(-1, 1)


def test_fid_equals_the_closed_form():
    real, fake = images(500, 0), images(400, 1, scale=0.2, shift=0.25)
    got = fid(real, fake, feature=Pixels(), batch_size=128)
    want = closed_form((real.flatten(1).double() + 1) / 2, (fake.flatten(1).double() + 1) / 2)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-8) and got > 0.01


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_the_shift():
    real = images(300, 2)
    assert abs(fid(real, real, feature=Pixels())) < 1e-6
    near, far = (fid(real, images(300, 3, shift=s), feature=Pixels()) for s in (0.1, 0.4))
    assert 0 < near < far


def test_no_weights_no_download(monkeypatch, tmp_path):
    monkeypatch.delenv(FID_WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=f"{FID_WEIGHTS_ENV}.*nothing is downloaded"):
        fid(images(4, 0), images(4, 1))
    monkeypatch.setenv(FID_WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="no Inception weights file"):
        fid(images(4, 0), images(4, 1))


def test_fid_if_configured_is_none_without_weights(monkeypatch):
    monkeypatch.delenv(FID_WEIGHTS_ENV, raising=False)
    assert fid_if_configured(images(4, 0), images(4, 1)) is None


def test_bad_images_are_refused():
    with pytest.raises(cd.DataError, match="real must be floating images"):
        fid(torch.zeros(4, 4), images(4, 0), feature=Pixels())
    with pytest.raises(cd.DataError, match="differ in shape"):
        fid(images(4, 0), torch.zeros(4, 1, 3, 3), feature=Pixels())


def test_without_torchmetrics_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)
    with pytest.raises(ImportError, match=r"causaldiff\[fid\]"):
        fid(images(4, 0), images(4, 1), feature=Pixels())


@pytest.fixture
def random_inception_weights(tmp_path, monkeypatch):
    """A local weights file of a randomly initialised torch-fidelity InceptionV3 (the real weights are
    not here); building it is the only place the download function is replaced, by one returning {}."""
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3",
                                   reason="the Inception path needs torch-fidelity (causaldiff[fid])")
    cls = fidelity.FeatureExtractorInceptionV3
    with monkeypatch.context() as m:
        m.setattr(fidelity, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(cls, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        net = cls("inception-v3-compat", ["2048"])
    path = tmp_path / "inception.pth"
    torch.save(net.state_dict(), path)

    def no_download(*a, **k):
        raise AssertionError("FID tried to download weights")

    monkeypatch.setattr(fidelity, "load_state_dict_from_url", no_download)
    return path


def test_inception_from_a_local_file(random_inception_weights, monkeypatch):
    real, fake = images(6, 0), images(6, 1, shift=0.5)
    real, fake = (torch.nn.functional.interpolate(x, size=16) for x in (real, fake))
    monkeypatch.setenv(FID_WEIGHTS_ENV, str(random_inception_weights))
    value = fid_if_configured(real, fake)  # one Inception run (about 10 s on a CPU core)
    assert value is not None and value > 0 and value == value
    assert weights_path(random_inception_weights) == weights_path() == random_inception_weights
