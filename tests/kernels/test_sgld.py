"""SGLD (bnn_sgmcmc.kernels.sgld): the known Gaussian posterior. (Its and SGHMC's results from before the
kernel registry: tests/test_steps.py.)"""

from __future__ import annotations

from harness import assert_recovers_gaussian, make_spec


def test_recovers_a_gaussian_posterior():
    assert_recovers_gaussian(make_spec("sgld", kernel="sgld", step_size=2.5e-5), 1000)
