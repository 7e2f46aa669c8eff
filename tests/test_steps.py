"""The sampling jobs (bnn_sgmcmc.steps.warmup, sample, gather) on tiny synthetic data: same config same arrays,
chains alone or together, divergence, a warmup file of another config, kill and resume for every kernel,
checkpoint checks, SIGKILL, XLA's threads and autotuning, the predictive file's layout, gathering shards."""

from __future__ import annotations

import copy
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from harness import SAMPLERS, SAMPLING, arrays, assert_same_results, job, job_spec

from bnn_sgmcmc import h5io, kernels, provenance, schema, steps
from bnn_sgmcmc.errors import ConfigError, DataError, DivergenceError


#: The test set's mean log-likelihood of every 8th of 40 kept samples of chain 0 (tests/test_sampling.py's
#: tiny jobs), written by the code before the kernel registry and schedules (commit 1583b92): SGLD and
#: SGHMC must give them still. Bit for bit on the processor that wrote them; the tolerance leaves room
#: for another instruction set's rounding, and is far below any change of the dynamics.
BEFORE = {
    "sgld": [-1.1148810386657715, -0.7223171591758728, -0.9128224849700928, -0.6362749934196472, -1.32516610622406],
    "sghmc": [-1.2634003162384033, -1.1169631481170654, -0.9909162521362305, -1.1804382801055908, -1.0166850090026855],
}


@pytest.mark.parametrize("name", ["sgld", "sghmc"])
def test_same_config_same_arrays_and_a_useful_posterior(data_h5, tmp_path, name):
    """Two runs of one config give the same arrays, a posterior far better than chance, and SGLD and SGHMC the
    results they gave before the kernel registry (BEFORE)."""
    warm_a = job("warmup", data_h5, tmp_path, name, tag="a")
    warm_b = job("warmup", data_h5, tmp_path, name, tag="b")
    assert_same_results(warm_a, warm_b)
    pred_a = job("sample", data_h5, tmp_path, name, tag="a", warmup=str(warm_a))
    pred_b = job("sample", data_h5, tmp_path, name, tag="b", warmup=str(warm_b))
    assert_same_results(pred_a, pred_b)
    got, attrs = h5io.read_predictive(pred_a)
    assert got["trace"]["test"]["ensemble_accuracy"][-1].min() > 0.5  # chance is 0.1
    assert attrs["num_samples"] == 40 and attrs["sampler"]["kernel"] == name
    assert got["trace"]["grad_evals"][-1] == 40 * (3 if name == "sghmc" else 1)
    np.testing.assert_allclose(got["trace"]["test"]["mean_log_likelihood"][::8, 0], BEFORE[name], rtol=1e-4)


def test_chains_are_independent_and_equal_alone_or_together(data_h5, tmp_path):
    together = arrays(job("warmup", data_h5, tmp_path, chains=(0, 1, 2), tag="together"))
    alone = arrays(job("warmup", data_h5, tmp_path, chains=(2,), tag="alone"))
    for name in together:
        if name.startswith("state/"):
            np.testing.assert_allclose(alone[name][0], together[name][2], rtol=1e-4, atol=1e-5)
            assert not np.allclose(together[name][0], together[name][1])
    np.testing.assert_allclose(alone["trace/test_accuracy"][:, 0], together["trace/test_accuracy"][:, 2], atol=1 / 128)


def test_a_diverging_chain_names_sampler_chain_and_step(data_h5, tmp_path):
    with pytest.raises(DivergenceError, match=r"sampler sgld \(kernel sgld, constant step size\): chain 0 diverged during warmup at step \d+.*Lower samplers.sgld.step_size"):
        job("warmup", data_h5, tmp_path, sampler_config={"kernel": "sgld", "step_size": 1e3})
    assert not (tmp_path / "a" / "warmup.h5").exists()
    assert not (tmp_path / "a" / "ckpt-warmup.h5").exists()


