"""The procedural shapes SCM: rendering geometry, exact abduction, true counterfactuals."""

from __future__ import annotations

import math

import pytest
import torch

from causaldiff.datasets.base import Draw
from causaldiff.datasets.shapes import FACTORS, NOISES, PARENTS, ShapesConfig, ShapesSCM
from causaldiff.errors import DataError, InterventionError
from causaldiff.interventions import Shift
from causaldiff.mechanisms.pyro import PyroMechanism
from causaldiff.registry import DATASETS


@pytest.fixture(scope="module")
def scm() -> ShapesSCM:
    return ShapesSCM()


@pytest.fixture(scope="module")
def batch(scm) -> Draw:
    return scm.sample(256, torch.Generator().manual_seed(1))


def _parents(draw: Draw) -> dict:
    return {k: draw.values[k] for k in PARENTS}


def _factors(draw: Draw) -> dict:
    return {k: draw.exogenous[k] for k in FACTORS}


def _one(shape: int, size: float, intensity: float = 1.0, x: float = 0.0, y: float = 0.0,
         rot: float = 0.0) -> tuple[dict, dict]:
    return ({"shape": torch.tensor([shape]), "size": torch.tensor([size]),
             "intensity": torch.tensor([intensity])},
            {"pos_x": torch.tensor([x]), "pos_y": torch.tensor([y]), "rotation": torch.tensor([rot])})


def test_sample_shapes_ranges_and_seed(scm, batch):
    image = batch.values["image"]
    assert image.shape == (256, 1, 16, 16) and image.dtype == torch.float32
    assert batch.values["shape"].dtype == torch.long
    assert set(batch.values) == {*PARENTS, "image"} and set(batch.exogenous) == {*FACTORS, *NOISES}
    assert image.min() >= -1 and image.max() <= 1
    assert set(batch.values["shape"].tolist()) == {0, 1, 2}
    c = scm.config
    assert batch.exogenous["pos_x"].abs().max() <= c.position_range
    assert batch.exogenous["rotation"].abs().max() <= c.rotation_range
    again = scm.sample(256, torch.Generator().manual_seed(1))
    assert torch.equal(again.values["image"], image)
    assert len(batch[3]) == 1 and len(batch[:10]) == 10


def test_registered_and_load_equals_the_spec_path_of_before():
    """``load`` gives the rows ``causaldiff.build.load_rows`` gave before (``truth.sample(n, gen)``
    with a generator seeded ``seed + (0 train | 1 test)``), here with the old draws written out."""
    ds = DATASETS.get("shapes")(ShapesConfig.model_validate({"resolution": 16}))
    for split, offset in (("train", 0), ("test", 1)):
        g = torch.Generator().manual_seed(5 + offset)
        shape = torch.multinomial(torch.tensor(ds.config.shape_probs, dtype=torch.float64), 40,
                                  replacement=True, generator=g)
        u_size, u_intensity = torch.randn(40, generator=g), torch.randn(40, generator=g)
        pos = [(2 * torch.rand(40, generator=g) - 1) * r for r in (0.25, 0.25, math.pi / 12)]
        size = torch.tensor(ds.config.size_means)[shape] + 0.05 * u_size
        intensity = 0.70 - 1.0 * (size - 0.45) + 0.05 * u_intensity
        parents = {"shape": shape, "size": size, "intensity": intensity}
        factors = dict(zip(FACTORS, pos))
        draw = ds.load(split, 40, seed=5)
        for k, v in {**parents, "image": ds.render(parents, factors)}.items():
            assert draw.values[k].dtype == v.dtype and torch.equal(draw.values[k], v), (split, k)
        for k, v in {**factors, "u_size": u_size, "u_intensity": u_intensity}.items():
            assert torch.equal(draw.exogenous[k], v), (split, k)


