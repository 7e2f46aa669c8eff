"""A sampler run assembled from config and data file (bnn_sgmcmc.experiment): step plans, evaluation sets,
fingerprints and the checks made with them."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
from harness import SAMPLING, job_spec, make_spec

from bnn_sgmcmc import experiment
from bnn_sgmcmc.errors import ConfigError, DataError

WARMUP_KEYS = ("batch_size", "batching", "warmup_steps", "eval_every")  # what the warmup rule passes


# --------------------------------------------------------------------------- the step plan


def test_a_warmup_job_not_told_the_sampling_phase_plans_it_at_0_steps():
    warmup = experiment.plan_from_config({k: SAMPLING[k] for k in WARMUP_KEYS})
    assert (warmup.batch_size, warmup.batching, warmup.warmup_steps, warmup.eval_every) == (32, "replacement", 60, 10)
    assert (warmup.sampling_steps, warmup.thinning) == (0, 0)
    assert warmup.lengths == {"warmup": 60, "sampling": 0}
    # A sample job is told them; operational keys are not the plan's.
    sample = experiment.plan_from_config(SAMPLING)
    assert (sample.sampling_steps, sample.thinning) == (40, 1) and not hasattr(sample, "checkpoint_every")


def test_a_minibatch_larger_than_the_training_set_is_refused():
    plan = experiment.plan_from_config(SAMPLING | {"batch_size": 513})
    with pytest.raises(ConfigError, match=r"^sampling.batch_size = 513 exceeds the 512 training images of d.h5"):
        experiment.check_batch_size(plan, 512, "d.h5")
    experiment.check_batch_size(plan, 513, "d.h5")


# --------------------------------------------------------------------------- a job's setup


def test_a_warmup_setup_evaluates_the_test_set_alone_and_fingerprints_what_warmup_depends_on(data_h5, tmp_path):
    job = job_spec("warmup", data_h5, tmp_path, evaluation={}, sampling={"sampling_steps": 999})
    setup = experiment.setup(job)
    assert list(setup.eval_sets) == ["test"] and not setup.eval_sets["test"].draws and setup.draws_every == 0
    assert setup.plan == experiment.plan_from_config(job.sampling_config) and setup.chains == [0, 1]
    fingerprint = setup.fingerprint
    assert list(fingerprint) == ["model", "data", "sampler", "layout", "seed", "chains", "warmup", "evaluation"]
    assert fingerprint["warmup"] == {"batch_size": 32, "batching": "replacement", "warmup_steps": 60}
    assert fingerprint["data"]["num_classes"] == 10 and fingerprint["data"]["image_shape"] == [28, 28]
    assert len(fingerprint["data"]["train"]["images_sha256"]) == 64
    # The sampling phase's length is no part of it unless the step-size schedule spans both phases.
    both = {"kernel": "sgld", "step_size": 5e-4, "schedule": {"kind": "polynomial", "phases": ["warmup", "sampling"]}}
    spanning = experiment.setup(job_spec("warmup", data_h5, tmp_path, sampler_config=both, evaluation={},
                                         sampling={"sampling_steps": 999}))
    assert spanning.fingerprint["warmup"]["schedule_steps"] == {"warmup": 60, "sampling": 999}


def test_a_full_data_gradient_counts_as_n_over_batch_size_minibatch_gradients(data_h5, tmp_path):
    """512 training images in minibatches of 32: an hmc step of 3 leapfrog steps (4 full-data gradients) is worth
    4 x 16 minibatch gradients."""
    sgld = experiment.setup(job_spec("warmup", data_h5, tmp_path, "sgld", evaluation={}))
    hmc = experiment.setup(job_spec("warmup", data_h5, tmp_path, "hmc", evaluation={}))
    assert sgld.grad_evals_per_step == 1 and sgld.grad_evals([0, 5], "warmup").tolist() == [0, 5]
    assert hmc.grad_evals_per_step == 4 * 512 / 32
    assert hmc.grad_evals(2, "sampling").dtype == np.int64 and int(hmc.grad_evals(2, "sampling")) == 128


def test_a_kernel_counts_its_own_warmup_gradients_and_its_full_data_start_of_sampling(data_h5, tmp_path):
    """Kernel.warmup_grad_evals_per_step counts warmup steps where they differ from sampling steps, and
    Kernel.start_sampling adds one full-data gradient (N / batch_size = 16 minibatch gradients) to sampling."""
    setup = experiment.setup(job_spec("warmup", data_h5, tmp_path, "sgld", evaluation={}))
    kernel = setup.kernel._replace(grad_evals_per_step=2, warmup_grad_evals_per_step=1,
                                   start_sampling=lambda state, whole: state)
    setup.dynamics = setup.dynamics._replace(kernel=kernel)
    assert setup.warmup_grad_evals_per_step == 1 and setup.grad_evals_per_step == 2
    assert setup.grad_evals([10, 60], "warmup").tolist() == [10, 60]
    assert setup.grad_evals([10, 40], "sampling").tolist() == [2 * 10 + 16, 2 * 40 + 16]


def test_a_sample_job_evaluates_the_shifted_test_sets_and_records_draws():
    job = SimpleNamespace(seed=0, ood="", evaluation={
        "draws_per_chain": 3, "shift": {"examples": 4, "rotations": [0, 90], "noise": [0.5]}, "ood_examples": 0})
    images = np.random.default_rng(0).random((6, 28, 28)).astype(np.float32)
    labels = np.arange(6, dtype=np.uint8)
    sets = experiment.evaluation_sets(job, images, labels, (28, 28))
    assert list(sets) == ["test", "shift/rotation_0", "shift/rotation_90", "shift/noise_0.5"]
    assert sets["test"].draws and sets["test"].x.shape == (6, 784)
    for name in list(sets)[1:]:
        assert sets[name].x.shape == (4, 784) and not sets[name].draws
        np.testing.assert_array_equal(sets[name].labels, labels[:4])
    np.testing.assert_array_equal(sets["shift/rotation_0"].x, sets["test"].x[:4])


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_differences_name_each_differing_key_in_the_order_asked():
    expected = {"model": {"hidden": [16]}, "seed": 0, "chains": [0, 1], "data": "d"}
    found = {"model": {"hidden": [8]}, "seed": 0, "chains": [0, 1, 2], "extra": 1}
    diffs = experiment.fingerprint_differences(expected, found, ["chains", "seed", "model", "data", "extra"])
    assert diffs == [
        "chains: file has [0, 1, 2], this run needs [0, 1]",
        "model: file has {'hidden': [8]}, this run needs {'hidden': [16]}",
        "data: file has None, this run needs 'd'",
        "extra: file has 1, this run needs None",
    ]
    assert experiment.fingerprint_differences(expected, found, ["seed"]) == []


def test_a_warmup_file_is_refused_without_a_fingerprint_for_another_config_or_incomplete():
    fingerprint = {k: k for k in ("model", "data", "sampler", "seed", "chains", "warmup", "layout")}
    setup = SimpleNamespace(fingerprint=fingerprint | {"evaluation": "ignored"},
                            plan=experiment.plan_from_config(SAMPLING))
    experiment.check_warmup_matches("w.h5", {"fingerprint": fingerprint | {"evaluation": "other"}, "step": 60}, setup)
    with pytest.raises(DataError, match=r"^w.h5 has no fingerprint attribute"):
        experiment.check_warmup_matches("w.h5", {"step": 60}, setup)
    with pytest.raises(DataError, match=r"made with another config: seed: file has 1, this run needs 'seed'\. Rerun"):
        experiment.check_warmup_matches("w.h5", {"fingerprint": fingerprint | {"seed": 1}, "step": 60}, setup)
    with pytest.raises(DataError, match=r"^The warmup file w.h5 is incomplete \(step 59\)"):
        experiment.check_warmup_matches("w.h5", {"fingerprint": fingerprint, "step": 59}, setup)


# --------------------------------------------------------------------------- after a run


def test_a_hot_momentum_is_reported_from_the_second_half_of_the_phase(caplog):
    """The mean over the second half of the steps (all chains), against twice the sampler's temperature."""
    spec = make_spec("p", kernel="sghmc_persistent", step_size=1e-3, alpha=5.0, temperature=2.0)
    assert experiment.check_momentum_temperature(spec, {"step": [1, 2]}, "warmup") is None
    cool = {"hottest_kinetic_temperature": [np.asarray([50.0, 50.0])] * 2 + [np.asarray([3.0, 5.0])] * 2}
    hot = {"hottest_kinetic_temperature": [np.asarray([0.0, 0.0])] * 2 + [np.asarray([4.0, 5.0])] * 2}
    with caplog.at_level(logging.WARNING, logger="bnn_sgmcmc"):
        assert experiment.check_momentum_temperature(spec, cool, "warmup") == 4.0
        assert not caplog.records
        assert experiment.check_momentum_temperature(spec, hot, "sampling") == 4.5
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("p: the momentum runs hot in sampling: the kinetic temperature "
                                                     "of its hottest weight array averaged 4.5 over")


