"""from_diffusers reads safetensors only, checks a UNet's config on the meta device before building
it, and refuses a schedule whose queries would divide by zero (issue 25)."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest
import torch
from pydantic import ValidationError

from causaldiff.diffusion.schedule import ScheduleConfig
from causaldiff.errors import SerializationError
from causaldiff.limits import MAX_TIMESTEPS
from causaldiff.mechanisms import DiffusionMechanism
from causaldiff.mechanisms.diffusion.diffusers_files import WEIGHTS, check_config

diffusers = pytest.importorskip("diffusers", reason="needs the optional extra causaldiff[diffusers]")


def tiny_unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 8), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("unet")
    tiny_unet().save_pretrained(str(path), safe_serialization=True)
    return path


@pytest.fixture
def copy(saved, tmp_path):
    dst = tmp_path / "unet"
    shutil.copytree(saved, dst)
    return dst


def _edit(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_a_safetensors_folder_loads(saved):
    m = DiffusionMechanism.from_diffusers(saved)
    assert m.unet.config.in_channels == 1


def test_a_folder_with_only_a_pickled_bin_is_refused(tmp_path):
    tiny_unet().save_pretrained(str(tmp_path), safe_serialization=False)
    assert (tmp_path / "diffusion_pytorch_model.bin").exists() and not (tmp_path / WEIGHTS).exists()
    with pytest.raises(SerializationError, match=f"no {WEIGHTS}"):
        DiffusionMechanism.from_diffusers(tmp_path)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_hostile_bin_is_never_unpickled(copy, monkeypatch):
    monkeypatch.chdir(copy)
    os.unlink(copy / WEIGHTS)
    (copy / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(SerializationError, match="only safetensors"):
        DiffusionMechanism.from_diffusers(copy)
    assert not (copy / "pwned").exists()


@pytest.mark.parametrize("changes, words", [
    ({"block_out_channels": [60000, 60000]}, ["parameters", "MAX_PARAMETERS", "[60000, 60000]"]),
    ({"block_out_channels": [70000, 8]}, ["block_out_channels", "65536"]),
    ({"block_out_channels": []}, ["block_out_channels=[]"]),
    ({"block_out_channels": [8, -8]}, ["block_out_channels=[8, -8]"]),
    ({"in_channels": -3}, ["in_channels=-3"]),
    ({"in_channels": 0}, ["in_channels=0"]),
    ({"in_channels": "3"}, ["in_channels='3'"]),
    ({"in_channels": 1.5}, ["in_channels=1.5"]),
    ({"in_channels": True}, ["in_channels=True"]),
    ({"out_channels": -1}, ["out_channels=-1"]),
    ({"sample_size": -8}, ["sample_size=-8"]),
    ({"sample_size": [8, 0]}, ["sample_size=[8, 0]"]),
    ({"layers_per_block": 0}, ["layers_per_block=0"]),
    ({"norm_num_groups": 0}, ["norm_num_groups=0"]),
    ({"_class_name": "UNet2DConditionModel"}, ["_class_name='UNet2DConditionModel'"]),
    ({"_class_name": "AutoencoderKL"}, ["_class_name='AutoencoderKL'"]),
    ({"down_block_types": ["NoSuchBlock2D", "DownBlock2D"]}, ["not a valid UNet2DModel config"]),
    ({"norm_num_groups": 3}, ["not a valid UNet2DModel config"]),  # 8 channels in 3 groups
])
def test_a_bad_config_is_refused_by_name_before_building(copy, changes, words):
    _edit(copy, **changes)
    with pytest.raises(SerializationError) as info:
        DiffusionMechanism.from_diffusers(copy)
    msg = str(info.value)
    assert "config.json" in msg and all(w in msg for w in words), msg


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", "\udcff"])
def test_an_unreadable_config_is_one_serialization_error(copy, text):
    (copy / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(SerializationError, match="config.json"):
        DiffusionMechanism.from_diffusers(copy)


def test_a_huge_config_is_counted_without_allocating():
    config = dict(tiny_unet().config) | {"block_out_channels": [60000, 60000], "norm_num_groups": 4}
    with pytest.raises(SerializationError, match=r"UNet2DModel of [\d,]+ parameters"):
        check_config(config, "here")


@pytest.mark.parametrize("scheduler, field", [
    ({"beta_start": 1e-12}, "beta_start"),
    ({"beta_start": 1e-9, "beta_end": 1e-3}, "beta_start"),
    ({"beta_schedule": "scaled_linear", "beta_start": 1e-15}, "beta_start"),
    ({"trained_betas": [1e-10] + [0.01] * 9}, "trained_betas"),
    ({"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 10 ** 6}, "cosine"),
    ({"num_train_timesteps": 10 ** 8}, "num_train_timesteps"),
    ({"num_train_timesteps": MAX_TIMESTEPS + 1}, "num_train_timesteps"),
])
def test_a_schedule_whose_queries_would_divide_by_zero_or_overflow_is_refused(saved, scheduler, field):
    with pytest.raises(ValidationError, match=field):
        DiffusionMechanism.from_diffusers(saved, scheduler)


@pytest.mark.parametrize("kw", [dict(kind="linear", beta_start=1e-17, beta_end=0.02),
                                dict(kind="linear", beta_start=1e-8, beta_end=0.02, precision="float32"),
                                dict(kind="cosine", cosine_s=0.0, num_train_timesteps=10 ** 6, precision="float32"),
                                dict(kind="trained", num_train_timesteps=2, trained_betas=(1e-20, 0.5))])
def test_a_first_beta_lost_in_the_tables_precision_is_refused(kw):
    with pytest.raises(ValidationError, match="resolution"):
        ScheduleConfig(**kw)


@pytest.mark.parametrize("kw", [dict(kind="linear", beta_start=1e-12, beta_end=0.02),  # float64 resolves it
                                dict(kind="linear", beta_start=1e-6, beta_end=0.02, precision="float32"),
                                dict(kind="cosine", cosine_s=0.0, num_train_timesteps=1000, precision="float32"),
                                dict(kind="scaled_linear", beta_start=0.00085, beta_end=0.012, precision="float32")])
def test_schedules_in_use_are_kept(kw):
    assert ScheduleConfig(**kw).kind == kw["kind"]


class _LooksLikeOne(torch.nn.Module):
    config = {"in_channels": 1}


@pytest.mark.parametrize("make", [lambda: _LooksLikeOne(), lambda: torch.nn.Linear(2, 2), lambda: 5,
                                  lambda: diffusers.UNet1DModel(block_out_channels=(8, 8, 8), norm_num_groups=4)
                                  if hasattr(diffusers, "UNet1DModel") else _LooksLikeOne()])
def test_a_model_of_another_class_is_refused_by_name(make):
    obj = make()
    with pytest.raises(TypeError, match=f"got {type(obj).__name__}"):
        DiffusionMechanism.from_diffusers(obj)
