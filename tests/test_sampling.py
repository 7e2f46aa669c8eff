"""Sampling: gradient estimate, kernels on a known posterior, keys, divergence, resume, files."""

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
from pathlib import Path

import blackjax
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import SAMPLERS, arrays, assert_same_results, job, job_spec, make_spec
from jax.scipy.stats import norm

from bnn_sgmcmc import h5io, kernels, model, predictive, provenance, sampling, steps
from bnn_sgmcmc.errors import ConfigError, DataError, DivergenceError

# --------------------------------------------------------------------------- the estimator


def test_gradient_equals_blackjax_estimator_with_the_notebooks_functions():
    mlp = model.build([16], 10)
    # Compiled, as the samplers run them (op by op, this test compiled 150 small programs: 10 s on 2 cores).
    params = jax.jit(lambda key: model.init_params(key, mlp, 784))(jax.random.key(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((32, 784), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, 10, 32))

    # The reference notebook's functions: per-example likelihood on one-hot labels,
    # and the prior on the flattened parameters.
    def notebook_loglikelihood(parameters, data):
        xi, yi = data
        return jnp.sum(yi * mlp.apply({"params": parameters}, xi[None])[0])

    def notebook_logprior(parameters):
        flat = jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(parameters)])
        return jnp.sum(norm.logpdf(flat))

    reference = blackjax.sgmcmc.gradients.grad_estimator(notebook_logprior, notebook_loglikelihood, 60000)
    # The SG-MCMC kernels take the gradient of the log-density estimate (bnn_sgmcmc.kernels).
    ours = jax.grad(sampling.log_density_estimator(model.log_prior, model.log_likelihood_fn(mlp), 60000))
    expected = jax.jit(reference)(params, (x, jax.nn.one_hot(y, 10)))
    got = jax.jit(ours)(params, (x, y))
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
        np.testing.assert_allclose(g, e, rtol=2e-4, atol=1e-3)


def test_a_program_traces_the_forward_pass_once_per_input_shape_with_the_same_numbers(monkeypatch):
    """predict_fn is a nested jit: a program that evaluates many sets (the test set, the shifted copies, twice
    under lax.cond) traces Flax's apply once per shape of its inputs, and computes what apply computes."""
    mlp = model.build([8], 10)
    params = model.init_params(jax.random.key(0), mlp, 12)
    predict = model.predict_fn(mlp)
    sets = [jnp.asarray(np.random.default_rng(i).normal(size=(30 if i else 50, 12)), jnp.float32) for i in range(9)]
    calls = []
    traced = model.MLP.__call__
    monkeypatch.setattr(model.MLP, "__call__", lambda self, x: calls.append(x.shape) or traced(self, x))

    def program(p, flag):
        return jax.lax.cond(flag, lambda: [predict(p, x) for x in sets], lambda: [predict(p, x) * 0 for x in sets])

    got = jax.jit(program)(params, True)
    assert sorted(set(calls)) == [(30, 12), (50, 12)] and len(calls) == 2
    for x, log_probs in zip(sets, got):
        np.testing.assert_array_equal(log_probs, mlp.apply({"params": params}, x))


def test_initial_weights_are_flaxs_defaults_and_the_priors_draws_bit_for_bit():
    """The model draws its random weights flat (model.flat_draw, for XLA's CPU compile time): the same numbers as
    Flax's default initialisers and a prior draw of each weight array's own shape, jitted."""
    import flax.linen as nn

    class FlaxDefaults(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(16)(x))
            return nn.log_softmax(nn.Dense(4)(x))

    mlp, x = model.build([16], 4), jnp.zeros((1, 784))

    def prior_draw(key, scale):  # each array drawn in its own shape
        shapes_key, prior_key = jax.random.split(key)
        leaves, treedef = jax.tree.flatten(FlaxDefaults().init(shapes_key, x)["params"])
        keys = jax.random.split(prior_key, len(leaves))
        return jax.tree.unflatten(treedef, [scale * jax.lax.optimization_barrier(jax.random.normal(k, leaf.shape))
                                            for k, leaf in zip(keys, leaves)])

    @jax.jit
    def both_ways(key):  # (ours, theirs), in one program: one compile
        return (
            (model.init_params(key, mlp, 784), FlaxDefaults().init(jax.random.split(key)[0], x)["params"]),
            (model.init_params(key, mlp, 784, "prior", 0.5), prior_draw(key, 0.5)),
        )

    for ours, theirs in both_ways(jax.random.key(7)):
        assert jax.tree.structure(ours) == jax.tree.structure(theirs)
        for got, expected in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            np.testing.assert_array_equal(np.asarray(got).view(np.uint32), np.asarray(expected).view(np.uint32))


# --------------------------------------------------------------------------- batching


