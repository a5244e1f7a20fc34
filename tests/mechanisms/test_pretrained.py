"""Pretrained diffusers UNets as image nodes: a tiny randomly initialised ``UNet2DModel`` saved with
``save_pretrained`` to a temporary folder (nothing is ever downloaded)."""

from __future__ import annotations

import sys

import networkx as nx
import pyro.distributions as dist
import pytest
import torch

import causaldiff as cd
from causaldiff.diffusion.schedule import NoiseSchedule
from causaldiff.mechanisms import DiffusionMechanism
from causaldiff.mechanisms.diffusion.pretrained import DiffusersDenoiser, import_schedule

diffusers = pytest.importorskip("diffusers", reason="needs the optional extra causaldiff[diffusers]")

N, SIZE = 24, 8


def tiny_unet(seed: int = 0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(sample_size=SIZE, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 8), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("unet")
    tiny_unet().save_pretrained(str(path), safe_serialization=True)
    diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", num_train_timesteps=100).save_pretrained(str(path))
    return path


def data(seed: int = 0) -> dict[str, torch.Tensor]:
    """y ~ Bernoulli; a brighter image when y = 1."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (N,), generator=gen)
    img = 0.3 * torch.randn(N, 1, SIZE, SIZE, generator=gen) + (y.float() - 0.5).reshape(-1, 1, 1, 1)
    return {"y": y, "img": img}


def scm_of(mechanism) -> cd.SCM:
    g = nx.DiGraph([("y", "img")])
    return cd.SCM(g, {"y": dist.Categorical(torch.tensor([0.5, 0.5])), "img": mechanism})


def pretrained(unet_dir, **kw):
    return DiffusionMechanism.from_diffusers(unet_dir, sampler={"num_inference_steps": 4,
                                                                "inversion_fixed_point_iters": 1},
                                             predictor_train={"steps": 20, "batch_size": 16}, **kw)


@pytest.fixture(scope="module")
def fitted(unet_dir):
    m = pretrained(unet_dir, guidance_scale=2.0)
    before = {k: v.clone() for k, v in m.unet.state_dict().items()}
    scm = scm_of(m).fit(data())
    return scm, before


@pytest.mark.parametrize("beta_schedule,extra", [
    ("linear", {}), ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    ("squaredcos_cap_v2", {}), (None, {"trained_betas": torch.linspace(1e-3, 0.05, 50).tolist()})])
def test_imported_schedule_equals_diffusers_alphas_cumprod(beta_schedule, extra):
    kw = {"beta_schedule": beta_schedule} if beta_schedule else {}
    sched = diffusers.DDPMScheduler(num_train_timesteps=50 if "trained_betas" in extra else 1000, **kw, **extra)
    config, prediction = import_schedule(dict(sched.config))
    ours = NoiseSchedule(config).alphas_cumprod
    assert ours.dtype == torch.float64 and prediction == "epsilon"
    assert torch.allclose(ours, sched.alphas_cumprod.double(), rtol=0, atol=1e-12)


def test_unsupported_scheduler_settings_are_refused():
    with pytest.raises(ValueError, match="beta_schedule 'sigmoid'"):
        import_schedule({"beta_schedule": "sigmoid"})
    with pytest.raises(ValueError, match="rescale_betas_zero_snr"):
        import_schedule({"rescale_betas_zero_snr": True})


class _Fixed(torch.nn.Module):
    """A 'model' whose output is a given tensor (the quantity the conversion is checked on)."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, t, return_dict=False):
        return (self.out,)


@pytest.mark.parametrize("prediction", ["v_prediction", "sample"])
def test_v_and_sample_predictions_are_converted_to_epsilon_exactly(prediction):
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 1, 4, 4, generator=gen, dtype=torch.float64), torch.randn(6, 1, 4, 4, generator=gen, dtype=torch.float64)
    sched = NoiseSchedule(kind="cosine", num_train_timesteps=100)
    t = torch.tensor([0, 10, 30, 50, 80, 99])
    a = sched.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    target = a.sqrt() * eps - (1 - a).sqrt() * x0 if prediction == "v_prediction" else x0
    got = DiffusersDenoiser(_Fixed(target), sched.alphas_cumprod, prediction)(x_t, t)
    assert torch.allclose(got, eps, rtol=0, atol=1e-12)


