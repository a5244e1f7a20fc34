"""Beta schedules: float64 tables, end points, the cosine closed form."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from causaldiff.diffusion.schedule import NoiseSchedule, ScheduleConfig, cosine_betas, linear_betas


def test_linear_schedule_end_points_and_cumprod():
    s = NoiseSchedule(kind="linear", num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    assert s.betas.dtype == torch.float64 and s.alphas_cumprod.dtype == torch.float64
    assert s.betas[0].item() == pytest.approx(1e-4, abs=0) and s.betas[-1].item() == pytest.approx(0.02, abs=0)
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(1 - linear_betas(1000, 1e-4, 0.02), 0), rtol=0, atol=0)
    # DDPM's well-known terminal value alpha_bar_{T-1} ~ 4.0e-5
    assert 3.9e-5 < s.alphas_cumprod[-1].item() < 4.1e-5


def test_cosine_schedule_matches_closed_form_where_unclipped():
    T, s_off = 1000, 0.008
    betas = cosine_betas(T, s_off, 0.999)
    assert betas.dtype == torch.float64 and betas.max() <= 0.999
    ab = torch.cumprod(1 - betas, 0)
    f = lambda t: math.cos((t / T + s_off) / (1 + s_off) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 100, 500, 900, 990):
        assert ab[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-12)
    assert torch.all(ab[1:] < ab[:-1])


def test_q_sample_and_alpha_bar_broadcast_in_caller_dtype():
    s = NoiseSchedule(kind="cosine", num_train_timesteps=50)
    x = torch.randn(4, 3, 2, 2)
    t = torch.tensor([0, 10, 20, 49])
    ab = s.alpha_bar(t, like=x)
    assert ab.shape == (4, 1, 1, 1) and ab.dtype == torch.float32
    noise = torch.randn_like(x)
    xt = s.q_sample(x, t, noise)
    ref = s.alphas_cumprod[t].float().sqrt().view(-1, 1, 1, 1) * x + (1 - s.alphas_cumprod[t].float()).sqrt().view(-1, 1, 1, 1) * noise
    assert torch.allclose(xt, ref)


def test_schedule_config_is_frozen_and_validated():
    c = ScheduleConfig()
    with pytest.raises(ValidationError):
        c.kind = "linear"
    with pytest.raises(ValidationError):
        ScheduleConfig(kind="linear", beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValidationError):
        ScheduleConfig(kind="quadratic")
    with pytest.raises(ValidationError):
        ScheduleConfig(bogus=1)