def test_a_warmup_file_from_another_config_is_refused(data_h5, tmp_path):
    warm = job("warmup", data_h5, tmp_path)
    with pytest.raises(DataError, match=r"was made with another config: model: file has .*'hidden': \[16\].*--forcerun warmup"):
        job("sample", data_h5, tmp_path, warmup=str(warm), model_config={"hidden": [8], "prior_scale": 1.0, "init": "flax"})
    assert not (tmp_path / "a" / "sample.h5").exists()


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after the checkpoint runs."""


@pytest.mark.parametrize("kind", ["warmup", "sample"])
@pytest.mark.parametrize("name", kernels.names())
def test_a_killed_job_resumes_from_its_checkpoint_with_identical_results(data_h5, tmp_path, monkeypatch, kind, name):
    """Every registered kernel, whatever its state carries (a momentum and thermostat, a preconditioner, HMC's
    step-size adaptation in warmup and its adapted step and traced statistics in sampling): a job killed after
    its second checkpoint and rerun gives the arrays of an uninterrupted one. A kernel without an entry in
    SAMPLERS runs at its defaults, with a small step. A MAP member's sampling job is one step, with nothing
    to resume."""
    entry = SAMPLERS.get(name, {"kernel": name, "step_size": 1e-4})
    if kind == "sample" and kernels.phase_steps(name, schema.sampler_settings(entry), SAMPLING).get(
            "sampling_steps", SAMPLING["sampling_steps"]) <= SAMPLING["eval_every"]:
        pytest.skip(f"a {name} sampling job runs one chunk: no checkpoint comes before its end")
    warm = str(job("warmup", data_h5, tmp_path, name, tag="w", sampler_config=entry)) if kind == "sample" else None
    extra = {"warmup": warm, "sampler_config": entry} if warm else {"sampler_config": entry}
    clean = job(kind, data_h5, tmp_path, name, tag="clean", **copy.deepcopy(extra))
    original = steps._Checkpointer.write
    writes = []

    def write_then_die(self, arrays, attrs):
        original(self, arrays, attrs)
        writes.append(attrs["step"])
        if len(writes) == 2:
            raise Killed

    monkeypatch.setattr(steps._Checkpointer, "write", write_then_die)
    with pytest.raises(Killed):
        job(kind, data_h5, tmp_path, name, tag="resumed", **copy.deepcopy(extra))
    assert (tmp_path / "resumed" / f"ckpt-{kind}.h5").exists()
    assert not (tmp_path / "resumed" / f"{kind}.h5").exists()
    monkeypatch.setattr(steps._Checkpointer, "write", original)
    resumed = job(kind, data_h5, tmp_path, name, tag="resumed", **copy.deepcopy(extra))
    assert_same_results(clean, resumed)
    assert not (tmp_path / "resumed" / f"ckpt-{kind}.h5").exists()


@pytest.fixture(scope="module")
def interrupted_sampling(data_h5, tmp_path_factory):
    """An uninterrupted sgld sampling job, and the checkpoint that the same job left when killed."""
    root = tmp_path_factory.mktemp("interrupted")
    warm = str(job("warmup", data_h5, root, tag="w"))
    clean = job("sample", data_h5, root, tag="clean", warmup=warm)
    original = steps._Checkpointer.write

    def write_then_die(self, arrays, attrs):
        original(self, arrays, attrs)
        raise Killed

    steps._Checkpointer.write = write_then_die
    try:
        with pytest.raises(Killed):
            job("sample", data_h5, root, tag="killed", warmup=warm)
    finally:
        steps._Checkpointer.write = original
    return warm, clean, root / "killed" / "ckpt-sample.h5"


def _rewrite(path, change, digest=True):
    """Apply ``change(arrays, attrs)`` to a checkpoint; with ``digest``, as its writer would (a valid digest)."""
    arrays, attrs = h5io.read_arrays(path)
    change(arrays, attrs)
    if digest:
        attrs["digest"] = h5io.digest(arrays, steps._digested(attrs))
    h5io.write_arrays(path, arrays, attrs)


def _first_state_leaf(arrays):
    return next(name for name in h5io._flatten(arrays) if name.startswith("state/"))


def _set(arrays, name, value):
    *parents, leaf = name.split("/")
    h5io.lookup(arrays, "/".join(parents))[leaf] = value


TAMPERINGS = {
    "a number changed": (lambda a, t: _set(a, _first_state_leaf(a), h5io.lookup(a, _first_state_leaf(a)) + 1),
                         False, "its contents do not match the digest written with it"),
    "a dataset removed": (lambda a, t: a["trace"].pop("sample_step"), False, "do not match the digest"),
    "no digest (an older writer)": (lambda a, t: t.pop("digest"), False, "do not match the digest"),
    "its step beyond the phase": (lambda a, t: t.update(step=10_000), True,
                                  r"does not fit this run: its step 10000 is outside the sampling phase's 1\.\.39"),
    "its step before its trace": (lambda a, t: t.update(step=1), True, "trace steps do not end at or before its step 1"),
    "a dataset missing, digest valid": (lambda a, t: a["trace"].pop("cycle"), True, "does not fit this run: 'cycle'"),
    "another shape": (lambda a, t: _set(a, _first_state_leaf(a), h5io.lookup(a, _first_state_leaf(a))[:, :1]), True,
                      r"does not fit this run: state/.* is float32\[2, 1.*\], expected float32\[2, "),
    "other chains": (lambda a, t: a.update(chain=np.asarray([5, 6])), True, r"holds chains \[5, 6\], this job runs \[0, 1\]"),
    "another config": (lambda a, t: t["fingerprint"]["model"].update(hidden=[8]), True, "made with another config"),
}


@pytest.mark.parametrize("how", [*TAMPERINGS, "unreadable"])
def test_a_checkpoint_that_fails_a_check_is_moved_aside_and_the_job_starts_over(
        data_h5, interrupted_sampling, tmp_path, caplog, how):
    warm, clean, killed = interrupted_sampling
    ckpt = tmp_path / "a" / "ckpt-sample.h5"
    ckpt.parent.mkdir()
    shutil.copy(killed, ckpt)
    if how == "unreadable":
        ckpt.write_bytes(b"not HDF5" * 100)
        why = "it cannot be read"
    else:
        change, digest, why = TAMPERINGS[how]
        _rewrite(ckpt, change, digest)
    with caplog.at_level(logging.WARNING, logger="bnn_sgmcmc"):
        out = job("sample", data_h5, tmp_path, warmup=warm)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and re.search(rf"checkpoint .*ckpt-sample.h5 not used: .*{why}", warned[0]), warned
    assert "Starting this job over; the file is now" in warned[0]
    assert_same_results(clean, out)  # started over: the uninterrupted run's arrays
    assert (tmp_path / "a" / "ckpt-sample.h5.rejected").exists() and not ckpt.exists()


def test_an_untouched_checkpoint_passes_every_check_and_is_resumed(data_h5, interrupted_sampling, tmp_path, caplog):
    warm, clean, killed = interrupted_sampling
    (tmp_path / "a").mkdir()
    shutil.copy(killed, tmp_path / "a" / "ckpt-sample.h5")
    with caplog.at_level(logging.INFO, logger="bnn_sgmcmc"):
        out = job("sample", data_h5, tmp_path, warmup=warm)
    assert any("resuming from checkpoint" in r.getMessage() for r in caplog.records)
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    assert_same_results(clean, out)


def test_sigkill_mid_warmup_then_rerun_matches_an_uninterrupted_run(data_h5, tmp_path):
    """A real SIGKILL of a job process, as a preempted cluster job gets."""
    long = {"warmup_steps": 600, "eval_every": 5}
    clean = job("warmup", data_h5, tmp_path, tag="clean", sampling=long)
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from harness import job; from pathlib import Path;"
        f"job('warmup', {data_h5!r}, Path({str(tmp_path)!r}), tag='killed', sampling={long!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    ckpt = tmp_path / "killed" / "ckpt-warmup.h5"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    proc.kill()
    proc.wait()
    if not ckpt.exists():
        pytest.fail("the job finished before it could be killed; make it longer")
    with h5py.File(ckpt) as f:
        assert 0 < f.attrs["step"] < 600
    resumed = job("warmup", data_h5, tmp_path, tag="killed", sampling=long)
    assert_same_results(clean, resumed)


def test_cpu_threads_fixes_xlas_threads_in_a_job_process_and_the_file_records_them(data_h5, tmp_path):
    """sampling.cpu_threads: a warmup job in a new process, as the workflow runs it, runs on that many XLA CPU
    threads (the arrays of the same job with PJRT_NPROC in its environment) and records the count; in a
    process whose JAX already runs on another count, as this one, the job stops before any work, naming it."""
    # The job's own code only, as a rule's script runs it: this module starts JAX when imported.
    code = "import pickle, sys; from bnn_sgmcmc import steps; steps.warmup(pickle.loads(sys.stdin.buffer.read()))"
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC")}
    for tag, sampling_config, extra in (("config", {"cpu_threads": 1}, {}), ("environment", {}, {"PJRT_NPROC": "1"})):
        spec = job_spec("warmup", data_h5, tmp_path, tag=tag, sampling=sampling_config)
        subprocess.run([sys.executable, "-c", code], input=pickle.dumps(spec), env=env | extra, check=True)
    assert_same_results(tmp_path / "config/warmup.h5", tmp_path / "environment/warmup.h5")
    assert h5io.read_arrays(tmp_path / "config/warmup.h5")[1]["device"]["cpu"]["xla_threads"] == 1

    here = provenance.xla_cpu_threads()
    with pytest.raises(ConfigError, match=rf"^sampling.cpu_threads = {here + 1}: this process's JAX already runs "
                                          rf"on {here} CPU threads; start a new process"):
        job("warmup", data_h5, tmp_path, tag="here", sampling={"cpu_threads": here + 1})
    assert not (tmp_path / "here").exists()


def test_gpu_autotuning_reaches_xla_before_jax_starts_and_the_file_records_it(data_h5, tmp_path):
    """sampling.gpu_autotuning: a warmup job in a new process puts its policy's flags in XLA_FLAGS, next to
    the user's own, before JAX starts (XLA takes them: it stops at a flag it does not know) and records both;
    a CPU's arrays are those of the default. In a process whose JAX started without them, as this one, the job
    stops before any work, naming the fix."""
    code = "import pickle, sys; from bnn_sgmcmc import steps; steps.warmup(pickle.loads(sys.stdin.buffer.read()))"
    env = dict(os.environ) | {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}  # XLA's default: same arithmetic
    spec = job_spec("warmup", data_h5, tmp_path, tag="none", sampling={"gpu_autotuning": "none"})
    subprocess.run([sys.executable, "-c", code], input=pickle.dumps(spec), env=env, check=True)
    attrs = h5io.read_arrays(tmp_path / "none/warmup.h5")[1]
    assert attrs["gpu_autotuning"] == "none"
    assert attrs["xla_flags"] == "--xla_cpu_enable_fast_math=false --xla_gpu_autotune_level=0"
    default = job("warmup", data_h5, tmp_path, tag="default")  # in this process: XLA's default autotuning
    assert h5io.read_arrays(default)[1]["gpu_autotuning"] == "default"
    assert_same_results(tmp_path / "none/warmup.h5", default)

    with pytest.raises(ConfigError, match=r"^sampling.gpu_autotuning = cublas: this process's JAX started without "
                                          r"--xla_gpu_enable_triton_gemm=false in XLA_FLAGS; start a new process"):
        job("warmup", data_h5, tmp_path, tag="here", sampling={"gpu_autotuning": "cublas"})
    assert not (tmp_path / "here").exists()


def test_xlas_cpu_thread_count_is_read_as_xla_reads_it(monkeypatch):
    """PJRT_NPROC, then NPROC (xla/pjrt/utils.cc), then the processors this process may run on."""
    for name in ("PJRT_NPROC", "NPROC"):
        monkeypatch.delenv(name, raising=False)
    assert provenance.xla_cpu_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("NPROC", "5")
    assert provenance.xla_cpu_threads() == 5
    monkeypatch.setenv("PJRT_NPROC", "3")
    assert provenance.xla_cpu_threads() == 3
    monkeypatch.setenv("PJRT_NPROC", "three")  # not a number: XLA goes on to the next
    assert provenance.xla_cpu_threads() == 5


def test_predictive_file_schema(data_h5, tmp_path):
    warm = job("warmup", data_h5, tmp_path)
    pred = job("sample", data_h5, tmp_path, warmup=str(warm), sampling={"thinning": 2, "save_weights_every": 20})
    got, attrs = h5io.read_predictive(pred, draws=True)
    assert got["test"]["log_probs"].shape == (2, 128, 10) and got["test"]["log_probs"].dtype == np.float32
    assert got["test"]["last_log_probs"].shape == (2, 128, 10)
    np.testing.assert_array_equal(got["test"]["probs"], np.exp(got["test"]["log_probs"]))  # derived on reading
    np.testing.assert_allclose(got["test"]["probs"].sum(-1), 1.0, atol=1e-4)
    # 20 kept samples, at most 15 draws: every 2nd kept sample (steps 4, 8, ..., 40), float16.
    assert got["draws"]["step"].tolist() == list(range(4, 41, 4))
    draws = got["draws"]["test"]["true_class_log_prob"]
    assert draws.shape == (10, 2, 128) and draws.dtype == np.float16
    last = got["test"]["last_log_probs"][:, np.arange(128), got["test"]["labels"]]
    np.testing.assert_allclose(draws[-1], last, rtol=1e-3, atol=1e-6)  # the last draw is the last sample
    assert "draws" not in h5io.read_predictive(pred)[0]  # read only when asked for
    assert got["test"]["mean_entropy"].shape == (2, 128)
    assert got["test"]["labels"].shape == (128,)
    assert got["trace"]["sample_step"].tolist() == list(range(2, 41, 2))  # thinning 2
    for metric in ("ensemble_accuracy", "pointwise_accuracy", "mean_log_likelihood"):
        assert got["trace"]["test"][metric].shape == (20, 2)
    assert got["trace"]["wall_seconds"].shape == (20, 2) and np.all(np.diff(got["trace"]["wall_seconds"][:, 0]) >= 0)
    assert got["warmup"]["trace"]["step"].tolist() == list(range(10, 61, 10))
    assert got["weights"]["step"].tolist() == [20, 40]
    assert got["weights"]["params"]["Dense_0"]["kernel"].shape == (2, 2, 784, 16)
    assert attrs["num_samples"] == 20 and attrs["seed"] == 0 and attrs["chains"] == 2
    assert attrs["device"]["backend"] == "cpu" and "jax" in attrs["versions"] and "blackjax" in attrs["versions"]
    assert "vector_extensions" in attrs["device"]["cpu"]  # XLA's CPU code depends on them
    assert attrs["compile_seconds"] > 0 and attrs["run_seconds"] > 0
    # Entropy of the mean is at least the mean entropy (Jensen): the epistemic part is >= 0.
    p = got["test"]["probs"]
    total = -(p * np.log(np.clip(p, 1e-30, None))).sum(-1)
    assert np.all(total >= got["test"]["mean_entropy"] - 1e-4)


def test_gather_joins_shards_along_chains(data_h5, tmp_path):
    preds = []
    for tag, chains in (("s0", (0,)), ("s1", (1, 2))):
        warm = job("warmup", data_h5, tmp_path, chains=chains, tag=tag)
        preds.append(str(job("sample", data_h5, tmp_path, chains=chains, tag=tag, warmup=str(warm))))
    out = tmp_path / "gathered.h5"
    steps.gather(shards=preds, out=str(out))
    got, attrs = h5io.read_predictive(out)
    assert got["chain"].tolist() == [0, 1, 2] and attrs["chains"] == 3
    assert got["test"]["probs"].shape == (3, 128, 10)
    assert got["trace"]["test"]["ensemble_accuracy"].shape == (40, 3)
    shards = [h5io.read_predictive(p, draws=True)[0]["draws"] for p in preds]
    joined = h5io.read_predictive(out, draws=True)[0]["draws"]
    np.testing.assert_array_equal(joined["step"], shards[0]["step"])
    np.testing.assert_array_equal(joined["test"]["true_class_log_prob"],
                                  np.concatenate([d["test"]["true_class_log_prob"] for d in shards], axis=1))
    assert [r["chains"] for r in attrs["shard_runs"]] == [[0], [1, 2]]
    np.testing.assert_array_equal(got["test"]["probs"][1:], h5io.read_predictive(preds[1])[0]["test"]["probs"])


def test_a_predictive_file_missing_a_dataset_is_named(tmp_path):
    path = tmp_path / "broken.h5"
    with h5py.File(path, "w") as f:
        f["chain"] = np.arange(2)
    with pytest.raises(DataError, match=r"broken.h5 lacks the datasets test/log_probs, test/mean_entropy, test/last_log_probs"):
        h5io.read_predictive(path)


def test_a_predictive_file_of_an_older_layout_says_to_rerun_sampling(data_h5, tmp_path):
    warm = job("warmup", data_h5, tmp_path)
    pred = job("sample", data_h5, tmp_path, warmup=str(warm))
    with h5py.File(pred, "a") as f:  # as an older writer left it: another version, no digests
        f.attrs["schema_version"] = 2
        del f.attrs[h5io.ATTRS_DIGEST]
    with pytest.raises(DataError, match=r"layout version 2; this workflow reads version 3.*--forcerun sample"):
        h5io.read_predictive(pred)
    with pytest.raises(DataError, match=r"layout version 2"):
        steps.gather(shards=[str(pred)], out=str(tmp_path / "gathered.h5"))
    assert not (tmp_path / "gathered.h5").exists()


def test_last_probs_are_the_last_samples_own_predictions(data_h5, tmp_path):
    """Thinning 1: the ensemble of one sample equals that sample; later, last differs from the mean."""
    warm = job("warmup", data_h5, tmp_path)
    one = h5io.read_predictive(job("sample", data_h5, tmp_path, tag="one", warmup=str(warm), sampling={"sampling_steps": 1}))[0]
    np.testing.assert_allclose(one["test"]["last_probs"], one["test"]["probs"], atol=1e-6)
    many = h5io.read_predictive(job("sample", data_h5, tmp_path, tag="many", warmup=str(warm)))[0]
    last = many["test"]["last_probs"]
    np.testing.assert_allclose(last.sum(-1), 1.0, atol=1e-4)
    assert not np.allclose(last, many["test"]["probs"], atol=1e-3)
    accuracy = (last.argmax(-1) == many["test"]["labels"]).mean(axis=1)
    np.testing.assert_allclose(accuracy, many["trace"]["test"]["pointwise_accuracy"][-1], atol=1e-6)
