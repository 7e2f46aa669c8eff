"""The MAP optimiser (bnn_sgmcmc.kernels.map), a deep ensemble's members: the mode of known posteriors (closed form,
Newton's method), members that differ by their keys alone, one kept draw, its training counted in epochs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from harness import SAMPLING, job, linear_regression, make_spec, run_on_gaussian
from jax.scipy.stats import norm

from bnn_sgmcmc import config, h5io, kernels, sampling, schema
from bnn_sgmcmc.errors import ConfigError
from bnn_sgmcmc.plan import sampler_sampling

CHAINS = list(range(8))


def test_finds_a_known_posterior_mode():
    """Full batches, Adam at 0.05 cosine-decayed over 1,000 steps: every member ends at the linear regression's
    posterior mean (its mode), within a thousandth of a posterior standard deviation, from the origin."""
    spec = make_spec("ens", kernel="map", step_size=0.05)
    state, dyn, mean, cov = run_on_gaussian(spec, 1000, chains=CHAINS)
    found = np.asarray(dyn.kernel.position(state)["w"])
    assert np.all(np.abs(found - mean) < 1e-3 * np.sqrt(np.diag(cov))), (found, mean)


def logistic_regression(n: int = 300):
    """A three-weight Bayesian logistic regression with an N(0, 1) prior, and its posterior mode by Newton's method
    (numpy, independent of the kernel)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ np.array([1.5, -2.0, 0.5]))))).astype(np.float32)
    w = np.zeros(3)
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ w)))
        gradient = x.T @ (y - p) - w
        hessian = -(x.T * (p * (1 - p))) @ x - np.eye(3)
        w = w - np.linalg.solve(hessian, gradient)

    def log_prior(params):
        return jnp.sum(norm.logpdf(params["w"]))

    def log_likelihood(params, xb, yb):
        logits = xb @ params["w"]
        return jnp.sum(yb * logits - jnp.logaddexp(0.0, logits))

    return x, y, log_prior, log_likelihood, w


@pytest.mark.parametrize("optimiser, step_size, batch", [("adam", 0.05, None), ("adam", 0.02, 60), ("sgd", 2e-3, None)])
def test_finds_the_mode_of_a_logistic_regression(optimiser, step_size, batch):
    """Newton's mode of a logistic regression, by Adam on full batches (within 2e-4) and by SGD with momentum,
    in the samplers' units (step_size x gradient). On minibatches of 60 of the 300 points, their noise leaves
    each member a little off the mode: within a fifth of the posterior's standard deviation there (the
    Laplace approximation's), where a posterior draw would lie a whole one away."""
    x, y, log_prior, log_likelihood, mode = logistic_regression()
    p = 1 / (1 + np.exp(-(x @ mode)))
    sd = np.sqrt(np.diag(np.linalg.inv((x.T * (p * (1 - p))) @ x + np.eye(3))))
    spec = make_spec("ens", kernel="map", step_size=step_size, optimiser=optimiser)
    plan = sampling.StepPlan(batch_size=batch or len(y), batching="replacement" if batch else "epochs",
                             warmup_steps=3000, sampling_steps=1, eval_every=500, thinning=1)
    dyn = sampling.dynamics(spec, sampling.log_density_estimator(log_prior, log_likelihood, len(y)), plan)
    keys = sampling.chain_keys(0, spec.name, CHAINS)
    import jax

    initial = jax.vmap(dyn.kernel.init)({"w": jnp.zeros((len(CHAINS), 3))}, keys)
    data = sampling.Data(jnp.asarray(x), jnp.asarray(y))
    warm, _ = sampling.run_warmup(spec, dyn, data, plan, keys, sampling.WarmupState(initial, 0), None, None, CHAINS)
    found = np.asarray(dyn.kernel.position(warm.state)["w"])
    if batch:
        assert np.all(np.abs(found - mode) < 0.2 * sd), (np.abs(found - mode) / sd)
    else:
        np.testing.assert_allclose(found, np.broadcast_to(mode, found.shape), atol=2e-4)


