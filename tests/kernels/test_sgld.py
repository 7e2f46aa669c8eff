"""SGLD (bnn_sgmcmc.kernels.sgld): the known Gaussian posterior, and the results from before the registry."""

from __future__ import annotations

import numpy as np
import pytest
from harness import assert_recovers_gaussian, job, make_spec

from bnn_sgmcmc import h5io


def test_recovers_a_gaussian_posterior():
    assert_recovers_gaussian(make_spec("sgld", kernel="sgld", step_size=2.5e-5), 1000)


#: The test set's mean log-likelihood of every 8th of 40 kept samples of chain 0 (tests/test_sampling.py's
#: tiny jobs), written by the code before the kernel registry and schedules (commit 1583b92): SGLD and
#: SGHMC must give them still. Bit for bit on the processor that wrote them; the tolerance leaves room
#: for another instruction set's rounding, and is far below any change of the dynamics.
BEFORE = {
    "sgld": [-1.1148810386657715, -0.7223171591758728, -0.9128224849700928, -0.6362749934196472, -1.32516610622406],
    "sghmc": [-1.2634003162384033, -1.1169631481170654, -0.9909162521362305, -1.1804382801055908, -1.0166850090026855],
}


@pytest.mark.parametrize("name", ["sgld", "sghmc"])
def test_sgld_and_sghmc_give_the_results_from_before_the_registry(data_h5, tmp_path, name):
    warm = job("warmup", data_h5, tmp_path, name)
    pred = job("sample", data_h5, tmp_path, name, warmup=str(warm))
    trace = h5io.read_arrays(pred)[0]["trace"]["test"]["mean_log_likelihood"][::8, 0]
    np.testing.assert_allclose(trace, BEFORE[name], rtol=1e-4)
