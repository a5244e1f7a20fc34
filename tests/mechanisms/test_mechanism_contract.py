"""The mechanism contract (causaldiff.testing.mechanism_contract) for every registered built-in."""

from __future__ import annotations

import pyro.distributions as dist
import torch

from causaldiff.diffusion.nets import ImagePredictorConfig, UNetConfig
from causaldiff.diffusion.schedule import ScheduleConfig
from causaldiff.mechanisms import (AdditiveNoiseMechanism, CategoricalMechanism, ClassifierMechanism, DiffusionConfig,
                                  DiffusionMechanism, NormalMechanism, PyroMechanism)
from causaldiff.testing.mechanism_contract import MechanismContract, uncovered_mechanisms

N = 64


def _mixed_parents(gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {"a": torch.randn(N, generator=gen), "c": torch.randint(0, 3, (N,), generator=gen)}


class TestPyroRoot(MechanismContract):
    mechanism_class = PyroMechanism

    def make_data(self):
        return torch.randn(N, generator=torch.Generator().manual_seed(0)), {}


class TestPyroCallable(MechanismContract):
    """A callable of two parents (continuous and categorical): exact, and code, so not saved."""

    mechanism_class = PyroMechanism
    parent_order = ("a", "c")
    saveable = False

    def make_mechanism(self):
        return PyroMechanism(lambda a, c: dist.Normal(a + c.to(a.dtype), 0.5))

    def make_data(self):
        gen = torch.Generator().manual_seed(1)
        pa = _mixed_parents(gen)
        return pa["a"] + pa["c"].float() + 0.5 * torch.randn(N, generator=gen), pa


class TestPyroCategoricalCallable(MechanismContract):
    """Gumbel-max noise: stochastic abduction that returns the observed class exactly."""

    mechanism_class = PyroMechanism
    parent_order = ("a",)
    saveable = False

    def make_mechanism(self):
        return PyroMechanism(lambda a: dist.Categorical(logits=torch.stack([a, -a, torch.zeros_like(a)], -1)))

    def make_data(self):
        gen = torch.Generator().manual_seed(2)
        a = torch.randn(N, generator=gen)
        return torch.randint(0, 3, (N,), generator=gen), {"a": a}


class TestNormal(MechanismContract):
    mechanism_class = NormalMechanism

    def make_data(self):
        return 1.0 + 2.0 * torch.randn(N, generator=torch.Generator().manual_seed(3)), {}


class TestCategorical(MechanismContract):
    mechanism_class = CategoricalMechanism

    def make_data(self):
        return torch.randint(0, 4, (N,), generator=torch.Generator().manual_seed(4)), {}


class TestClassifier(MechanismContract):
    """Three classes from a continuous and a categorical parent: Gumbel-max abduction."""

    mechanism_class = ClassifierMechanism
    parent_order = ("a", "c")

    def make_data(self):
        gen = torch.Generator().manual_seed(8)
        pa = _mixed_parents(gen)
        return (pa["a"] > 0).long() + (pa["c"] == 2).long(), pa


class TestBinaryClassifier(MechanismContract):
    """Bernoulli: two classes, logistic regression (no hidden layer) on one continuous parent."""

    mechanism_class = ClassifierMechanism
    config = ClassifierMechanism.quick(ClassifierMechanism.Config(hidden=()))
    parent_order = ("a",)

    def make_data(self):
        gen = torch.Generator().manual_seed(9)
        a = torch.randn(N, generator=gen)
        return torch.bernoulli(torch.sigmoid(2 * a), generator=gen).long(), {"a": a}


class TestAdditiveNoise(MechanismContract):
    mechanism_class = AdditiveNoiseMechanism
    parent_order = ("a", "c")

    def make_data(self):
        gen = torch.Generator().manual_seed(5)
        pa = _mixed_parents(gen)
        return torch.sin(pa["a"]) + pa["c"].float() + 0.1 * torch.randn(N, generator=gen), pa


class TestDiffusionTabularConditional(MechanismContract):
    """A conditional MLP denoiser of a 2-vector node with a continuous and a categorical parent."""

    mechanism_class = DiffusionMechanism
    config = DiffusionMechanism.quick(DiffusionConfig(
        schedule=ScheduleConfig(kind="linear", num_train_timesteps=100, beta_end=0.1)))
    parent_order = ("a", "c")

    def make_data(self):
        gen = torch.Generator().manual_seed(6)
        pa = _mixed_parents(gen)
        mean = torch.stack([pa["a"], pa["c"].float()], 1)
        return mean + 0.3 * torch.randn(N, 2, generator=gen), pa


class TestDiffusionImageAntiCausal(MechanismContract):
    """8x8 one-channel images, an unconditional UNet guided by a noisy classifier of the parent."""

    mechanism_class = DiffusionMechanism
    config = DiffusionMechanism.quick(DiffusionConfig(
        guidance="anticausal", schedule=ScheduleConfig(kind="cosine", num_train_timesteps=100),
        net=UNetConfig(base_channels=8, channel_mult=(1, 2), num_groups=4, mid_attention=False),
        predictor=ImagePredictorConfig(base_channels=8, channel_mult=(1, 2), num_groups=4)))
    parent_order = ("y",)

    def make_data(self):
        gen = torch.Generator().manual_seed(7)
        y = torch.randint(0, 2, (N // 2,), generator=gen)
        img = -torch.ones(N // 2, 1, 8, 8)
        img[y == 0, :, :, :4] = 1.0
        img[y == 1, :, :, 4:] = 1.0
        return img + 0.1 * torch.randn(img.shape, generator=gen), {"y": y}


def test_every_registered_mechanism_has_a_contract():
    assert uncovered_mechanisms() == []


def test_quick_settings_of_the_diffusion_mechanism():
    """30 training steps of at most 32 rows, K = 5, given image networks at most 16 channels wide."""
    q = DiffusionMechanism.quick(DiffusionConfig(net=UNetConfig(base_channels=64), predictor=ImagePredictorConfig()))
    assert (q.train.steps, q.train.batch_size, q.predictor_train.steps, q.predictor_train.batch_size) == (30, 32, 30, 32)
    assert q.sampler.num_inference_steps == 5 and q.sampler.inversion_fixed_point_iters == 1
    assert q.net.base_channels == 16 and q.predictor.base_channels == 16
    assert AdditiveNoiseMechanism.quick(AdditiveNoiseMechanism.Config()).steps == 100