def test_sampling_keeps_the_trained_weights_at_no_cost():
    """A sampling step returns the state as it is, and spends no gradient; training spends one a step."""
    x, y, log_prior, log_likelihood, *_ = linear_regression()
    settings = schema.sampler_settings({"kernel": "map"})
    kernel = kernels.build("map", sampling.log_density_estimator(log_prior, log_likelihood, len(y)), settings)
    state = kernel.init({"w": jnp.asarray([0.3, -0.4])}, None)
    kept = kernel.step(None, state, (jnp.asarray(x), jnp.asarray(y)), 1.0, 1.0)
    np.testing.assert_array_equal(np.asarray(kept.position["w"]), np.float32([0.3, -0.4]))
    assert (kernel.grad_evals_per_step, kernel.warmup_grad_evals_per_step) == (0, 1)
    assert kernels.markov_chain("map") is False


def test_defaults_train_with_adam_under_a_cosine_decay_for_epochs_of_the_training_set():
    settings = schema.sampler_settings({"kernel": "map"})
    assert settings["schedule"] == {"kind": "cosine", "phases": ["warmup"]} and settings["optimiser"] == "adam"
    assert settings["step_size"] == 3e-3 and settings["epochs"] == 20
    # An entry's own schedule and step size win over the kernel's defaults; other kernels keep the schema's.
    own = schema.sampler_settings({"kernel": "map", "step_size": 0.1, "schedule": {"kind": "constant"}})
    assert own["step_size"] == 0.1 and own["schedule"]["kind"] == "constant"
    assert schema.sampler_settings({"kernel": "sgld", "step_size": 1e-5})["schedule"]["kind"] == "constant"
    with pytest.raises(Exception, match="step_size"):
        schema.sampler_settings({"kernel": "sgld"})
    # 60,000 images in minibatches of 512: 117 steps an epoch, as the notebook counts them.
    assert kernels.phase_steps("map", settings, {"batch_size": 512}, 60000) == {
        "sampling_steps": 1, "thinning": 1, "warmup_steps": 20 * 117}
    assert sampler_sampling(dict(SAMPLING, chains=1), settings | {"chains": 5})["chains"] == 5


def test_a_temperature_is_refused():
    cfg = schema.with_defaults({"data": {"source": "synthetic"},
                                "samplers": {"ens": {"kernel": "map", "temperature": 0.5}}})
    with pytest.raises(ConfigError, match=r"samplers.ens: temperature 0.5 does not move the posterior's mode"):
        config.check(cfg)


def members(data_h5, tmp_path, tag, seed=0):
    entry = {"kernel": "map", "epochs": 2}
    plan = sampler_sampling(SAMPLING, schema.sampler_settings(entry))
    warm = job("warmup", data_h5, tmp_path, "ens", chains=(0, 1, 2), tag=tag, sampler_config=entry, sampling=plan,
               seed=seed)
    out = job("sample", data_h5, tmp_path, "ens", chains=(0, 1, 2), tag=tag, sampler_config=entry, sampling=plan,
              seed=seed, warmup=str(warm))
    return h5io.read_predictive(str(out))


def test_members_differ_only_by_their_keys(data_h5, tmp_path):
    """Two runs of one seed are the same ensemble, bit for bit; another seed gives other members; within a run
    each member has its own initial weights and minibatches. Training lasts epochs x n // batch_size steps (2 x
    512 // 32 = 32), and the sampling job keeps one draw per member, at no gradient."""
    (a, attrs), (b, _), (c, _) = (members(data_h5, tmp_path, tag, seed) for tag, seed in (("a", 0), ("b", 0), ("c", 1)))
    np.testing.assert_array_equal(a["test"]["log_probs"], b["test"]["log_probs"])
    assert not np.allclose(a["test"]["log_probs"], c["test"]["log_probs"])
    probs = a["test"]["log_probs"]
    assert not np.allclose(probs[0], probs[1]) and not np.allclose(probs[1], probs[2])
    assert attrs["schedule"]["warmup_steps"] == 32 and attrs["num_samples"] == 1
    assert attrs["warmup_grad_evals"] == 32 and int(a["trace"]["grad_evals"][-1]) == 0
