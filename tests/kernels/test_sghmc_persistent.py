"""SGHMC with a persistent momentum (bnn_sgmcmc.kernels.sghmc_persistent): the known Gaussian posterior, the
tempered posterior, and the momentum that minibatch noise heats."""

from __future__ import annotations

import numpy as np
import pytest
from harness import SE, assert_recovers_gaussian, linear_regression, make_spec, run_on_gaussian, stationary_run


def test_recovers_a_gaussian_posterior():
    """Chen et al.'s SGHMC, its momentum carried over: unbiased at the default K = 10 (see the K/(K-1) tests of
    tests/kernels/test_sghmc.py)."""
    assert_recovers_gaussian(make_spec("sghmc_persistent", kernel="sghmc_persistent", step_size=2e-3, alpha=5.0,
                                       num_integration_steps=5), 400)


def test_the_persistent_kernel_samples_the_tempered_posterior():
    """At temperature 2 the persistent kernel's noise doubles the variance (T / curvature), with one
    integration step per kernel step: the momentum carries over between kernel steps, not only within."""
    state, variance = stationary_run("sghmc_persistent", 0.05, 0.5, 1, 1000, temperature=2.0)
    assert variance == pytest.approx(2.0, rel=4 * SE)
    assert float(np.var(state.momentum["x"])) == pytest.approx(2.0, rel=0.05)


def test_the_persistent_kernels_momentum_heats_with_gradient_noise_and_the_job_says_so(caplog):
    """Minibatches of 20 of 200 (with replacement) heat the carried momentum: its traced kinetic temperature
    rises above the temperature, 1, and the posterior widens by about as much (measured: 3.2 against 3.6 and
    2.8), which check_momentum_temperature reports as a warning. With full batches it stays at 1, silently.
    (One integration step per kernel step here; the same number of gradients in steps of ten at the end.)"""
    from bnn_sgmcmc import experiment

    *_, cov = linear_regression()
    chains = list(range(256))
    cases = {"full": (None, 1e-3), "minibatch": (20, 3e-3)}
    late = {}
    for case, (batch, step_size) in cases.items():
        spec = make_spec("persistent", kernel="sghmc_persistent", step_size=step_size, alpha=5.0,
                         num_integration_steps=1)
        caplog.clear()
        state, dyn, _, _ = run_on_gaussian(spec, 4000, batch=batch, chains=chains)
        trace = run_on_gaussian.last.kernel_trace
        assert set(trace) == {"step", "kinetic_temperature", "hottest_kinetic_temperature"}
        assert np.asarray(trace["hottest_kinetic_temperature"]).shape == (4000, len(chains))
        late[case] = experiment.check_momentum_temperature(spec, trace, "warmup")
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        widening = np.asarray(dyn.kernel.position(state)["w"]).var(0) / np.diag(cov)
        if case == "full":
            assert late[case] == pytest.approx(1.0, abs=0.1) and not warned
        else:
            assert late[case] > 2.5 and len(warned) == 1, warned
            assert warned[0].startswith("persistent: the momentum runs hot in warmup: the kinetic temperature of its "
                                        f"hottest weight array averaged {late[case]:.3g}")
            assert "raise alpha, lower step_size or raise sampling.batch_size" in warned[0]
            np.testing.assert_allclose(widening, late[case], rtol=0.35)
    # Ten integration steps a kernel step, each on a fresh minibatch, heat it as much as ten kernel steps of
    # one: reusing one minibatch for all ten, as BlackJAX's sghmc does, heated it to 9.2 here (measured).
    spec = make_spec("persistent", kernel="sghmc_persistent", step_size=3e-3, alpha=5.0, num_integration_steps=10)
    run_on_gaussian(spec, 400, batch=20, chains=chains)
    ten = experiment.check_momentum_temperature(spec, run_on_gaussian.last.kernel_trace, "warmup")
    assert ten == pytest.approx(late["minibatch"], rel=0.2)
