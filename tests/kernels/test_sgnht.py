"""SGNHT (bnn_sgmcmc.kernels.sgnht): the known Gaussian posterior, and the thermostat."""

from __future__ import annotations

import numpy as np
import pytest
from harness import assert_recovers_gaussian, linear_regression, make_spec, run_on_gaussian


def test_recovers_a_gaussian_posterior():
    """From the mean: from 0 the thermostat first absorbs the potential energy of the fall, and takes longer than
    the test to relax."""
    assert_recovers_gaussian(make_spec("sgnht", kernel="sgnht", step_size=2e-3, alpha=5.0), 5000, from_mean=True)


def test_the_thermostat_holds_the_kinetic_energy_at_the_temperature_and_absorbs_gradient_noise():
    """SGNHT (Ding et al. 2014) on minibatches of 20 of 200, drawn with replacement: the gradient noise heats
    the momentum, and the thermostat's friction xi rises (from 6.2 with full batches to 13.6, measured)
    until the mean squared momentum per dimension is back at the temperature, 1, and the posterior right."""
    *_, mean, cov = linear_regression()
    spec = make_spec("sgnht", kernel="sgnht", step_size=2e-3, alpha=5.0)
    chains = list(range(512))
    full, _, _, _ = run_on_gaussian(spec, 5000, start=mean, chains=chains)
    noisy, _, _, _ = run_on_gaussian(spec, 20000, batch=20, start=mean, chains=chains)
    for state in (full, noisy):
        assert float(np.mean(np.asarray(state.momentum["w"]) ** 2)) == pytest.approx(1.0, abs=0.1)
    assert float(np.mean(noisy.xi)) > float(np.mean(full.xi)) + 3
    np.testing.assert_allclose(np.asarray(noisy.position["w"]).var(0), np.diag(cov), rtol=0.15)
