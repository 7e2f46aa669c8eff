"""What the kernel, schedule and sampling tests share: a known Gaussian posterior with chains on it, and
tiny warmup and sampling jobs on synthetic data (the ``data_h5`` fixture of conftest.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from bnn_sgmcmc import h5io, sampling, schema, steps
from bnn_sgmcmc.experiment import SamplerJob

# --------------------------------------------------------------------------- a known posterior


def linear_regression(n: int = 200, noise: float = 0.5):
    """A two-weight linear regression with an N(0, 1) prior: its data, log prior, log likelihood, and the
    posterior's mean and covariance in closed form."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = (x @ np.array([0.7, -1.2]) + noise * rng.normal(size=n)).astype(np.float32)
    precision = x.T @ x / noise**2 + np.eye(2)  # N(0, 1) prior
    cov = np.linalg.inv(precision)
    mean = cov @ x.T @ y / noise**2

    def log_prior(w):
        return jnp.sum(norm.logpdf(w["w"]))

    def log_likelihood(w, xb, yb):
        return jnp.sum(norm.logpdf(yb, xb @ w["w"], noise))

    return x, y, log_prior, log_likelihood, mean, cov


def regression_network(noise: float = 0.5):
    """The linear regression's weights as a one-layer "network" (its features the inputs, no bias, one output),
    for a kernel that needs the last layer (``laplace``): its Gaussian likelihood's Hessian is 1 / noise^2."""
    from bnn_sgmcmc import kernels

    return kernels.Network(features=lambda params, x: x, last=lambda params: params["w"][:, None],
                           with_last=lambda params, matrix: {**params, "w": matrix[:, 0]},
                           output_hessian=lambda out: jnp.full((out.shape[0], 1, 1), 1 / noise**2),
                           prior_precision=1.0)


def make_spec(name: str, **entry) -> sampling.SamplerSpec:
    """A sampler as the config would give it: the schema's defaults filled in."""
    return sampling.SamplerSpec(name, schema.sampler_settings(entry))


def settings_of(entry: dict) -> dict:
    return schema.sampler_settings(dict(entry))


CHAINS = list(range(2048))


def run_on_gaussian(spec: sampling.SamplerSpec, steps: int, batch: int | None = None, start: np.ndarray | None = None,
                    chains: list[int] = CHAINS, sampling_steps: int = 0, network=None):
    """``chains`` (2,048) chains of ``spec`` on the linear-regression posterior, ``steps`` warmup steps from 0 (or
    ``start``) with full batches (or minibatches of ``batch``, drawn with replacement); their final states and
    dynamics. With ``sampling_steps``, a sampling phase after warmup (a kernel's ``start_sampling`` first),
    whose final states are returned. ``network``: the last layer, for a kernel that needs it
    (:func:`regression_network`). ``run_on_gaussian.last`` is the last phase's state, with its statistics."""
    x, y, log_prior, log_likelihood, mean, cov = linear_regression()
    plan = sampling.StepPlan(batch_size=batch or len(y), batching="replacement" if batch else "epochs",
                             warmup_steps=steps, sampling_steps=sampling_steps,
                             eval_every=min(steps, 500) or 1, thinning=1)
    dyn = sampling.dynamics(spec, sampling.log_density_estimator(log_prior, log_likelihood, len(y)), plan, network)
    keys = sampling.chain_keys(0, spec.name, chains)
    w0 = jnp.zeros((len(chains), 2)) if start is None else jnp.broadcast_to(jnp.asarray(start, jnp.float32), (len(chains), 2))
    initial = jax.vmap(dyn.kernel.init)({"w": w0}, keys)
    data = sampling.Data(jnp.asarray(x), jnp.asarray(y))
    warm, _ = sampling.run_warmup(spec, dyn, data, plan, keys, sampling.WarmupState(initial, 0), None, None, chains)
    run_on_gaussian.last = warm  # for the kernel statistics
    if not sampling_steps:
        return warm.state, dyn, mean, cov
    sample_plan = dataclasses.replace(plan, eval_every=min(sampling_steps, 500))
    state = sampling.start_sampling(dyn, data, warm.state)
    begun = sampling.new_sampling_state(state, {}, 1)
    done, _ = sampling.run_sampling(spec, dyn, data, sample_plan, keys, begun, {}, lambda p, x: x, chains)
    run_on_gaussian.last = done
    return done.state, dyn, mean, cov


