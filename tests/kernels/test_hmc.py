"""Full-batch HMC (bnn_sgmcmc.kernels.hmc): the known Gaussian posterior, the step-size adaptation, and its
refusal of a step-size schedule. (tests/test_reference.py tests it as the reference posterior.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import assert_recovers_gaussian, make_spec, run_on_gaussian

from bnn_sgmcmc import config, kernels, schema
from bnn_sgmcmc.errors import ConfigError


def test_recovers_a_gaussian_posterior():
    """Metropolis-adjusted: exact at any step size, here the one its warmup adapts from 0.01."""
    assert_recovers_gaussian(make_spec("hmc", kernel="hmc", step_size=0.01, num_integration_steps=5), 300)


def test_hmc_adapts_its_step_size_to_the_target_acceptance_and_traces_its_statistics():
    """Dual averaging (BlackJAX's) moves each chain's step size from 0.01 until the acceptance probability
    averages the target; the trace holds every step's step size, acceptance, divergence and energy."""
    spec = make_spec("hmc", kernel="hmc", step_size=0.01, num_integration_steps=5, target_acceptance=0.7)
    state, dyn, mean, cov = run_on_gaussian(spec, 400, chains=list(range(256)))
    trace = run_on_gaussian.last.kernel_trace
    assert trace["step"] == list(range(1, 401)) and set(trace) == {"step", *kernels.module("hmc").STATS}
    acceptance = np.asarray(trace["acceptance_rate"])  # [steps, chains]
    assert acceptance.shape == (400, 256)
    assert float(acceptance[-200:].mean()) == pytest.approx(0.7, abs=0.05)
    step_sizes = np.asarray(trace["step_size"])
    # The posterior's standard deviations are 0.039 and 0.040: the step grows from 0.01 to a few times that.
    assert np.all(step_sizes[0] == pytest.approx(0.01)) and np.all(step_sizes[-1] > 0.02)
    # Dual averaging's iterates jitter around the adapted step, and in two dimensions some cross leapfrog's
    # stability limit (2 standard deviations, 0.078): those diverge (energy error over 1,000), fewer as the
    # jitter shrinks (20 % of the first 50 steps, 7 % of the last 50, measured).
    divergent = np.asarray(trace["divergent"]).mean(axis=1)
    assert divergent[:50].mean() > 2 * divergent[-50:].mean() and np.isfinite(np.asarray(trace["energy"])).all()
    # Sampling uses the averaged step size where warmup ended, fixed.
    final = np.asarray(jax.vmap(lambda s: jnp.exp(s.adaptation.log_step_size_avg))(state))
    assert np.all((final > 0.03) & (final < 0.2)), final


def test_a_step_size_schedule_is_refused():
    cfg = schema.with_defaults({"samplers": {"h": {"kernel": "hmc", "step_size": 1e-3,
                                                   "schedule": {"kind": "polynomial"}}}})
    with pytest.raises(ConfigError, match=r"^samplers.h: kernel hmc adapts its own step size during warmup .* a "
                                          r"polynomial schedule does not apply to it"):
        config.check(cfg)
