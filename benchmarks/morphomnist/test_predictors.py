"""The released predictors: strict loading, BatchNorm modes that never mutate, and the README's
floors on the 10k published test images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmarks.morphomnist import effectiveness, legacy_morpho, published
from benchmarks.morphomnist.predictors import OUTPUTS, Predictor, load_predictor
from benchmarks.morphomnist.scaling import benchmark_images
from causaldiff.datasets.mnist import DataError

pytestmark = pytest.mark.skipif(
    published.data_dir() is None,
    reason=f"needs ../shared/data/{published.FOLDER} (or ${published.ENV_VAR}; looked in "
           f"{', '.join(map(str, published.candidate_dirs()))})")

#: README.md of the published data: (batch-mode, eval-mode) floors, as printed
README_FLOORS = {"digit_acc": (0.9894, 0.9905, 4), "intensity_mae": (1.514, 1.543, 3),
                 "thickness_mae": (0.0778, 0.1220, 4)}


@pytest.fixture(scope="module")
def released() -> effectiveness.ReleasedPredictors:
    return effectiveness.ReleasedPredictors.load()


def _file(name: str):
    return published.require_dir() / "predictors" / f"{name}.safetensors"


def test_floors_on_the_published_test_images(released):
    floors = effectiveness.floors(released)
    print("\nfloors:", floors)
    for metric, (batch, evalmode, digits) in README_FLOORS.items():
        assert round(floors["batch"][metric], digits) == batch, metric
        assert round(floors["eval"][metric], digits) == evalmode, metric


def test_the_csv_intensity_context_reproduces_the_thickness_floor(released):
    """The measured intensity as context gives 0.1225 in eval mode, not the README's 0.1220."""
    t, i = published.targets("test")
    images = published.t10k_images()
    measured = np.array([legacy_morpho.intensity(im) for im in images], np.float32)
    x = benchmark_images(images)
    err = effectiveness.errors(released, x, t, i, published.labels("test"), "eval", context=measured)
    assert round(float(err["thickness"].mean()), 4) == 0.1225


def test_scoring_never_mutates_the_predictors(released):
    before = {name: {k: v.clone() for k, v in getattr(released, name).state_dict().items()}
              for name in OUTPUTS}
    x = benchmark_images(published.t10k_images()[:300])
    ctx = torch.zeros(300)
    batch, evalmode = (released.predict(x, ctx, bn) for bn in ("batch", "eval"))
    assert not torch.equal(batch["thickness"], evalmode["thickness"])
    for name in OUTPUTS:
        model = getattr(released, name)
        assert not model.training
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[name][k]), f"{name}.{k} changed"


def test_batch_mode_normalises_each_batch_of_256_on_its_own(released):
    x = benchmark_images(published.t10k_images()[:300])
    ctx = torch.zeros(300)
    whole = released.predict(x, ctx, "batch")
    tail = released.predict(x[256:], ctx[256:], "batch")
    torch.testing.assert_close(whole["intensity"][256:], tail["intensity"], rtol=0, atol=1e-9)
    evalmode = released.predict(x, ctx, "eval")
    torch.testing.assert_close(evalmode["intensity"][256:],
                               released.predict(x[256:], ctx[256:], "eval")["intensity"])


def test_loading_is_strict_and_names_the_file(tmp_path):
    state = load_file(_file("thickness"))
    assert set(state) == set(Predictor("thickness").state_dict())
    with pytest.raises(DataError, match="intensity.safetensors.*not the thickness predictor"):
        load_predictor(_file("intensity"), "thickness")  # fc.0 is 64 wide, not 65
    del state["fc.3.bias"]
    save_file(state, tmp_path / "cut.safetensors")
    with pytest.raises(DataError, match=r"cut.safetensors.*missing \['fc.3.bias'\]"):
        load_predictor(tmp_path / "cut.safetensors", "thickness")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="junk.safetensors"):
        load_predictor(tmp_path / "junk.safetensors", "digit")


def test_inputs_are_checked(released):
    with pytest.raises(ValueError, match=r"\(n, 1, 32, 32\)"):
        released.predict(torch.zeros(2, 1, 28, 28), torch.zeros(2), "eval")
    with pytest.raises(ValueError, match="bn must be"):
        released.predict(torch.zeros(2, 1, 32, 32), torch.zeros(2), "train")
    with pytest.raises(ValueError, match="digit targets"):
        effectiveness.errors(released, torch.zeros(2, 1, 32, 32), np.ones(2), np.ones(2) * 100,
                             np.ones(3, int), "eval")
