"""Latent image nodes: a tiny random ``AutoencoderKL`` and class-conditional
``DiTTransformer2DModel`` made and saved with ``save_pretrained`` inside the test (nothing is
ever downloaded), as parts and as a pipeline folder; and a DiT trained here in a VAE's latents."""

from __future__ import annotations

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.mechanisms import DiffusionMechanism
from causaldiff.mechanisms.diffusion.latent import Autoencoder
from causaldiff.testing import check_counterfactual_laws
from causaldiff.testing.report import error

diffusers = pytest.importorskip("diffusers", reason="needs the optional extra causaldiff[diffusers]")

N, SIZE, CLASSES = 12, 8, 3
SAMPLER = {"num_inference_steps": 4, "inversion_fixed_point_iters": 3}  # a random DiT inverts within 5e-3


def tiny_vae():
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(in_channels=1, out_channels=1, latent_channels=2, block_out_channels=(8, 8),
                                   down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2,
                                   layers_per_block=1, norm_num_groups=4, sample_size=SIZE)


def tiny_dit():
    torch.manual_seed(1)
    return diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=2, out_channels=4,
                                           num_layers=1, sample_size=SIZE // 2, patch_size=2,
                                           num_embeds_ada_norm=CLASSES)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("dit_pipeline")
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=100, beta_schedule="linear")
    diffusers.DiTPipeline(transformer=tiny_dit(), vae=tiny_vae(), scheduler=scheduler).save_pretrained(str(path))
    return path


def data(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (N,), generator=gen)
    return {"y": y, "img": 0.3 * torch.randn(N, 1, SIZE, SIZE, generator=gen) + (y.float() - 1).reshape(-1, 1, 1, 1)}


def scm_of(mechanism) -> cd.SCM:
    return cd.SCM(nx.DiGraph([("y", "img")]), {"y": dist.Categorical(torch.ones(CLASSES) / CLASSES), "img": mechanism})


@pytest.fixture(scope="module")
def fitted(pipeline_dir):
    return scm_of(DiffusionMechanism.from_diffusers(pipeline_dir, sampler=SAMPLER)).fit(data())


def other(y: torch.Tensor) -> torch.Tensor:
    return (y + 1) % CLASSES