def test_epoch_batching_visits_every_example_once_per_epoch():
    """A likelihood whose gradient counts how often each example was in the batch."""
    n, batch = 64, 16
    spec = make_spec("count", kernel="sgld", step_size=1.0, temperature=1e-30)
    log_density = sampling.log_density_estimator(lambda p: 0.0, lambda p, xb, yb: jnp.sum(xb @ p["t"]), n)
    data = sampling.Data(jnp.eye(n, dtype=jnp.float32), jnp.zeros(n))
    counts = {}
    for batching in ("epochs", "replacement"):
        plan = sampling.StepPlan(batch_size=batch, batching=batching, warmup_steps=n // batch, sampling_steps=0,
                                 eval_every=4, thinning=1)
        state, _ = sampling.run_warmup(
            spec, sampling.dynamics(spec, log_density, plan), data, plan, sampling.chain_keys(0, "c", [0]),
            sampling.WarmupState({"t": jnp.zeros((1, n))}, 0), None, None, [0],
        )
        counts[batching] = np.asarray(state.state["t"][0]) / (n / batch)  # each visit adds N/B
    np.testing.assert_allclose(counts["epochs"], np.ones(n), atol=1e-4)
    assert counts["replacement"].sum() == pytest.approx(n) and counts["replacement"].max() > 1.5


