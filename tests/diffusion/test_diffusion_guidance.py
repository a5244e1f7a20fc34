"""Guidance against exact answers: a two-component Gaussian mixture has a closed-form
unconditional eps and a closed-form p(y | x_t), so classifier guidance at s = 1 must turn the
unconditional sampler into the class-conditional one."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from causaldiff.diffusion.ddim import DDIMSampler
from causaldiff.diffusion.guidance import (AnchoredGuidance, AntiCausalGuidance, ClassifierFreeGuidance, ParentHead,
                                           PredictorLikelihood, categorical_log_prob,
                                           gaussian_log_prob, guidance_gradient, heads_log_prob)
from causaldiff.diffusion.schedule import NoiseSchedule
from diffusion_oracles import GaussianOracle, MixtureOracle

D64 = torch.float64
MEANS = torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=D64)
SIGMA = 0.6
WEIGHTS = torch.tensor([0.7, 0.3], dtype=D64)


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule(kind="linear", num_train_timesteps=1000)


def _mixture(schedule):
    mix = MixtureOracle(schedule, MEANS, SIGMA, WEIGHTS)
    ll = lambda x, t, y: categorical_log_prob(mix.logits(x, t), y)  # noqa: E731
    return mix, ll


def test_guided_eps_at_scale_one_is_the_class_conditional_eps(schedule):
    mix, ll = _mixture(schedule)
    guided = AntiCausalGuidance(mix, ll, schedule, scale=1.0)
    g = torch.Generator().manual_seed(0)
    x = 2 * torch.randn(256, 2, dtype=D64, generator=g)
    t = torch.randint(0, 1000, (256,), generator=g)
    y = torch.randint(0, 2, (256,), generator=g)
    with torch.no_grad():  # the gradient must still be taken
        got = guided(x, t, y)
    want = torch.stack([GaussianOracle(schedule, MEANS[k], SIGMA)(x, t) for k in (0, 1)])[y, torch.arange(256)]
    assert torch.allclose(got, want, rtol=0, atol=1e-10)


def test_guided_sampling_yields_the_class_conditional_distribution(schedule):
    """K = 250 deterministic DDIM, half the rows guided to each class, s = 1.

    Guided eps is exactly the conditional Gaussian eps, so the DDIM map per class is affine;
    its exact bias (computed from two points) at K = 250 is under a quarter of the tolerances
    (variance ~2% low, mean off by < 0.01), which are 4 standard errors for n = 1000 per class.
    Component shares: the Bayes classifier of the mixture (priors 0.7/0.3) labels a draw of
    N(m_k, sigma^2 I) as k with a closed-form probability; the observed share must be within 4
    binomial standard errors of it, and unguided sampling must be far from it for class 1.
    """
    mix, ll = _mixture(schedule)
    s = DDIMSampler(schedule, num_inference_steps=250)
    guided = AntiCausalGuidance(mix, ll, schedule, scale=1.0)
    n = 1000
    tol_mean, tol_var = 4 * SIGMA / math.sqrt(n), 4 * SIGMA ** 2 * math.sqrt(2 / (n - 1))
    for k in (0, 1):
        ends = s.generate(guided, torch.stack([torch.zeros(2, dtype=D64), torch.ones(2, dtype=D64)]),
                          torch.tensor([k, k])).sample
        A, b = ends[1] - ends[0], ends[0]
        assert ((A ** 2 - SIGMA ** 2).abs() < tol_var / 4).all() and ((b - MEANS[k]).abs() < tol_mean / 4).all()

    y = torch.cat([torch.zeros(n), torch.ones(n)]).long()
    z = torch.randn(2 * n, 2, dtype=D64, generator=torch.Generator().manual_seed(1))
    x = s.generate(guided, z, y).sample
    w = (MEANS[1] - MEANS[0]) / SIGMA ** 2
    c = -(MEANS[1].square().sum() - MEANS[0].square().sum()) / (2 * SIGMA ** 2) + math.log(0.3 / 0.7)
    label = (x @ w + c > 0).long()
    normal = torch.distributions.Normal(0.0, 1.0)
    for k in (0, 1):
        xk = x[y == k]
        assert ((xk.mean(0) - MEANS[k]).abs() < tol_mean).all()
        assert ((xk.var(0) - SIGMA ** 2).abs() < tol_var).all()
        margin = (w @ MEANS[k] + c) / (w.norm() * SIGMA)
        p = normal.cdf(margin if k == 1 else -margin).item()
        share = (label[y == k] == k).double().mean().item()
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3
    # without guidance, rows "aimed" at class 1 follow the mixture: mostly class 0
    free = s.generate(mix, z[y == 1]).sample
    assert (free @ w + c > 0).double().mean().item() < 0.5


def test_gradient_is_taken_under_no_grad_and_inference_mode_without_touching_parameters():
    lin = nn.Linear(3, 2).double()
    ll = lambda x, t, y: gaussian_log_prob(lin(x), torch.zeros_like(lin(x)), y)  # noqa: E731
    x = torch.randn(5, 3, dtype=D64)
    y = torch.randn(5, 2, dtype=D64)
    want = ((y - lin(x)) @ lin.weight).detach()  # grad of -0.5 ||y - Wx - b||^2
    for ctx in (torch.no_grad, torch.inference_mode, torch.enable_grad):
        with ctx():
            xin = x.clone()
            g = guidance_gradient(ll, xin, torch.zeros(5, dtype=torch.long), y)
        assert torch.allclose(g, want) and not xin.requires_grad
    assert lin.weight.grad is None


def test_log_likelihood_heads():
    out = torch.randn(6, 3 + 4, dtype=D64)
    y_cat, y_cont = torch.tensor([0, 2, 1, 1, 0, 2]), torch.randn(6, 2, dtype=D64)
    heads = [ParentHead("a", "categorical", 3, scale=2.0), ParentHead("b", "continuous", 2, scale=0.5)]
    got = heads_log_prob(heads, out, [y_cat, y_cont])
    lp_a = torch.distributions.Categorical(logits=out[:, :3]).log_prob(y_cat)
    lp_b = torch.distributions.Normal(out[:, 3:5], torch.exp(0.5 * out[:, 5:7])).log_prob(y_cont).sum(1)
    assert torch.allclose(got, 2.0 * lp_a + 0.5 * lp_b)
    assert torch.allclose(heads_log_prob(heads, out, [y_cat, y_cont], scaled=False), lp_a + lp_b)
    with pytest.raises(ValueError, match="features"):
        heads_log_prob(heads, out[:, :5], [y_cat, y_cont])
    # a predictor with these heads is one callable: one forward, one backward per guidance step
    like = PredictorLikelihood(lambda x, t: out + 0 * x.sum(), heads)
    assert torch.allclose(like(torch.zeros(6, 1, dtype=D64), None, [y_cat, y_cont]), got)


def test_classifier_free_guidance_combines_in_one_batched_forward():
    calls = []

    def eps(x, t, c):
        calls.append(x.shape[0])
        return x * c.sum(1, keepdim=True) + 1.0

    x, t, c = torch.randn(4, 2), torch.zeros(4, dtype=torch.long), torch.ones(4, 3)
    assert torch.equal(ClassifierFreeGuidance(eps, 0.0)(x, t, c), eps(x, t, c))
    calls.clear()
    got = ClassifierFreeGuidance(eps, 2.0)(x, t, c)
    assert calls == [8]  # conditional and null halves in one call
    assert torch.allclose(got, 3.0 * (3 * x + 1) - 2.0 * torch.ones_like(x))


class _ConditionalGaussian:
    """Exact eps of ``x_0 ~ N(c, SIGMA^2 I)`` given the conditioning vector ``c`` (its mean)."""

    def __init__(self, schedule):
        self.schedule = schedule

    def __call__(self, x, t, c):
        return GaussianOracle(self.schedule, c, SIGMA)(x, t)


def test_anchored_guidance_is_one_forward_of_the_rows_it_needs():
    calls = []

    def eps(x, t, c):
        calls.append(x.shape[0])
        return x * c.sum(1, keepdim=True) + torch.sin(c[:, :1])

    x, t = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    pa, pa_cf = torch.randn(4, 3), torch.randn(4, 3)
    pa_cf[:2] = pa[:2]  # rows 0 and 1: a null intervention
    got = AnchoredGuidance(eps, 3.0)(x, t, (pa, pa_cf))
    assert calls == [6]  # the 4 rows under pa, the 2 changed ones under pa*
    assert torch.equal(got[:2], eps(x, t, pa)[:2])  # exactly the factual prediction, whatever w
    assert torch.allclose(got, eps(x, t, pa) + 3.0 * (eps(x, t, pa_cf) - eps(x, t, pa)))
    calls.clear()
    assert torch.allclose(AnchoredGuidance(eps, 1.0)(x, t, (pa, pa_cf)), eps(x, t, pa_cf))
    assert calls == [4, 4]  # w = 1: the plain conditional denoiser under pa* (then the test's own call)
    calls.clear()
    assert torch.equal(AnchoredGuidance(eps, 3.0)(x, t, (pa, pa)), eps(x, t, pa))  # null: one pass of n
    assert calls == [4, 4]


def test_anchored_counterfactual_of_a_gaussian_moves_the_mean_and_composes(schedule):
    """Inverting under ``pa`` then generating under ``pa*`` at ``w = 1`` carries a Gaussian's draw
    ``x`` along its probability-flow ODE, affine in the mean: ``x_T = sqrt(ab_T) mu + s_T (x - mu)``
    with ``s_T = sqrt(ab_T sigma^2 + 1 - ab_T) / sigma``, so the counterfactual is
    ``x - mu + mu* + sqrt(ab_T) (mu - mu*) / s_T`` up to DDIM's O(1/K) error; the null
    intervention returns ``x`` to the fixed-point inversion's tolerance."""
    sampler = DDIMSampler(schedule, num_inference_steps=200, inversion_fixed_point_iters=6)
    net = _ConditionalGaussian(schedule)
    g = torch.Generator().manual_seed(0)
    mu, mu_cf = torch.randn(64, 2, dtype=D64, generator=g), torch.randn(64, 2, dtype=D64, generator=g)
    x = mu + SIGMA * torch.randn(64, 2, dtype=D64, generator=g)
    u = sampler.invert(net, x, mu).sample
    same = sampler.generate(AnchoredGuidance(net, 5.0), u, (mu, mu)).sample
    assert (same - x).abs().max() < 1e-9
    moved = sampler.generate(AnchoredGuidance(net, 1.0), u, (mu, mu_cf)).sample
    ab_T = sampler.alphas_cumprod[-1]
    s_T = math.sqrt(ab_T * SIGMA ** 2 + 1.0 - ab_T) / SIGMA
    exact = x - mu + mu_cf + math.sqrt(ab_T) * (mu - mu_cf) / s_T
    assert (moved - exact).abs().max() < 5e-4  # 2.1e-4 at K = 200 (4.2e-5 at K = 1000)
