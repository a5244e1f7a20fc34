"""The procedural shapes SCM: rendering geometry, exact abduction, true counterfactuals."""

from __future__ import annotations

import math

import pytest
import torch

from causaldiff.datasets.images import FACTORS, PARENTS, ShapesBatch, ShapesConfig, ShapesSCM
from causaldiff.errors import DataError, InterventionError
from causaldiff.interventions import Shift
from causaldiff.mechanisms.pyro import PyroMechanism


@pytest.fixture(scope="module")
def scm() -> ShapesSCM:
    return ShapesSCM()


@pytest.fixture(scope="module")
def batch(scm) -> ShapesBatch:
    return scm.sample(256, torch.Generator().manual_seed(1))


def _one(shape: int, size: float, intensity: float = 1.0, x: float = 0.0, y: float = 0.0,
         rot: float = 0.0) -> tuple[dict, dict]:
    return ({"shape": torch.tensor([shape]), "size": torch.tensor([size]),
             "intensity": torch.tensor([intensity])},
            {"pos_x": torch.tensor([x]), "pos_y": torch.tensor([y]), "rotation": torch.tensor([rot])})


def test_sample_shapes_ranges_and_seed(scm, batch):
    assert batch.image.shape == (256, 1, 16, 16) and batch.image.dtype == torch.float32
    assert batch.parents["shape"].dtype == torch.long
    assert set(batch.parents) == set(PARENTS) and set(batch.factors) == set(FACTORS)
    assert batch.image.min() >= -1 and batch.image.max() <= 1
    assert set(batch.parents["shape"].tolist()) == {0, 1, 2}
    c = scm.config
    assert batch.factors["pos_x"].abs().max() <= c.position_range
    assert batch.factors["rotation"].abs().max() <= c.rotation_range
    again = scm.sample(256, torch.Generator().manual_seed(1))
    assert torch.equal(again.image, batch.image)
    assert set(batch.values()) == {"shape", "size", "intensity", "image"}
    assert len(batch[3]) == 1 and len(batch[:10]) == 10


def test_parent_chain_statistics(scm):
    """size | shape has the configured means; intensity's slope on size is recovered (n=4000)."""
    b = scm.sample(4000, torch.Generator().manual_seed(2))
    c = scm.config
    for k in range(3):
        sel = b.parents["size"][b.parents["shape"] == k]
        tol = 5 * c.size_noise / math.sqrt(sel.numel())  # 5 standard errors
        assert abs(sel.mean().item() - c.size_means[k]) < tol
    s, i = b.parents["size"].double(), b.parents["intensity"].double()
    slope = ((s - s.mean()) * (i - i.mean())).sum() / ((s - s.mean()) ** 2).sum()
    se = c.intensity_noise / math.sqrt(((s - s.mean()) ** 2).sum().item())
    assert abs(slope.item() - c.intensity_slope) < 5 * se


def test_abduction_is_exact(scm, batch):
    u = scm.abduct_parents(batch.parents)
    for k in u:
        torch.testing.assert_close(u[k], batch.noise[k], rtol=0, atol=1e-5)


def test_pyro_mechanisms_abduct_the_same_noise(scm, batch):
    mechs = scm.mechanisms()
    size_mech = PyroMechanism(mechs["size"])
    u = size_mech.abduct(batch.parents["size"], {"shape": batch.parents["shape"]})
    torch.testing.assert_close(u, batch.noise["u_size"], rtol=0, atol=1e-5)
    inten = PyroMechanism(mechs["intensity"])
    u = inten.abduct(batch.parents["intensity"], {"size": batch.parents["size"]})
    torch.testing.assert_close(u, batch.noise["u_intensity"], rtol=0, atol=1e-5)
    g = scm.graph()
    assert set(g.edges) == {("shape", "size"), ("size", "intensity"), ("shape", "image"),
                            ("size", "image"), ("intensity", "image")}
    assert "mechanism" not in g.nodes["image"]


def test_render_square_area_known_answer(scm):
    """Axis-aligned square, half side 0.8 * 0.5 = 0.4 = 3.2 pixels, centred on a pixel corner:
    6x6 full pixels, 24 edge pixels at coverage 0.2, 4 corner pixels at 0.5 - 0.3 = 0.2."""
    parents, factors = _one(0, 0.5)
    img = scm.render(parents, factors)
    alpha = (img + 1) / 2
    assert alpha.sum().item() == pytest.approx(36 + 24 * 0.2 + 4 * 0.2, abs=1e-4)
    assert (alpha == 1).sum().item() == 36


def test_render_symmetries(scm):
    pitch = 2 / scm.config.resolution
    for shape in range(3):
        p, f = _one(shape, 0.45, 0.8)
        base = scm.render(p, f)
        # translation by one pixel shifts the image by one pixel
        p2, f2 = _one(shape, 0.45, 0.8, x=pitch)
        torch.testing.assert_close(scm.render(p2, f2), torch.roll(base, 1, dims=-1),
                                   rtol=0, atol=1e-5)
        # rotation by the shape's symmetry period leaves it unchanged
        period = 2 * math.pi / 3 if shape == 1 else math.pi / 2
        p3, f3 = _one(shape, 0.45, 0.8, rot=period)
        torch.testing.assert_close(scm.render(p3, f3), base, rtol=0, atol=1e-4)
    # a small rotation is visible (the factor is identifiable)
    p, f = _one(0, 0.5, rot=0.3)
    assert (scm.render(p, f) - scm.render(*_one(0, 0.5))).abs().max() > 0.3