def test_a_kernel_of_several_minibatches_a_step_gets_fresh_consecutive_ones():
    """A kernel with batches_per_step K (sghmc_persistent: one per gradient) gets K minibatches a step, stacked;
    with epochs, every example once per epoch of n // (K batch) steps; with replacement, K independent draws."""
    n, batch, per_step = 64, 4, 4
    spec = make_spec("count", kernel="sgld", step_size=1.0)
    data = sampling.Data(jnp.eye(n, dtype=jnp.float32), jnp.zeros(n))
    shapes = []

    def count(key, state, minibatches, step_size, temperature):
        shapes.append(minibatches[0].shape)
        return {"t": state["t"] + minibatches[0].sum(axis=(0, 1))}  # one-hot rows: the visits of each example

    counter = kernels.Kernel(init=lambda p, k: p, step=count, position=lambda s: s, grad_evals_per_step=per_step,
                             batches_per_step=per_step)

    def visits(batch_size: int, batching: str, steps: int) -> np.ndarray:
        plan = sampling.StepPlan(batch_size=batch_size, batching=batching, warmup_steps=steps, sampling_steps=0,
                                 eval_every=4, thinning=1)
        dyn = sampling.dynamics(spec, lambda p, b: 0.0, plan)._replace(kernel=counter)
        state, _ = sampling.run_warmup(spec, dyn, data, plan, sampling.chain_keys(0, "c", [0]),
                                       sampling.WarmupState({"t": jnp.zeros((1, n))}, 0), None, None, [0])
        return np.asarray(state.state["t"][0])

    counts = {batching: visits(batch, batching, 2 * n // (batch * per_step)) for batching in ("epochs", "replacement")}
    assert set(shapes) == {(per_step, batch, n)}
    np.testing.assert_array_equal(counts["epochs"], np.full(n, 2.0))  # two epochs of 4 steps
    assert counts["replacement"].sum() == 2 * n and counts["replacement"].max() > 2
    with pytest.raises(ConfigError, match=r"^sampling.batch_size = 32 with batching: epochs gives each step 4 "
                                          r"minibatches \(128 images\), more than the 64 training images"):
        visits(32, "epochs", 2)


def test_a_kernel_prepares_for_sampling_on_the_whole_training_set_once_per_chain():
    """Kernel.start_sampling gets every chain's state and the whole training set as one batch, scaled as a
    minibatch is (control variates take their centre's full-data gradient there); without it, nothing runs."""
    n = 12
    data = sampling.Data(jnp.arange(2 * n, dtype=jnp.uint8).reshape(n, 2), jnp.arange(n) % 3, scale=0.5)

    def prepare(state, whole):
        x, y = whole
        return {"w": state["w"] + jnp.sum(x) + jnp.sum(y) * 1000}

    spec = make_spec("s", kernel="sgld", step_size=1e-3)
    plan = sampling.StepPlan(batch_size=4, batching="replacement", warmup_steps=1, sampling_steps=1,
                             eval_every=1, thinning=1)
    dyn = sampling.dynamics(spec, lambda p, b: 0.0, plan)
    state = {"w": jnp.asarray([[0.0], [1.0]])}  # two chains
    assert sampling.start_sampling(dyn, data, state) is state
    prepared = sampling.start_sampling(dyn._replace(kernel=dyn.kernel._replace(start_sampling=prepare)), data, state)
    expected = 0.5 * np.arange(2 * n).sum() + 1000 * (np.arange(n) % 3).sum()
    np.testing.assert_allclose(np.asarray(prepared["w"])[:, 0], [expected, expected + 1])


def test_programs_take_data_and_keys_as_arguments_and_embed_none():
    """No data set or key is a constant of a compiled program: one program serves every data set of its shapes."""
    rng = np.random.default_rng(0)
    n, d, k, chains = 64, 5, 3, [0, 1]
    x, y = jnp.asarray(rng.normal(size=(n, d)), jnp.float32), jnp.asarray(rng.integers(0, k, n), jnp.int32)

    def predict(p, inputs):
        return jax.nn.log_softmax(inputs @ p["w"])

    def log_likelihood(p, xb, yb):
        return jnp.take_along_axis(predict(p, xb), yb[:, None], axis=1).sum()

    spec = make_spec("p", kernel="sghmc", step_size=1e-3, num_integration_steps=2)
    plan = sampling.StepPlan(batch_size=16, batching="replacement", warmup_steps=8, sampling_steps=8,
                             eval_every=4, thinning=1)
    dyn = sampling.dynamics(spec, sampling.log_density_estimator(lambda p: -0.5 * jnp.sum(p["w"] ** 2), log_likelihood, n),
                            plan)
    keys = sampling.chain_keys(0, spec.name, chains)
    state = jax.vmap(dyn.kernel.init)({"w": jnp.zeros((len(chains), d, k))}, keys)
    eval_sets = {"test": predictive.EvalSet(x, y, draws=True), "ood": predictive.EvalSet(x[:10], None)}
    acc = predictive.init(eval_sets, len(chains), k)

    def operands(scale, phase, sets):
        return sampling.Operands(sampling.Data(x * scale, y), sampling.phase_keys(keys, phase), sets)

    cases = [
        (sampling.warmup_program(dyn, plan, predict), "warmup", {"test": eval_sets["test"]}, (state,)),
        (sampling.sampling_program(dyn, plan, predict), "sampling", eval_sets, (state, acc, jnp.int32(0))),
    ]
    for program, phase, sets, args in cases:
        args = (*args, jnp.int32(0), jnp.int32(8))
        closed = jax.make_jaxpr(program)(operands(1.0, phase, sets), *args)
        assert sum(np.size(c) for c in closed.consts) == 0, [np.shape(c) for c in closed.consts]
        compiled = sampling._compile(program, operands(1.0, phase, sets), *args)
        other = operands(2.0, phase, sets)
        reused = jax.tree.leaves(compiled.program.func(other, *args))
        fresh = jax.tree.leaves(sampling._compile(program, other, *args).program(*args))
        assert all(np.array_equal(a, b) for a, b in zip(reused, fresh))
        assert not all(np.array_equal(a, b) for a, b in zip(reused, jax.tree.leaves(compiled.program(*args))))


# --------------------------------------------------------------------------- jobs on tiny data


@pytest.mark.parametrize("name", ["sgld", "sghmc"])
def test_same_config_same_arrays_and_a_useful_posterior(data_h5, tmp_path, name):
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
    SAMPLERS runs at its defaults, with a small step."""
    entry = SAMPLERS.get(name, {"kernel": name, "step_size": 1e-4})
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
    with h5py.File(pred, "a") as f:
        f.attrs["schema_version"] = 2
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


def test_progress_bar():
    assert sampling.progress_bar(0, 100, 10) == "[..........]"
    assert sampling.progress_bar(50, 100, 10) == "[#####.....]"
    assert sampling.progress_bar(100, 100, 10) == "[##########]"


def test_the_ensemble_log_predictive_is_exact_where_probabilities_underflow():
    """Three samples give the true class log-probabilities -120, -150 and -200, which are 0 as float32
    probabilities: the accumulated log predictive equals the float64 log-mean-exp, so the NLL is the exact
    121.1 nats (a running mean of probabilities would be 0, and a floor of 1e-12 would report 27.6)."""
    from bnn_sgmcmc import analysis, predictive

    def predict(params, x):  # the same logits for every example
        return jax.nn.log_softmax(jnp.broadcast_to(params["logits"], (x.shape[0], 2)))

    sets = {"test": predictive.EvalSet(jnp.zeros((3, 1)), jnp.array([1, 1, 1]), draws=True)}
    acc = predictive.init(sets, chains=1, num_classes=2)
    for count, gap in enumerate((120.0, 150.0, 200.0), start=1):
        params = {"logits": jnp.array([[0.0, -gap]])}
        acc, metrics = predictive.fold(acc, params, jnp.int32(count), sets, predict)
        np.testing.assert_allclose(metrics["test"]["mean_log_likelihood"], [-gap], rtol=1e-6)
    assert float(jnp.exp(acc["test"].log_probs[0, 0, 1])) == 0.0
    gaps = np.array([120.0, 150.0, 200.0])
    exact = np.logaddexp.reduce(-gaps) - np.log(3)  # float64
    np.testing.assert_allclose(np.asarray(acc["test"].log_probs[0, :, 1], np.float64), exact, rtol=1e-6)
    labels = np.ones(3, np.int64)
    assert analysis.nll(np.asarray(acc["test"].log_probs[0]), labels) == pytest.approx(-exact, rel=1e-6)
    np.testing.assert_allclose(acc["test"].last_log_probs[0, :, 1], -200.0, rtol=1e-6)
    assert metrics["test"]["true_class_log_prob"].dtype == jnp.float16


def test_draws_keep_every_kth_kept_sample():
    assert sampling.draws_every(1000, 1000) == 1 and sampling.draws_every(1000, 300) == 4
    assert sampling.draws_every(100_000, 1000) == 100 and sampling.draws_every(10, 0) == 0
    assert 1000 // sampling.draws_every(1000, 300) <= 300