def test_parent_chain_statistics(scm):
    """size | shape has the configured means; intensity's slope on size is recovered (n=4000)."""
    b = scm.sample(4000, torch.Generator().manual_seed(2))
    c = scm.config
    for k in range(3):
        sel = b.values["size"][b.values["shape"] == k]
        tol = 5 * c.size_noise / math.sqrt(sel.numel())  # 5 standard errors
        assert abs(sel.mean().item() - c.size_means[k]) < tol
    s, i = b.values["size"].double(), b.values["intensity"].double()
    slope = ((s - s.mean()) * (i - i.mean())).sum() / ((s - s.mean()) ** 2).sum()
    se = c.intensity_noise / math.sqrt(((s - s.mean()) ** 2).sum().item())
    assert abs(slope.item() - c.intensity_slope) < 5 * se


def test_abduction_is_exact(scm, batch):
    u = scm.abduct_parents(_parents(batch))
    for k in u:
        torch.testing.assert_close(u[k], batch.exogenous[k], rtol=0, atol=1e-5)


def test_pyro_mechanisms_abduct_the_same_noise(scm, batch):
    mechs = scm.true_mechanisms()
    size_mech = PyroMechanism(mechs["size"])
    u = size_mech.abduct(batch.values["size"], {"shape": batch.values["shape"]})
    torch.testing.assert_close(u, batch.exogenous["u_size"], rtol=0, atol=1e-5)
    inten = PyroMechanism(mechs["intensity"])
    u = inten.abduct(batch.values["intensity"], {"size": batch.values["size"]})
    torch.testing.assert_close(u, batch.exogenous["u_intensity"], rtol=0, atol=1e-5)
    edges = {("shape", "size"), ("size", "intensity"), ("shape", "image"), ("size", "image"),
             ("intensity", "image")}
    g = scm.graph()
    assert set(g.edges) == edges and not any(g.nodes[v] for v in g)
    bound = scm.scm_graph()
    assert set(bound.edges) == edges and "mechanism" not in bound.nodes["image"]
    assert all(bound.nodes[k]["mechanism"] is not None for k in PARENTS)
    assert scm.scm_graph(image_mechanism="m").nodes["image"]["mechanism"] == "m"


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
    rows = torch.cat([scm.render(_parents(batch[i]), _factors(batch[i])) for i in range(5)])
    torch.testing.assert_close(rows, batch.values["image"][:5], rtol=0, atol=1e-6)


def test_counterfactual_null_and_reversibility(scm, batch):
    null = scm.counterfactual(batch, {"shape": batch.values["shape"]})
    assert all(torch.equal(null[k], batch.values[k]) for k in batch.values)
    cf = scm.counterfactual(batch, {"shape": 2})
    back = scm.counterfactual(Draw(cf, batch.exogenous), {"shape": batch.values["shape"]})
    assert all(torch.equal(back[k], batch.values[k]) for k in batch.values)
    # the old route, abducting the parent noise from the values, agrees to float32 precision
    abducted = Draw(batch.values, {**_factors(batch), **scm.abduct_parents(_parents(batch))})
    again = scm.counterfactual(abducted, {"shape": 2})
    for k in cf:
        torch.testing.assert_close(again[k], cf[k], rtol=0, atol=1e-5)


def test_counterfactual_follows_the_chain(scm, batch):
    c = scm.config
    cf = scm.counterfactual(batch, {"shape": 1})
    assert (cf["shape"] == 1).all() and set(cf) == set(batch.values)
    # same noise, new parent values downstream
    assert torch.equal(cf["size"], c.size_means[1] + c.size_noise * batch.exogenous["u_size"])
    # factual rows already of shape 1 keep their image
    same = batch.values["shape"] == 1
    image = batch.values["image"]
    assert torch.equal(cf["image"][same], image[same])
    assert (cf["image"][~same] - image[~same]).abs().amax(dim=(1, 2, 3)).min() > 0.1


def test_non_descendants_unchanged_and_soft_interventions(scm, batch):
    cf = scm.counterfactual(batch, {"intensity": 0.9})
    assert torch.equal(cf["shape"], batch.values["shape"])
    assert torch.equal(cf["size"], batch.values["size"])
    assert torch.allclose(cf["intensity"], torch.tensor(0.9))
    shifted = scm.counterfactual(batch, {"size": Shift(0.05)})
    c = scm.config
    torch.testing.assert_close(shifted["size"], batch.values["size"] + 0.05)
    torch.testing.assert_close(
        shifted["intensity"],
        batch.values["intensity"] + c.intensity_slope * 0.05, rtol=0, atol=1e-5)
    per_row = torch.linspace(0.3, 0.6, len(batch))
    several = scm.counterfactual(batch, {"shape": 0, "size": per_row})
    assert torch.equal(several["size"], per_row)
    as_float = scm.counterfactual(batch, {"shape": 2.0})
    assert as_float["shape"].dtype == torch.long
    doubled = scm.counterfactual(batch, {"intensity": lambda x: x * 0.9})
    assert torch.equal(doubled["intensity"], batch.values["intensity"] * 0.9)


