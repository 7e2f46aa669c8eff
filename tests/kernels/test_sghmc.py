"""BlackJAX's SGHMC (bnn_sgmcmc.kernels.sghmc): the known Gaussian posterior, its K/(K-1) bias against the
persistent kernel, and its refusal of one integration step."""

from __future__ import annotations

import numpy as np
import pytest
from harness import SE, assert_recovers_gaussian, exact_variance, make_spec, stationary_run

from bnn_sgmcmc import config, schema
from bnn_sgmcmc.errors import ConfigError


def test_recovers_a_gaussian_posterior():
    """BlackJAX's SGHMC redraws the momentum every kernel step and moves the position before each gradient kick:
    its small-step limit inflates the variance by K / (K - 1) for K integration steps (11 % at the default 10);
    K = 50 keeps it at 2 %."""
    assert_recovers_gaussian(make_spec("sghmc", kernel="sghmc", step_size=1e-3, alpha=5.0, num_integration_steps=50),
                             400)


@pytest.mark.parametrize("steps", [2, 10])
def test_blackjax_sghmc_is_wide_by_k_over_k_minus_1_and_the_persistent_kernel_is_not(steps):
    """The issue's table, as tests: N(0, 1), exact gradients, alpha 0.5, step 0.05, 100 time units (sghmc at K = 2
    settles slowly: with 50 its second half fell 8 % short). BlackJAX's sghmc gives the variance of its exact recursion, about K/(K-1) (1.98 at
    K = 2, 1.10 at 10), within 4 standard errors, and at least 10 above 1; the persistent kernel, at the
    same settings and gradients, gives 1 (1 + h^2 / 4 = 1.0006 exactly) within 4."""
    h, alpha, kernel_steps = 0.05, 0.5, 2000 // steps
    expected = exact_variance("sghmc", h, alpha, steps)
    assert expected == pytest.approx(steps / (steps - 1), rel=0.02)
    _, biased = stationary_run("sghmc", h, alpha, steps, kernel_steps)
    assert abs(biased / expected - 1) < 4 * SE and biased > 1 + 10 * SE, (biased, expected)
    assert exact_variance("sghmc_persistent", h, alpha, steps) == pytest.approx(1 + h * h / 4, rel=1e-4)
    state, variance = stationary_run("sghmc_persistent", h, alpha, steps, kernel_steps)
    assert abs(variance - 1) < 4 * SE, variance
    # The carried momentum has the temperature's variance (1 + alpha h / 2 in the discrete chain).
    assert float(np.var(state.momentum["x"])) == pytest.approx(1 + alpha * h / 2, abs=4 * SE)


def test_one_integration_step_is_refused_since_no_gradient_reaches_the_weights():
    """K = 1 is the K/(K-1) table's divergent row: the weights random-walk. The persistent kernel takes it."""
    cfg = schema.with_defaults({"samplers": {"s": {"kernel": "sghmc", "step_size": 1e-3, "num_integration_steps": 1}}})
    with pytest.raises(ConfigError, match=r"^samplers.s: kernel sghmc with num_integration_steps 1 never moves the "
                                          r"weights by a gradient.*or kernel sghmc_persistent"):
        config.check(cfg)
    config.check(schema.with_defaults({"samplers": {"s": {"kernel": "sghmc_persistent", "step_size": 1e-3,
                                                          "num_integration_steps": 1}}}))


@pytest.mark.parametrize("entry, match", [
    ({"alpha": 500.0}, r"^samplers.s: alpha x step_size = 1 must be below 1, or the momentum flips sign"),
    ({"beta": 1e5}, r"^samplers.s: beta is too large for alpha \(negative noise variance\); lower beta"),
])
def test_a_friction_that_cannot_work_is_refused(entry, match):
    cfg = schema.with_defaults({"samplers": {"s": {"kernel": "sghmc", "step_size": 2e-3} | entry}})
    with pytest.raises(ConfigError, match=match):
        config.check(cfg)
