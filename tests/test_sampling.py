"""Sampling (bnn_sgmcmc.sampling): the gradient estimate, the forward pass and initial weights, batching, the
compiled programs, progress, the ensemble's log predictive, draws. The jobs built on it: tests/test_steps.py."""

from __future__ import annotations

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import make_spec
from jax.scipy.stats import norm

from bnn_sgmcmc import kernels, model, predictive, sampling
from bnn_sgmcmc.errors import ConfigError

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
