"""The last-layer Laplace approximation (bnn_sgmcmc.kernels.laplace): exact on Bayesian linear regression, the
generalised Gauss-Newton matrix of a softmax network equal to the exact Hessian in its last layer, a
predictive that matches a Monte Carlo estimate from the same Gaussian, drawn independently, and the prior
precision that maximises the marginal likelihood."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from harness import SAMPLING, assert_recovers_gaussian, job, linear_regression, make_spec, regression_network

from bnn_sgmcmc import diagnostics, h5io, kernels, model, sampling, schema
from bnn_sgmcmc.kernels import laplace
from bnn_sgmcmc.plan import sampler_sampling


def test_recovers_a_gaussian_posterior():
    """On Bayesian linear regression the Laplace approximation is the posterior: after training each member to
    the mode (Adam, full batches), its draws have the posterior's mean and covariance (2,048 members, one
    draw each)."""
    assert_recovers_gaussian(make_spec("la", kernel="laplace", step_size=0.05, samples=1), 1000,
                             sampling_steps=1, network=regression_network())


def test_the_precision_is_the_exact_posterior_precision_of_linear_regression():
    """X^T X / noise^2 + I, summed over chunks that do not divide the data (padded with zero features)."""
    x, y, log_prior, log_likelihood, mean, cov = linear_regression()
    params = {"w": jnp.asarray(mean, jnp.float32)}
    for chunk_values in (laplace.CHUNK_VALUES, 7):  # one chunk; chunks of 7 examples, the last one padded
        found = np.asarray(laplace.precision(regression_network(), params, jnp.asarray(x), chunk_values))
        np.testing.assert_allclose(np.linalg.inv(found), cov, rtol=1e-4)


def small_network(hidden=(5,), classes=3, n=40):
    mlp = model.build(hidden, classes)
    params = model.init_params(jax.random.key(0), mlp, 4)
    x = jax.random.normal(jax.random.key(1), (n, 4))
    y = jax.random.randint(jax.random.key(2), (n,), 0, classes)
    return mlp, params, x, y


def test_the_ggn_of_a_softmax_network_is_the_exact_hessian_in_its_last_layer():
    """The logits are linear in the output layer's weights and bias, so the generalised Gauss-Newton matrix plus
    the prior's precision is the exact Hessian of the negative log posterior in them (jax.hessian), in the
    row-major order of the layer's matrix [kernel; bias]; the features reproduce the network's logits."""
    mlp, params, x, y = small_network()
    network = model.last_layer(mlp, prior_scale=0.7)
    np.testing.assert_allclose(jax.nn.log_softmax(network.features(params, x) @ network.last(params)),
                               mlp.apply({"params": params}, x), atol=1e-5)
    logdensity = sampling.log_density_estimator(functools.partial(model.log_prior, prior_scale=0.7),
                                                model.log_likelihood_fn(mlp), len(y))

    def negative_log_posterior(matrix):
        return -logdensity(network.with_last(params, matrix.reshape(6, 3)), (x, y))

    exact = jax.jit(jax.hessian(negative_log_posterior))(network.last(params).reshape(-1))
    found = jax.jit(functools.partial(laplace.precision, network, chunk_values=6 * 9 * 7))(params, x)  # chunks of 7
    np.testing.assert_allclose(np.asarray(found), np.asarray(exact), atol=1e-4)


def test_its_predictive_matches_a_monte_carlo_estimate_from_the_same_gaussian():
    """The kernel's draws' mean predictive (the linearised predictive: the logits are linear in the layer) against
    numpy's own draws from N(mode, P^-1): within 4 standard errors of their difference on every class
    probability. At temperature 4 the draws' covariance is 4 P^-1."""
    mlp, params, x, y = small_network(n=60)
    network = model.last_layer(mlp, prior_scale=1.0)
    logdensity = sampling.log_density_estimator(model.log_prior, model.log_likelihood_fn(mlp), len(y))
    settings = schema.sampler_settings({"kernel": "laplace"})  # prior_precision: model, the default
    kernel = kernels.build("laplace", logdensity, settings, network)
    state = kernel.start_sampling(kernel.init(params, None), (x, y))
    p = np.asarray(laplace.precision(network, params, x), np.float64)
    assert float(state.prior_precision) == 1.0
    keys = jax.random.split(jax.random.key(3), 4000)
    draws = jax.vmap(lambda k: network.last(kernel.position(kernel.step(k, state, None, 0.0, 1.0))))(keys)
    hot = jax.vmap(lambda k: network.last(kernel.position(kernel.step(k, state, None, 0.0, 4.0))))(keys)
    np.testing.assert_allclose(np.cov(np.asarray(hot).reshape(4000, -1).T), 4 * np.linalg.inv(p), atol=0.15)
    features = np.asarray(network.features(params, x), np.float64)

    def predictive(matrices):
        logits = np.einsum("nd,sdk->snk", features, matrices)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        return probs.mean(0), probs.std(0) / np.sqrt(len(matrices))

    rng = np.random.default_rng(4)
    mode = np.asarray(network.last(params), np.float64)
    numpy_draws = rng.multivariate_normal(mode.reshape(-1), np.linalg.inv(p), size=4000).reshape(4000, *mode.shape)
    (ours, se_ours), (theirs, se_theirs) = predictive(np.asarray(draws, np.float64)), predictive(numpy_draws)
    assert np.all(np.abs(ours - theirs) < 4 * np.hypot(se_ours, se_theirs) + 1e-6)
    assert np.abs(ours - theirs).max() > 0  # two independent estimates, not one twice