def test_a_pipeline_folder_gives_a_frozen_latent_class_conditional_node(fitted, pipeline_dir):
    m = fitted.mechanisms["img"]
    assert m.config.guidance == "conditional" and m.autoencoder is not None and m.denoiser.classes == CLASSES
    assert m.state.event_shape == (1, SIZE, SIZE) and m.state.latent_shape == (2, SIZE // 2, SIZE // 2)
    saved = diffusers.DiTTransformer2DModel.from_pretrained(str(pipeline_dir / "transformer")).state_dict()
    assert all(torch.equal(saved[k], v) for k, v in m.unet.state_dict().items())  # frozen: fit trains nothing


def test_a_counterfactual_changes_the_class_and_keeps_the_abducted_latent(fitted):
    rows = data(1)
    u = fitted.abduct(rows)
    assert u["img"].shape == (N, 2, SIZE // 2, SIZE // 2)
    cf = fitted.counterfactual(rows, do={"y": other(rows["y"])})
    assert torch.equal(cf["y"], other(rows["y"]))
    assert torch.equal(cf["img"], fitted.predict(u, do={"y": other(rows["y"])})["img"])
    assert error(cf["img"], rows["img"]) > 0


def test_every_class_of_the_dit_can_be_intervened_on(pipeline_dir):
    rows = {"y": torch.zeros(N, dtype=torch.long), "img": data()["img"]}  # one class seen at fit
    scm = scm_of(DiffusionMechanism.from_diffusers(pipeline_dir, sampler=SAMPLER)).fit(rows)
    assert torch.equal(scm.counterfactual(rows, do={"y": CLASSES - 1})["y"], torch.full((N,), CLASSES - 1))


def test_the_parts_given_one_by_one_are_the_pipeline(fitted, pipeline_dir):
    m = DiffusionMechanism.from_diffusers(pipeline_dir / "transformer", pipeline_dir / "scheduler",
                                          vae=pipeline_dir / "vae", sampler=SAMPLER)
    rows = data(1)
    cf = scm_of(m).fit(data()).counterfactual(rows, do={"y": other(rows["y"])})
    assert torch.equal(cf["img"], fitted.counterfactual(rows, do={"y": other(rows["y"])})["img"])


def test_anchored_and_classifier_free_guidance_act_on_the_dit(fitted):
    rows, base = data(1), fitted.mechanisms["img"]
    new = other(rows["y"])
    plain = fitted.counterfactual(rows, do={"y": new})["img"]
    null = fitted.counterfactual(rows, do={"y": rows["y"]})["img"]
    anchored = fitted.with_mechanisms({"img": base.with_inference(anchor_scale=3.0)})
    assert error(anchored.counterfactual(rows, do={"y": new})["img"], plain) > 1e-3
    assert error(anchored.counterfactual(rows, do={"y": rows["y"]})["img"], null) < 1e-5  # unchanged rows
    cfg = fitted.with_mechanisms({"img": base.with_inference(cfg_scale=2.0)})
    assert error(cfg.counterfactual(rows, do={"y": new})["img"], plain) > 1e-3


def test_the_null_class_is_the_last_label(fitted):
    d = fitted.mechanisms["img"].denoiser
    cond = torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert d.labels(cond, 3, cond.device).tolist() == [1, 2, CLASSES]
    assert d.labels(None, 2, cond.device).tolist() == [CLASSES, CLASSES]


def test_the_latent_round_trip_is_the_autoencoders_reconstruction(fitted):
    rows, m = data(1), fitted.mechanisms["img"]
    ae = m.autoencoder
    assert torch.equal(ae.encode(rows["img"]), ae.encode(rows["img"]))  # the mean: no draw
    back = fitted.predict(fitted.abduct(rows))["img"]
    assert error(back, ae.decode(ae.encode(rows["img"]))) < 1e-2
    assert m.given({"y": rows["y"]}, N).tolerance_floor(rows["img"]) == pytest.approx(
        error(ae.decode(ae.encode(rows["img"])), rows["img"]))


def test_save_load_and_to(fitted, tmp_path):
    rows = data(1)
    cf = fitted.counterfactual(rows, do={"y": other(rows["y"])})
    fitted.save(tmp_path / "run")
    again = cd.load(tmp_path / "run")
    m = again.mechanisms["img"]
    assert type(m).__name__ == "PretrainedDiffusionMechanism" and m.autoencoder is not None
    assert torch.equal(again.counterfactual(rows, do={"y": other(rows["y"])})["img"], cf["img"])
    assert again.to("cpu") is again
    assert {p.device.type for p in m.autoencoder.parameters()} == {"cpu"}


def test_the_law_checker_floors_the_node_at_its_reconstruction(fitted):
    rows = {k: v[:4] for k, v in data(1).items()}
    report = check_counterfactual_laws(fitted, rows)
    floor = fitted.mechanisms["img"].autoencoder.floor(rows["img"])
    assert floor > 1e-2 and any("'img'" in n and f"{floor:.3g}" in n for n in report.notes)
    composition = [m for m in report.measurements if m.law == "composition" and m.node == "img"]
    assert composition and all(m.tolerance == pytest.approx(floor + 1e-2) for m in composition)


def test_refusals_name_the_problem(pipeline_dir):
    m = DiffusionMechanism.from_diffusers(pipeline_dir, sampler=SAMPLER)
    with pytest.raises(cd.DataError, match="autoencoder takes images"):
        scm_of(m).fit({"y": torch.zeros(4, dtype=torch.long), "img": torch.zeros(4, 2, SIZE, SIZE)})
    g = nx.DiGraph([("y", "img")])
    with pytest.raises(cd.DataError, match="one categorical parent"):
        cd.SCM(g, {"y": dist.Normal(0.0, 1.0), "img": m}).fit({"y": torch.randn(N), "img": data()["img"]})
    with pytest.raises(cd.DataError, match="0..2"):
        scm_of(m).fit({"y": torch.full((N,), CLASSES), "img": data()["img"]})
    assert m.state is None
    with pytest.raises(ValueError, match="guidance"):
        DiffusionMechanism.from_diffusers(pipeline_dir, guidance="anticausal")


def test_a_dit_trained_here_in_the_latents_saves_and_loads(pipeline_dir, tmp_path):
    m = DiffusionMechanism(autoencoder=pipeline_dir / "vae", cond_dropout=0.1, anchor_scale=2.0, sampler=SAMPLER,
                           net=cd.DiTConfig(patch_size=2, hidden=16, depth=1, num_heads=2),
                           train={"steps": 5, "batch_size": 8})
    scm = scm_of(m).fit(data())
    assert m.state.latent_shape == (2, SIZE // 2, SIZE // 2) and m.denoiser.parents is not None
    rows = data(1)
    cf = scm.counterfactual(rows, do={"y": other(rows["y"])})
    scm.save(tmp_path / "run")
    again = cd.load(tmp_path / "run")
    assert torch.equal(again.counterfactual(rows, do={"y": other(rows["y"])})["img"], cf["img"])
    assert isinstance(again.mechanisms["img"].autoencoder, Autoencoder)
