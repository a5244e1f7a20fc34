"""Bounds checked together before anything is built (issue 25): an MLP's widths and depth, each
within its own bound, are refused when their parameters together exceed MAX_PARAMETERS."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from causaldiff.diffusion.nets import MLPConfig, MLPPredictorConfig
from causaldiff.limits import MAX_DEPTH, MAX_PARAMETERS, MAX_WIDTH, check_hidden_parameters
from causaldiff.mechanisms.neural import AdditiveNoiseConfig


@pytest.mark.parametrize("hidden", [(MAX_WIDTH,) * MAX_DEPTH, (MAX_WIDTH, MAX_WIDTH), (50000,) * 3, (1, MAX_WIDTH, MAX_WIDTH),
                                    (30000,) * 4])
def test_hidden_layers_too_many_parameters_together_are_refused(hidden):
    with pytest.raises(ValidationError, match="MAX_PARAMETERS"):
        AdditiveNoiseConfig(hidden=hidden)


@pytest.mark.parametrize("hidden", [(), (64, 64), (MAX_WIDTH,), (1024,) * MAX_DEPTH, (2048,) * 256, (32768, 32768)])
def test_hidden_layers_within_the_bound_are_kept(hidden):
    assert AdditiveNoiseConfig(hidden=hidden).hidden == hidden


@pytest.mark.parametrize("config", [MLPConfig, MLPPredictorConfig])
@pytest.mark.parametrize("hidden, layers", [(MAX_WIDTH, MAX_DEPTH), (MAX_WIDTH, 2), (40000, 4)])
def test_a_diffusion_mlp_too_wide_and_deep_together_is_refused(config, hidden, layers):
    with pytest.raises(ValidationError, match="hidden x num_layers"):
        config(hidden=hidden, num_layers=layers)


@pytest.mark.parametrize("config", [MLPConfig, MLPPredictorConfig])
@pytest.mark.parametrize("hidden, layers", [(128, 3), (MAX_WIDTH, 1), (2048, MAX_DEPTH)])
def test_a_diffusion_mlp_within_the_bound_is_kept(config, hidden, layers):
    assert config(hidden=hidden, num_layers=layers).num_layers == layers


def test_the_count_is_exact_at_the_bound():
    assert check_hidden_parameters((MAX_PARAMETERS - 1, 1)) == (MAX_PARAMETERS - 1, 1)  # (2**31 - 1) * 1 + 1
    with pytest.raises(ValueError, match="2 hidden layers"):
        check_hidden_parameters((MAX_PARAMETERS, 1))