def test_render_is_batch_invariant(scm, batch):
    rows = torch.cat([scm.render(batch[i].parents, batch[i].factors) for i in range(5)])
    torch.testing.assert_close(rows, batch.image[:5], rtol=0, atol=1e-6)


def test_true_counterfactual_null_and_reversibility(scm, batch):
    null = scm.true_counterfactual(batch, {"shape": batch.parents["shape"]})
    torch.testing.assert_close(null.image, batch.image, rtol=0, atol=1e-5)
    cf = scm.true_counterfactual(batch, {"shape": 2})
    back = scm.true_counterfactual(cf, {"shape": batch.parents["shape"]})
    torch.testing.assert_close(back.image, batch.image, rtol=0, atol=1e-4)
    torch.testing.assert_close(back.parents["size"], batch.parents["size"], rtol=0, atol=1e-5)


def test_true_counterfactual_follows_the_chain(scm, batch):
    c = scm.config
    cf = scm.true_counterfactual(batch, {"shape": 1})
    assert (cf.parents["shape"] == 1).all()
    # same noise, new parent values downstream
    torch.testing.assert_close(cf.parents["size"], c.size_means[1] + c.size_noise
                               * batch.noise["u_size"], rtol=0, atol=1e-5)
    assert cf.factors is not batch.factors
    for k in FACTORS:
        assert torch.equal(cf.factors[k], batch.factors[k])
    # factual rows already of shape 1 keep their image
    same = batch.parents["shape"] == 1
    torch.testing.assert_close(cf.image[same], batch.image[same], rtol=0, atol=1e-5)
    assert (cf.image[~same] - batch.image[~same]).abs().amax(dim=(1, 2, 3)).min() > 0.1


def test_non_descendants_unchanged_and_soft_interventions(scm, batch):
    cf = scm.true_counterfactual(batch, {"intensity": 0.9})
    assert torch.equal(cf.parents["shape"], batch.parents["shape"])
    assert torch.equal(cf.parents["size"], batch.parents["size"])
    assert torch.allclose(cf.parents["intensity"], torch.tensor(0.9))
    shifted = scm.true_counterfactual(batch, {"size": Shift(0.05)})
    c = scm.config
    torch.testing.assert_close(shifted.parents["size"], batch.parents["size"] + 0.05)
    torch.testing.assert_close(
        shifted.parents["intensity"],
        batch.parents["intensity"] + c.intensity_slope * 0.05, rtol=0, atol=1e-5)
    per_row = torch.linspace(0.3, 0.6, len(batch))
    several = scm.true_counterfactual(batch, {"shape": 0, "size": per_row})
    assert torch.equal(several.parents["size"], per_row)
    as_float = scm.true_counterfactual(batch, {"shape": 2.0})
    assert as_float.parents["shape"].dtype == torch.long


def test_errors_name_the_problem(scm, batch):
    with pytest.raises(InterventionError, match="image"):
        scm.true_counterfactual(batch, {"image": batch.image})
    with pytest.raises(InterventionError, match="'shape'"):
        scm.true_counterfactual(batch, {"shape": 3})
    with pytest.raises(InterventionError, match="integers"):
        scm.true_counterfactual(batch, {"shape": 1.5})
    with pytest.raises(InterventionError, match="'size'.*renderable"):
        scm.true_counterfactual(batch, {"size": 2.0})
    with pytest.raises(DataError, match="missing parent"):
        scm.render({"shape": batch.parents["shape"]}, batch.factors)
    with pytest.raises(DataError, match="factors"):
        scm.render(batch.parents, {})
    with pytest.raises(ValueError):
        ShapesConfig(rotation_range=1.0)


def test_resolution_28_and_device(device):
    scm = ShapesSCM(resolution=28)
    b = scm.sample(4, torch.Generator().manual_seed(0), device=device)
    assert b.image.shape == (4, 1, 28, 28) and b.image.device.type == torch.device(device).type
    cf = scm.true_counterfactual(b, {"shape": 0})
    assert cf.image.device == b.image.device


def test_parent_mechanisms_in_a_causaldiff_scm(scm, batch):
    """cd.SCM over the parents reproduces the true parent counterfactuals (exact abduction)."""
    import causaldiff as cd

    g = scm.graph()
    g.remove_node("image")
    model = cd.SCM(g)
    for do in ({"shape": 2}, {"size": 0.6}, {"shape": 0, "intensity": 0.5}):
        cf = model.counterfactual(batch.parents, do=do, seed=0)
        truth = scm.true_counterfactual(batch, do)
        assert torch.equal(cf["shape"], truth.parents["shape"])
        for k in ("size", "intensity"):
            torch.testing.assert_close(cf[k], truth.parents[k], rtol=0, atol=1e-5)
    samples = model.sample(2000, seed=0)
    for k in range(3):
        sel = samples["size"][samples["shape"] == k]
        assert abs(sel.mean().item() - scm.config.size_means[k]) < 5 * 0.05 / sel.numel() ** 0.5