def test_a_laplace_ensemble_runs_as_a_sampler(data_h5, tmp_path):
    """Warmup trains 2 members; sampling starts from each one's Gaussian and keeps `samples` draws per member,
    which spend no gradient beyond the one full-data pass that forms the precision (512 // 32 = 16 minibatch
    gradients); the draws differ from each other, and the chains' states are the trained weights. Each member's
    prior precision, chosen by its marginal likelihood, is traced and the verdict's note gives it."""
    entry = {"kernel": "laplace", "epochs": 2, "samples": 5, "prior_precision": "marglik"}
    plan = sampler_sampling(SAMPLING, schema.sampler_settings(entry))
    warm = job("warmup", data_h5, tmp_path, "la", chains=(0, 1), sampler_config=entry, sampling=plan)
    out = job("sample", data_h5, tmp_path, "la", chains=(0, 1), sampler_config=entry, sampling=plan, warmup=str(warm))
    arrays, attrs = h5io.read_predictive(str(out), draws=True)
    assert attrs["num_samples"] == 5 and list(arrays["trace"]["grad_evals"]) == [16] * 5
    assert attrs["warmup_grad_evals"] == 2 * (512 // 32)
    accuracy = np.asarray(arrays["trace"]["test"]["pointwise_accuracy"])  # [S, C]
    log_likelihood = np.asarray(arrays["trace"]["test"]["mean_log_likelihood"])
    assert len(np.unique(log_likelihood[:, 0])) == 5 and accuracy.shape == (5, 2)
    chosen = np.asarray(arrays["kernel_trace"]["prior_precision"])  # [S, C]: each member's, at every draw
    assert chosen.shape == (5, 2) and np.all(chosen == chosen[0]) and np.all(np.isfinite(chosen) & (chosen > 0))
    assert chosen[0, 0] != chosen[0, 1]  # per member: each its own mode's evidence
    diversity = diagnostics.member_diversity(arrays["test"]["log_probs"], arrays["test"]["labels"])
    note = diagnostics.member_note(attrs, diversity, arrays["kernel_trace"])
    assert f"output layer's prior precision {chosen[0, 0]:.3g}, {chosen[0, 1]:.3g} (maximising" in note


def test_the_marginal_likelihoods_prior_precision_is_its_stationary_point():
    """With G = lambda I the log evidence's stationary point is closed form, the positive root of delta^2 +
    lambda delta - P lambda / |m|^2 = 0: the grid and MacKay's iteration find it to float32's precision, not
    merely the nearest of the grid's points (0.025 decades, 6 % apart)."""
    size, lam = 60, 7.0
    mode = jnp.linspace(-0.5, 0.5, size, dtype=jnp.float32)
    norm2 = float(np.sum(np.square(np.asarray(mode, np.float64))))
    expected = (-lam + np.sqrt(lam**2 + 4 * size * lam / norm2)) / 2
    found = float(laplace.marglik_precision(lam * jnp.eye(size, dtype=jnp.float32), mode))
    np.testing.assert_allclose(found, expected, rtol=1e-5)


def test_the_prior_precision_maximises_the_evidence_of_a_spread_spectrum():
    """A GGN whose eigenvalues span 7 decades (as a trained network's do): the precision found has the largest
    log evidence, against scipy's bounded search in float64 of the same objective written out in numpy."""
    import scipy.optimize

    rng = np.random.default_rng(0)
    size = 40
    basis, _ = np.linalg.qr(rng.normal(size=(size, size)))
    eigenvalues = 10.0 ** rng.uniform(-3, 4, size)
    g = (basis * eigenvalues) @ basis.T
    mode = rng.normal(0, 0.3, size)

    def negative_evidence(log_delta):
        delta = 10.0**log_delta
        return -(size / 2 * np.log(delta) - delta / 2 * mode @ mode - np.sum(np.log(eigenvalues + delta)) / 2)

    best = scipy.optimize.minimize_scalar(negative_evidence, bounds=(-4, 6), method="bounded",
                                          options={"xatol": 1e-9})
    found = float(laplace.marglik_precision(jnp.asarray(g, jnp.float32), jnp.asarray(mode, jnp.float32)))
    np.testing.assert_allclose(np.log10(found), best.x, atol=1e-3)
    assert negative_evidence(np.log10(found)) <= best.fun + 1e-4 * abs(best.fun)
    nearby = [negative_evidence(best.x + d) for d in (-0.1, 0.1)]
    assert min(nearby) > best.fun  # a maximum, not a flat objective that any answer would pass


def test_marglik_forms_the_factor_with_the_precision_it_chose():
    """prior_precision marglik: the factor is the Cholesky factor of G + delta I for the delta the
    evidence chose, which differs from the model's 1; the draws' covariance follows it."""
    mlp, params, x, y = small_network(n=60)
    network = model.last_layer(mlp, prior_scale=1.0)
    logdensity = sampling.log_density_estimator(model.log_prior, model.log_likelihood_fn(mlp), len(y))
    settings = schema.sampler_settings({"kernel": "laplace", "prior_precision": "marglik"})
    kernel = kernels.build("laplace", logdensity, settings, network)
    state = kernel.start_sampling(kernel.init(params, None), (x, y))
    g = laplace.ggn(network, params, x)
    delta = float(laplace.marglik_precision(g, network.last(params)))
    assert float(state.prior_precision) == delta and abs(np.log10(delta)) > 0.1
    np.testing.assert_allclose(np.asarray(state.factor @ state.factor.T), np.asarray(g) + delta * np.eye(len(g)),
                               rtol=1e-4, atol=1e-4)
    assert kernel.stats(state) == {"prior_precision": state.prior_precision}
    assert kernel.stats(kernel.init(params, None)) == {}  # training traces nothing
