"""Step-size schedules (bnn_sgmcmc.schedules): a known Gaussian posterior under each, their formulas, and the
cyclical schedule's kept samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import assert_recovers_gaussian, job, make_spec, settings_of

from bnn_sgmcmc import h5io, schedules


@pytest.mark.parametrize("schedule, steps", [
    ({"kind": "polynomial", "decay_steps": 100, "gamma": 0.55, "phases": ["warmup"]}, 3000),
    ({"kind": "cyclical", "cycles": 2, "exploration": 0.25, "phases": ["warmup"]}, 2000),
], ids=["polynomial", "cyclical"])
def test_sgld_under_a_schedule_recovers_a_gaussian_posterior(schedule, steps):
    assert_recovers_gaussian(make_spec(schedule["kind"], kernel="sgld", step_size=1e-4, schedule=schedule), steps)


def test_cyclical_schedule_keeps_only_the_sampling_stage_of_each_cycle_and_traces_the_cycle(data_h5, tmp_path):
    """40 sampling steps, 2 cycles of 20, the first half of each exploring: steps 11-20 and 31-40 are kept."""
    entry = {"kernel": "sgld", "step_size": 5e-4, "schedule": {"kind": "cyclical", "cycles": 2, "exploration": 0.5}}
    warm = job("warmup", data_h5, tmp_path, sampler_config=entry)
    got, attrs = h5io.read_predictive(job("sample", data_h5, tmp_path, sampler_config=entry, warmup=str(warm)), draws=True)
    expected = [*range(11, 21), *range(31, 41)]
    assert got["trace"]["sample_step"].tolist() == expected and attrs["num_samples"] == 20
    assert got["trace"]["cycle"].tolist() == [0] * 10 + [1] * 10
    lengths = {"warmup": 60, "sampling": 40}
    np.testing.assert_array_equal(schedules.kept_steps(settings_of(entry)["schedule"], lengths, 1) + 1, expected)
    assert schedules.kept_count(settings_of(entry)["schedule"], lengths, 1) == 20
    assert got["draws"]["step"].tolist() == expected[1::2]  # at most 15 draws of 20 kept: every 2nd


def test_schedule_step_sizes_by_formula():
    lengths = {"warmup": 10, "sampling": 100}
    poly = settings_of({"kernel": "sgld", "step_size": 1.0, "schedule": {"kind": "polynomial", "decay_steps": 10,
                                                                             "gamma": 0.5, "phases": ["warmup", "sampling"]}})
    sizes = schedules.step_sizes(poly["schedule"], 2.0, lengths)
    assert sizes["warmup"][0] == 2.0 and sizes["sampling"][0] == pytest.approx(2.0 * 2 ** -0.5)  # t = 10
    cyc = settings_of({"kernel": "sgld", "step_size": 1.0, "schedule": {"kind": "cyclical", "cycles": 4}})
    sizes = schedules.step_sizes(cyc["schedule"], 2.0, lengths)
    np.testing.assert_array_equal(sizes["warmup"], 2.0)  # the schedule spans sampling only
    k = np.arange(100)
    np.testing.assert_allclose(sizes["sampling"], 1.0 * (np.cos(np.pi * (k % 25) / 25) + 1))  # Zhang et al. (2020)
    traced = jax.jit(lambda t: schedules.build(cyc["schedule"], 2.0, lengths, "sampling")(t))(jnp.int32(30))
    host = schedules.build(cyc["schedule"], 2.0, lengths, "sampling")(30)
    assert float(traced.step_size) == pytest.approx(float(host.step_size)) and bool(traced.sampling) == bool(host.sampling)
    assert int(traced.cycle) == 1 and float(traced.temperature) == 0.0  # step 30: cycle 1, exploring (5 < 7)


def test_cosine_decays_from_the_step_size_to_zero_over_the_spanned_phase():
    """The baselines' learning rate: step_size / 2 (cos(pi t / T) + 1) over warmup's T steps, every step sampling
    at temperature 1 (an optimiser ignores both), and the phase it does not span at step_size."""
    lengths = {"warmup": 40, "sampling": 7}
    cos = settings_of({"kernel": "map", "step_size": 3.0})
    assert cos["schedule"] == {"kind": "cosine", "phases": ["warmup"]}
    sizes = schedules.step_sizes(cos["schedule"], 3.0, lengths)
    t = np.arange(40)
    np.testing.assert_allclose(sizes["warmup"], 1.5 * (np.cos(np.pi * t / 40) + 1))
    assert sizes["warmup"][0] == 3.0 and sizes["warmup"][20] == pytest.approx(1.5) and sizes["warmup"][-1] < 0.01
    np.testing.assert_array_equal(sizes["sampling"], 3.0)
    step = jax.jit(schedules.build(cos["schedule"], 3.0, lengths, "warmup"))(jnp.int32(10))
    assert float(step.step_size) == pytest.approx(1.5 * (np.cos(np.pi / 4) + 1)) and float(step.temperature) == 1.0