def test_fit_trains_only_the_predictor(fitted):
    scm, before = fitted
    m = scm.mechanisms["img"]
    after = m.unet.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert m.predictor is not None and not any(p.requires_grad for p in m.unet.parameters())


def test_counterfactuals_run_and_save_load_round_trips(fitted, tmp_path):
    scm, _ = fitted
    rows = {k: v[:6] for k, v in data(1).items()}
    cf = scm.counterfactual(rows, do={"y": 1 - rows["y"]})
    assert cf["img"].shape == (6, 1, SIZE, SIZE) and torch.isfinite(cf["img"]).all()
    assert torch.equal(cf["y"], 1 - rows["y"])
    scm.save(tmp_path / "run")
    again = cd.load(tmp_path / "run")
    assert type(again.mechanisms["img"]).__name__ == "PretrainedDiffusionMechanism"
    assert torch.equal(again.counterfactual(rows, do={"y": 1 - rows["y"]})["img"], cf["img"])


def test_a_pipeline_folder_is_read_with_its_scheduler(unet_dir, tmp_path):
    scheduler = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", num_train_timesteps=100)
    diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=scheduler).save_pretrained(str(tmp_path / "pipe"))
    assert (tmp_path / "pipe" / "model_index.json").is_file()
    from_pipeline = DiffusionMechanism.from_diffusers(tmp_path / "pipe")
    from_parts = DiffusionMechanism.from_diffusers(unet_dir)
    assert torch.equal(from_pipeline.schedule.alphas_cumprod, from_parts.schedule.alphas_cumprod)
    assert all(torch.equal(a, b) for a, b in zip(from_pipeline.unet.state_dict().values(),
                                                 from_parts.unet.state_dict().values()))


def test_unet_exported_with_save_pretrained_reloads(fitted, tmp_path):
    m = fitted[0].mechanisms["img"]
    m.save_pretrained(tmp_path / "export")
    back = DiffusionMechanism.from_diffusers(tmp_path / "export")
    assert all(torch.equal(a, b) for a, b in zip(m.unet.state_dict().values(), back.unet.state_dict().values()))


def test_unet_object_and_unfrozen_fine_tuning(unet_dir):
    unet = tiny_unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    m = DiffusionMechanism.from_diffusers(unet, diffusers.DDIMScheduler(prediction_type="v_prediction"),
                                          frozen=False, train={"steps": 3, "batch_size": 8},
                                          predictor_train={"steps": 3, "batch_size": 8},
                                          sampler={"num_inference_steps": 2})
    assert m.denoiser.prediction_type == "v_prediction"
    scm_of(m).fit(data())
    assert any(not torch.equal(before[k], v) for k, v in m.unet.state_dict().items())


def test_refusals_name_the_problem(unet_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        DiffusionMechanism.from_diffusers("google/ddpm-cifar10-32")
    with pytest.raises(ValueError, match="guidance"):
        DiffusionMechanism.from_diffusers(unet_dir, guidance="conditional")
    m = DiffusionMechanism.from_diffusers(unet_dir)
    bad = {"y": torch.zeros(4, dtype=torch.long), "img": torch.zeros(4, 1, 4, 4)}
    with pytest.raises(cd.DataError, match="takes images"):
        scm_of(m).fit(bad)
    assert m.state is None


def test_without_diffusers_the_error_names_the_extra(unet_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ImportError, match=r"causaldiff\[diffusers\]"):
        DiffusionMechanism.from_diffusers(unet_dir)


def test_the_example_runs(tmp_path, monkeypatch, capsys):
    import runpy
    from pathlib import Path

    monkeypatch.delenv("CAUSALDIFF_EXAMPLE_SMALL", raising=False)  # without a UNet it trains only what it shows
    monkeypatch.delenv("CAUSALDIFF_DIFFUSERS_UNET", raising=False)
    monkeypatch.chdir(tmp_path)
    scope = runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" / "pretrained_diffusers.py"),
                           run_name="__main__")
    assert "identical counterfactuals: True" in capsys.readouterr().out
    assert scope["image"].config.predictor_train.steps == 30 and len(scope["train"]) == 256
    scope["scratch"].cleanup()  # what the interpreter does at exit: nothing is left behind
    assert list(tmp_path.iterdir()) == [] and not scope["workdir"].exists()