def assert_recovers_gaussian(spec: sampling.SamplerSpec, steps: int, from_mean: bool = False, tolerance: float = 0.12,
                             **run) -> None:
    """Full batches: the chains' end points match the closed-form posterior. With 2,048 independent chains
    the mean's error has a standard deviation of 0.022 posterior standard deviations and the variance's
    3 %: the mean must lie within 0.1 of them and the variance within ``tolerance`` (12 %: 4 standard errors)."""
    *_, posterior_mean, _ = linear_regression()
    state, dyn, mean, cov = run_on_gaussian(spec, steps, start=posterior_mean if from_mean else None, **run)
    draws = np.asarray(dyn.kernel.position(state)["w"])
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(draws.mean(0) - mean) < 0.1 * sd), (draws.mean(0), mean)
    np.testing.assert_allclose(draws.var(0), np.diag(cov), rtol=tolerance)


# --------------------------------------------------------------------------- a standard normal, exact gradients


def exact_variance(kernel: str, step_size: float, alpha: float, steps: int) -> float:
    """The stationary variance of each kernel's chain on N(0, 1) with exact gradients, from its linear recursion
    (numpy and scipy, independent of the kernels' code). An integration step of BlackJAX's ``sghmc`` maps
    (x, p) to (x + h p, (1 - alpha h) p - h x + noise); a kernel step starts from a fresh p ~ N(0, 1) and
    returns x after ``steps`` of them, so x' = a x + e and the variance solves v = a^2 v + var(e). The
    persistent kernel kicks first, p' = (1 - alpha h) p - h x + noise, x' = x + h p': the discrete Lyapunov
    equation of that map gives its joint stationary covariance."""
    import scipy.linalg

    h, noise = step_size, 2 * alpha * step_size
    if kernel == "sghmc":
        move = np.array([[1.0, h], [-h, 1 - alpha * h]])
        m, cov = np.eye(2), np.zeros((2, 2))
        for _ in range(steps):
            m, cov = move @ m, move @ cov @ move.T + noise * np.diag([0.0, 1.0])
        return float((m[0, 1] ** 2 + cov[0, 0]) / (1 - m[0, 0] ** 2))
    move = np.array([[1 - h * h, h * (1 - alpha * h)], [-h, 1 - alpha * h]])
    return float(scipy.linalg.solve_discrete_lyapunov(move, noise * np.outer([h, 1.0], [h, 1.0]))[0, 0])