def test_a_sampler_job_from_a_rule_takes_operational_settings_from_the_config():
    """Changing checkpoint_every, compilation_cache or gpu_autotuning reruns nothing: they are not rule params."""

    class Named(dict):
        __getattr__ = dict.__getitem__

    operational = {"checkpoint_every": 5, "compilation_cache": "", "gpu_autotuning": "none"}
    smk = SimpleNamespace(
        input=Named(data="d.h5", warmup="w.h5", ood=["o.h5"], init=[]),
        output=Named(h5="p.h5"),
        wildcards=Named(sampler="sgld", shard="1"),
        params=Named(sampler={"kernel": "sgld"}, model={"hidden": [8]}, sampling={"batch_size": 4}, seed=3,
                     chains=(2, 3), shards=2, checkpoint="c.h5", evaluation={"draws_per_chain": 1}),
        config={"sampling": {"batch_size": 999, "cpu_threads": None} | operational},
    )
    job = experiment.SamplerJob.from_snakemake(smk)
    assert job.sampling_config == {"batch_size": 4} | operational
    assert (job.shard, job.chains, job.warmup, job.ood, job.init_from) == (1, [2, 3], "w.h5", "o.h5", ())
    assert job.evaluation == {"draws_per_chain": 1} and job.sampler == "sgld" and job.out == "p.h5"