def test_errors_name_the_problem(scm, batch):
    with pytest.raises(InterventionError, match="image"):
        scm.counterfactual(batch, {"image": batch.values["image"]})
    with pytest.raises(InterventionError, match="'shape'"):
        scm.counterfactual(batch, {"shape": 3})
    with pytest.raises(InterventionError, match="integer"):
        scm.counterfactual(batch, {"shape": 1.5})
    with pytest.raises(InterventionError, match="'size'.*renderable"):
        scm.counterfactual(batch, {"size": 2.0})
    with pytest.raises(InterventionError, match="non-empty"):
        scm.counterfactual(batch, {})
    with pytest.raises(DataError, match="exogenous.*u_size"):
        scm.counterfactual(Draw(batch.values, _factors(batch)), {"shape": 0})
    with pytest.raises(DataError, match="missing parent"):
        scm.render({"shape": batch.values["shape"]}, _factors(batch))
    with pytest.raises(DataError, match="factors"):
        scm.render(_parents(batch), {})
    with pytest.raises(ValueError):
        ShapesConfig(rotation_range=1.0)


def test_resolution_28_and_device(device):
    scm = ShapesSCM(resolution=28)
    b = scm.sample(4, torch.Generator().manual_seed(0), device=device)
    image = b.values["image"]
    assert image.shape == (4, 1, 28, 28) and image.device.type == torch.device(device).type
    cf = scm.counterfactual(b, {"shape": 0})
    assert cf["image"].device == image.device


def test_parent_mechanisms_in_a_causaldiff_scm(scm, batch):
    """cd.SCM over the parents reproduces the true parent counterfactuals (exact abduction)."""
    import causaldiff as cd

    g = scm.scm_graph()
    g.remove_node("image")
    model = cd.SCM(g)
    for do in ({"shape": 2}, {"size": 0.6}, {"shape": 0, "intensity": 0.5}):
        cf = model.counterfactual(_parents(batch), do=do, seed=0)
        truth = scm.counterfactual(batch, do)
        assert torch.equal(cf["shape"], truth["shape"])
        for k in ("size", "intensity"):
            torch.testing.assert_close(cf[k], truth[k], rtol=0, atol=1e-5)
    samples = model.sample(2000, seed=0)
    for k in range(3):
        sel = samples["size"][samples["shape"] == k]
        assert abs(sel.mean().item() - scm.config.size_means[k]) < 5 * 0.05 / sel.numel() ** 0.5


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_orientation_error_recovers_the_rotation_of_each_shape(scm, shape):
    """Renders that differ only in rotation: the error is |rotation difference| to within 0.7 degrees
    on average (16x16 pixels: 2 at the 90th percentile), zero for the same render, and blind to a
    turn by the shape's symmetry."""
    from causaldiff.datasets.shapes import SYMMETRY, orientation_error

    draw = scm.sample(200, torch.Generator().manual_seed(shape))
    do = {"shape": shape}
    true = scm.counterfactual(draw, do)["image"]

    def rendered(rotation):
        return scm.counterfactual(Draw(draw.values, {**draw.exogenous, "rotation": rotation}), do)["image"]
    shapes = torch.full((200,), shape)
    rot = draw.exogenous["rotation"]
    miss = (orientation_error(rendered(torch.zeros(200)), true, shapes) - rot.abs().rad2deg()).abs()
    assert miss.mean() < 0.7 and miss.quantile(0.9) < 2
    assert orientation_error(true, true, shapes).max() == 0
    turned = rendered(rot + 2 * math.pi / SYMMETRY[shape])
    assert orientation_error(turned, true, shapes).max() < 1e-3