def stationary_run(kernel: str, step_size: float, alpha: float, steps: int, kernel_steps: int,
                   temperature: float = 1.0, dims: int = 1 << 16):
    """One chain of ``kernel`` on a ``dims``-dimensional standard normal (independent coordinates), exact
    gradients, ``kernel_steps`` kernel steps from a N(0, 1) start: its final state, and the variance of the
    position over the coordinates averaged over the second half of the steps. Each step's variance has a
    standard error of sqrt(2 / dims) of itself; their average, of correlated steps, no more."""
    from bnn_sgmcmc import kernels

    settings = schema.sampler_settings({"kernel": kernel, "step_size": step_size, "alpha": alpha,
                                        "num_integration_steps": steps})
    kernel = kernels.build(kernel, lambda position, batch: -0.5 * jnp.sum(position["x"] ** 2), settings)
    start, init, run = jax.random.split(jax.random.key(0), 3)
    # The log density ignores its data: a placeholder, stacked for a kernel that takes one per gradient.
    data = jnp.zeros((kernel.batches_per_step,) if kernel.batches_per_step > 1 else ())

    @jax.jit
    def chain(state):
        def body(state, key):
            state = kernel.step(key, state, data, step_size, temperature)
            return state, jnp.var(kernel.position(state)["x"])

        return jax.lax.scan(body, state, jax.random.split(run, kernel_steps))

    state, variances = chain(kernel.init({"x": jax.random.normal(start, (dims,))}, init))
    return state, float(np.mean(np.asarray(variances)[kernel_steps // 2:]))


#: The standard error of one step's variance over the 65,536 coordinates, relative to it (0.55 %).
SE = np.sqrt(2 / (1 << 16))


# --------------------------------------------------------------------------- jobs on tiny data

SAMPLING = {
    "batch_size": 32, "batching": "replacement", "warmup_steps": 60, "sampling_steps": 40,
    "eval_every": 10, "thinning": 1, "save_weights_every": 0, "checkpoint_every": 0, "compilation_cache": None,
    "cpu_threads": None, "gpu_autotuning": "default",
}
#: Sampling jobs record function-space draws: 40 kept samples thinned to at most 15 (every 3rd).
EVALUATION = {"draws_per_chain": 15}
SAMPLERS = {
    "sgld": {"kernel": "sgld", "step_size": 5e-4},
    "sghmc": {"kernel": "sghmc", "step_size": 2e-2, "alpha": 2.0, "num_integration_steps": 3},
    "sghmc_persistent": {"kernel": "sghmc_persistent", "step_size": 2e-2, "alpha": 2.0, "num_integration_steps": 3},
    "sgnht": {"kernel": "sgnht", "step_size": 2e-2, "alpha": 2.0},
    "psgld": {"kernel": "psgld", "step_size": 1e-3},
    "hmc": {"kernel": "hmc", "step_size": 1e-3, "num_integration_steps": 3},
    # The baselines: two epochs of training (2 x 512 // 32 = 32 steps), 30 Gaussian draws per member.
    "map": {"kernel": "map", "epochs": 2},
    "laplace": {"kernel": "laplace", "epochs": 2, "samples": 30},
}


def job(kind: str, data_h5: str, tmp_path, name: str = "sgld", chains=(0, 1), tag: str = "a", **overrides):
    """Run the warmup or sample job of ``name`` into ``tmp_path/tag``; return the output path."""
    spec = job_spec(kind, data_h5, tmp_path, name, chains, tag, **overrides)
    getattr(steps, kind)(spec)
    return Path(spec.out)


def job_spec(kind: str, data_h5: str, tmp_path, name: str = "sgld", chains=(0, 1), tag: str = "a",
             **overrides) -> SamplerJob:
    """The :class:`SamplerJob` that :func:`job` runs: sampler ``name`` of :data:`SAMPLERS`, or ``sampler_config``."""
    out = Path(tmp_path) / tag / f"{kind}.h5"
    return SamplerJob(
        data=data_h5, sampler=name, sampler_config=schema.sampler_settings(overrides.pop("sampler_config", None) or SAMPLERS[name]),
        model_config=overrides.pop("model_config", {"hidden": [16], "prior_scale": 1.0, "init": "flax"}),
        sampling_config=SAMPLING | overrides.pop("sampling", {}), seed=overrides.pop("seed", 0),
        chains=list(chains), shard=0, shards=1, checkpoint=str(Path(tmp_path) / tag / f"ckpt-{kind}.h5"), out=str(out),
        warmup=overrides.pop("warmup", None), evaluation=overrides.pop("evaluation", EVALUATION),
    )


def arrays(path):
    return h5io._flatten(h5io.read_arrays(path)[0])


RESULT_ARRAYS = (
    "state", "test/", "trace/test", "trace/sample_step", "trace/grad_evals", "warmup/trace/test_accuracy", "chain",
    "draws/", "kernel_trace/", "warmup/kernel_trace/",
)


def assert_same_results(a, b, exact=True):
    fa, fb = arrays(a), arrays(b)
    assert set(fa) == set(fb)
    for name in fa:
        if name.startswith(RESULT_ARRAYS):
            if exact:
                np.testing.assert_array_equal(fa[name], fb[name], err_msg=name)
            else:
                np.testing.assert_allclose(fa[name], fb[name], rtol=1e-4, atol=1e-5, err_msg=name)
