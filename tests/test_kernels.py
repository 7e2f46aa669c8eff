"""The kernel registry and the step-size schedules: a known Gaussian posterior, the thermostat, the
stored results of SGLD and SGHMC from before the registry, cyclical sampling stages, the config checks."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import REPO, snakemake
from test_sampling import data_h5, job, linear_regression, make_spec  # noqa: F401 (data_h5 is a fixture)

from bnn_sgmcmc import config, h5io, kernels, sampling, schedules
from bnn_sgmcmc.errors import ConfigError

CHAINS = list(range(2048))


def run_on_gaussian(spec: sampling.SamplerSpec, steps: int, batch: int | None = None, start: np.ndarray | None = None,
                    chains: list[int] = CHAINS):
    """``chains`` (2,048) chains of ``spec`` on the linear-regression posterior; their final states and dynamics."""
    x, y, log_prior, log_likelihood, mean, cov = linear_regression()
    schedule = sampling.Schedule(batch_size=batch or len(y), batching="replacement" if batch else "epochs",
                                 warmup_steps=steps, sampling_steps=0,
                                 eval_every=min(steps, 500), thinning=1)
    dyn = sampling.dynamics(spec, sampling.log_density_estimator(log_prior, log_likelihood, len(y)), schedule)
    keys = sampling.chain_keys(0, spec.name, chains)
    w0 = jnp.zeros((len(chains), 2)) if start is None else jnp.broadcast_to(jnp.asarray(start, jnp.float32), (len(chains), 2))
    initial = jax.vmap(dyn.kernel.init)({"w": w0}, keys)
    warm, _ = sampling.run_warmup(spec, dyn, sampling.Data(jnp.asarray(x), jnp.asarray(y)), schedule, keys,
                                  sampling.WarmupState(initial, 0), None, None, chains)
    run_on_gaussian.last = warm  # for the kernel statistics
    return warm.state, dyn, mean, cov


GAUSSIAN = [  # (spec, steps, start at the posterior mean, variance tolerance)
    (make_spec("sgld", kernel="sgld", step_size=2.5e-5), 1000, False, 0.12),
    # BlackJAX's SGHMC redraws the momentum every kernel step and moves the position before each
    # gradient kick: its small-step limit inflates the variance by K / (K - 1) for K integration
    # steps (11 % at the default 10); K = 50 keeps it at 2 %.
    (make_spec("sghmc", kernel="sghmc", step_size=1e-3, alpha=5.0, num_integration_steps=50), 400, False, 0.12),
    # Chen et al.'s SGHMC, its momentum carried over: unbiased at the default K = 10 (see the K/(K-1) tests).
    (make_spec("sghmc_persistent", kernel="sghmc_persistent", step_size=2e-3, alpha=5.0, num_integration_steps=5),
     400, False, 0.12),
    # From the mean: from 0 the thermostat first absorbs the potential energy of the fall, and takes
    # longer than the test to relax.
    (make_spec("sgnht", kernel="sgnht", step_size=2e-3, alpha=5.0), 5000, True, 0.12),
    # With decay 0.999 the preconditioner follows the chain slowly and is nearly constant; see the
    # next test for the paper's 0.99.
    (make_spec("psgld", kernel="psgld", step_size=1e-3, decay=0.999), 3000, False, 0.12),
    (make_spec("polynomial", kernel="sgld", step_size=1e-4,
               schedule={"kind": "polynomial", "decay_steps": 100, "gamma": 0.55, "phases": ["warmup"]}), 3000, False, 0.12),
    (make_spec("cyclical", kernel="sgld", step_size=1e-4,
               schedule={"kind": "cyclical", "cycles": 2, "exploration": 0.25, "phases": ["warmup"]}), 2000, False, 0.12),
    # Metropolis-adjusted: exact at any step size, here the one its warmup adapts from 0.01.
    (make_spec("hmc", kernel="hmc", step_size=0.01, num_integration_steps=5), 300, False, 0.12),
]


@pytest.mark.parametrize("spec, steps, from_mean, tolerance", GAUSSIAN, ids=[g[0].name for g in GAUSSIAN])
def test_kernels_and_schedules_recover_a_gaussian_posterior(spec, steps, from_mean, tolerance):
    """Full batches: the chains' end points match the closed-form posterior. With 2,048 independent chains
    the mean's error has a standard deviation of 0.022 posterior standard deviations and the variance's
    3 %: the mean must lie within 0.1 of them and the variance within 12 % (4 standard errors)."""
    *_, posterior_mean, _ = linear_regression()
    state, dyn, mean, cov = run_on_gaussian(spec, steps, start=posterior_mean if from_mean else None)
    draws = np.asarray(dyn.kernel.position(state)["w"])
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(draws.mean(0) - mean) < 0.1 * sd), (draws.mean(0), mean)
    np.testing.assert_allclose(draws.var(0), np.diag(cov), rtol=tolerance)


def test_hmc_adapts_its_step_size_to_the_target_acceptance_and_traces_its_statistics():
    """Dual averaging (BlackJAX's) moves each chain's step size from 0.01 until the acceptance probability
    averages the target; the trace holds every step's step size, acceptance, divergence and energy."""
    spec = make_spec("hmc", kernel="hmc", step_size=0.01, num_integration_steps=5, target_acceptance=0.7)
    state, dyn, mean, cov = run_on_gaussian(spec, 400, chains=list(range(256)))
    trace = run_on_gaussian.last.kernel_trace
    assert trace["step"] == list(range(1, 401)) and set(trace) == {"step", *kernels.module("hmc").STATS}
    acceptance = np.asarray(trace["acceptance_rate"])  # [steps, chains]
    assert acceptance.shape == (400, 256)
    assert float(acceptance[-200:].mean()) == pytest.approx(0.7, abs=0.05)
    step_sizes = np.asarray(trace["step_size"])
    # The posterior's standard deviations are 0.039 and 0.040: the step grows from 0.01 to a few times that.
    assert np.all(step_sizes[0] == pytest.approx(0.01)) and np.all(step_sizes[-1] > 0.02)
    # Dual averaging's iterates jitter around the adapted step, and in two dimensions some cross leapfrog's
    # stability limit (2 standard deviations, 0.078): those diverge (energy error over 1,000), fewer as the
    # jitter shrinks (20 % of the first 50 steps, 7 % of the last 50, measured).
    divergent = np.asarray(trace["divergent"]).mean(axis=1)
    assert divergent[:50].mean() > 2 * divergent[-50:].mean() and np.isfinite(np.asarray(trace["energy"])).all()
    # Sampling uses the averaged step size where warmup ended, fixed.
    final = np.asarray(jax.vmap(lambda s: jnp.exp(s.adaptation.log_step_size_avg))(state))
    assert np.all((final > 0.03) & (final < 0.2)), final


def test_psgld_at_the_papers_decay_is_biased_wide_by_the_term_it_drops():
    """Li et al. (2016) drop the correction term Gamma of a state-dependent preconditioner. With the
    paper's decay of 0.99 the preconditioner follows this small posterior closely, and the variance comes
    out about 18 % too wide (measured); the mean stays right. The README says so."""
    spec = make_spec("psgld", kernel="psgld", step_size=1e-3)
    state, dyn, mean, cov = run_on_gaussian(spec, 3000)
    draws = np.asarray(dyn.kernel.position(state)["w"])
    assert np.all(np.abs(draws.mean(0) - mean) < 0.1 * np.sqrt(np.diag(cov)))
    assert np.all((draws.var(0) / np.diag(cov) > 1.08) & (draws.var(0) / np.diag(cov) < 1.3))


def test_the_thermostat_holds_the_kinetic_energy_at_the_temperature_and_absorbs_gradient_noise():
    """SGNHT (Ding et al. 2014) on minibatches of 20 of 200, drawn with replacement: the gradient noise heats
    the momentum, and the thermostat's friction xi rises (from 6.2 with full batches to 13.6, measured)
    until the mean squared momentum per dimension is back at the temperature, 1, and the posterior right."""
    *_, mean, cov = linear_regression()
    spec = make_spec("sgnht", kernel="sgnht", step_size=2e-3, alpha=5.0)
    chains = list(range(512))
    full, _, _, _ = run_on_gaussian(spec, 5000, start=mean, chains=chains)
    noisy, _, _, _ = run_on_gaussian(spec, 20000, batch=20, start=mean, chains=chains)
    for state in (full, noisy):
        assert float(np.mean(np.asarray(state.momentum["w"]) ** 2)) == pytest.approx(1.0, abs=0.1)
    assert float(np.mean(noisy.xi)) > float(np.mean(full.xi)) + 3
    np.testing.assert_allclose(np.asarray(noisy.position["w"]).var(0), np.diag(cov), rtol=0.15)


# --------------------------------------------------------------------------- SGHMC's K/(K-1) bias


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
    settings = config.sampler_settings({"kernel": kernel, "step_size": step_size, "alpha": alpha,
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


@pytest.mark.parametrize("steps", [2, 10])
def test_blackjax_sghmc_is_wide_by_k_over_k_minus_1_and_the_persistent_kernel_is_not(steps):
    """The issue's table, as tests: N(0, 1), exact gradients, alpha 0.5, step 0.05, 100 time units (sghmc at K = 2
    settles slowly: with 50 its second half fell 8 % short). BlackJAX's sghmc gives the variance of its exact recursion, about K/(K-1) (1.98 at
    K = 2, 1.10 at 10), within 4 standard errors, and at least 10 above 1; the persistent kernel, at the
    same settings and gradients, gives 1 (1 + h^2 / 4 = 1.0006 exactly) within 4."""
    h, alpha, kernel_steps = 0.05, 0.5, 2000 // steps
    expected = exact_variance("sghmc", h, alpha, steps)
    assert expected == pytest.approx(steps / (steps - 1), rel=0.02)
    _, biased = stationary_run("sghmc", h, alpha, steps, kernel_steps)
    assert abs(biased / expected - 1) < 4 * SE and biased > 1 + 10 * SE, (biased, expected)
    assert exact_variance("sghmc_persistent", h, alpha, steps) == pytest.approx(1 + h * h / 4, rel=1e-4)
    state, variance = stationary_run("sghmc_persistent", h, alpha, steps, kernel_steps)
    assert abs(variance - 1) < 4 * SE, variance
    # The carried momentum has the temperature's variance (1 + alpha h / 2 in the discrete chain).
    assert float(np.var(state.momentum["x"])) == pytest.approx(1 + alpha * h / 2, abs=4 * SE)


def test_the_persistent_kernel_samples_the_tempered_posterior():
    """At temperature 2 the persistent kernel's noise doubles the variance (T / curvature), with one
    integration step per kernel step: the momentum carries over between kernel steps, not only within."""
    state, variance = stationary_run("sghmc_persistent", 0.05, 0.5, 1, 1000, temperature=2.0)
    assert variance == pytest.approx(2.0, rel=4 * SE)
    assert float(np.var(state.momentum["x"])) == pytest.approx(2.0, rel=0.05)


def test_the_persistent_kernels_momentum_heats_with_gradient_noise_and_the_job_says_so(caplog):
    """Minibatches of 20 of 200 (with replacement) heat the carried momentum: its traced kinetic temperature
    rises above the temperature, 1, and the posterior widens by about as much (measured: 3.2 against 3.6 and
    2.8), which check_momentum_temperature reports as a warning. With full batches it stays at 1, silently.
    (One integration step per kernel step here; the same number of gradients in steps of ten at the end.)"""
    from bnn_sgmcmc import experiment

    *_, cov = linear_regression()
    chains = list(range(256))
    cases = {"full": (None, 1e-3), "minibatch": (20, 3e-3)}
    late = {}
    for case, (batch, step_size) in cases.items():
        spec = make_spec("persistent", kernel="sghmc_persistent", step_size=step_size, alpha=5.0,
                         num_integration_steps=1)
        caplog.clear()
        state, dyn, _, _ = run_on_gaussian(spec, 4000, batch=batch, chains=chains)
        trace = run_on_gaussian.last.kernel_trace
        assert set(trace) == {"step", "kinetic_temperature", "hottest_kinetic_temperature"}
        assert np.asarray(trace["hottest_kinetic_temperature"]).shape == (4000, len(chains))
        late[case] = experiment.check_momentum_temperature(spec, trace, "warmup")
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        widening = np.asarray(dyn.kernel.position(state)["w"]).var(0) / np.diag(cov)
        if case == "full":
            assert late[case] == pytest.approx(1.0, abs=0.1) and not warned
        else:
            assert late[case] > 2.5 and len(warned) == 1, warned
            assert warned[0].startswith("persistent: the momentum runs hot in warmup: the kinetic temperature of its "
                                        f"hottest weight array averaged {late[case]:.3g}")
            assert "raise alpha, lower step_size or raise sampling.batch_size" in warned[0]
            np.testing.assert_allclose(widening, late[case], rtol=0.35)
    # Ten integration steps a kernel step, each on a fresh minibatch, heat it as much as ten kernel steps of
    # one: reusing one minibatch for all ten, as BlackJAX's sghmc does, heated it to 9.2 here (measured).
    spec = make_spec("persistent", kernel="sghmc_persistent", step_size=3e-3, alpha=5.0, num_integration_steps=10)
    run_on_gaussian(spec, 400, batch=20, chains=chains)
    ten = experiment.check_momentum_temperature(spec, run_on_gaussian.last.kernel_trace, "warmup")
    assert ten == pytest.approx(late["minibatch"], rel=0.2)


# --------------------------------------------------------------------------- results from before the registry

#: The test set's mean log-likelihood of every 8th of 40 kept samples of chain 0 (tests/test_sampling.py's
#: tiny jobs), written by the code before the kernel registry and schedules (commit 1583b92): SGLD and
#: SGHMC must give them still. Bit for bit on the processor that wrote them; the tolerance leaves room
#: for another instruction set's rounding, and is far below any change of the dynamics.
BEFORE = {
    "sgld": [-1.1148810386657715, -0.7223171591758728, -0.9128224849700928, -0.6362749934196472, -1.32516610622406],
    "sghmc": [-1.2634003162384033, -1.1169631481170654, -0.9909162521362305, -1.1804382801055908, -1.0166850090026855],
}


@pytest.mark.parametrize("name", ["sgld", "sghmc"])
def test_sgld_and_sghmc_give_the_results_from_before_the_registry(data_h5, tmp_path, name):  # noqa: F811
    warm = job("warmup", data_h5, tmp_path, name)
    pred = job("sample", data_h5, tmp_path, name, warmup=str(warm))
    trace = h5io.read_arrays(pred)[0]["trace"]["test"]["mean_log_likelihood"][::8, 0]
    np.testing.assert_allclose(trace, BEFORE[name], rtol=1e-4)


# --------------------------------------------------------------------------- schedules


def test_cyclical_schedule_keeps_only_the_sampling_stage_of_each_cycle_and_traces_the_cycle(data_h5, tmp_path):  # noqa: F811
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


def settings_of(entry: dict) -> dict:
    return config.sampler_settings(dict(entry))


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


# --------------------------------------------------------------------------- registry and config checks


def test_every_kernel_of_the_schema_is_registered_and_counts_its_gradients():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    names = schema["properties"]["samplers"]["additionalProperties"]["properties"]["kernel"]["enum"]
    assert tuple(names) == kernels.NAMES
    for name in names:
        assert kernels.grad_evals_per_step(name, settings_of({"kernel": name, "step_size": 1e-3})) >= 1
    assert kernels.grad_evals_per_step("sghmc", settings_of({"kernel": "sghmc", "step_size": 1e-3})) == 10
    with pytest.raises(ValueError, match="registered kernels are sgld, sghmc, sghmc_persistent, sgnht, psgld, hmc"):
        kernels.module("nuts")


@pytest.mark.parametrize("entry, match", [
    ({"kernel": "sgld", "step_size": 1e-3, "alpha": 2.0},
     r"samplers.sampler: 'alpha' is not a setting of kernel sgld.*\(sghmc, sghmc_persistent, sgnht have it\)"),
    ({"kernel": "psgld", "step_size": 1e-3, "num_integration_steps": 3},
     r"'num_integration_steps' is not a setting of kernel psgld.*\(hmc, sghmc, sghmc_persistent have it\)"),
    ({"kernel": "nuts", "step_size": 1e-3}, r"unknown kernel 'nuts'; choose one of sgld, sghmc, sghmc_persistent, sgnht, psgld, hmc"),
    ({"kernel": "sgld", "step_size": 1e-3, "schedule": {"kind": "constant", "gamma": 0.6}},
     r"'gamma' is not a setting of kind constant.*\(polynomial has it\)"),
])
def test_a_key_foreign_to_the_kernel_or_schedule_is_named(entry, match):
    with pytest.raises(ConfigError, match=match):
        config.sampler_settings(entry)


def test_sghmc_with_one_integration_step_is_refused_since_no_gradient_reaches_the_weights():
    """K = 1 is the K/(K-1) table's divergent row: the weights random-walk. The persistent kernel takes it."""
    cfg = config.with_defaults({"samplers": {"s": {"kernel": "sghmc", "step_size": 1e-3, "num_integration_steps": 1}}})
    with pytest.raises(ConfigError, match=r"^samplers.s: kernel sghmc with num_integration_steps 1 never moves the "
                                          r"weights by a gradient.*or kernel sghmc_persistent"):
        config.check(cfg)
    config.check(config.with_defaults({"samplers": {"s": {"kernel": "sghmc_persistent", "step_size": 1e-3,
                                                          "num_integration_steps": 1}}}))


def test_bad_samplers_stop_the_workflow_before_any_job(tmp_path, base_config):
    base_config["data"]["source"] = "synthetic"
    cases = [
        ({"bad": {"kernel": "sgld", "step_size": 1e-3, "alpha": 2.0}},
         "samplers.bad: 'alpha' is not a setting of kernel sgld"),
        ({"bad": {"kernel": "nuts", "step_size": 1e-3}}, "unknown kernel 'nuts'; choose one of sgld, sghmc, sghmc_persistent, sgnht, psgld, hmc"),
        ({"bad": {"kernel": "sgld", "step_size": 1e-3, "schedule": {"kind": "cyclical", "cycles": 1000, "exploration": 0.9}}},
         "samplers.bad.schedule: with 1000 cycles, exploration 0.9 and sampling.thinning 1, none of the 1000"),
    ]
    for samplers, message in cases:
        cfg = dict(base_config, samplers=samplers)
        out = snakemake(tmp_path, "-n", config=cfg)
        assert out.returncode != 0 and message in out.stdout + out.stderr, out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def test_the_sampler_zoo_names_every_kernel_and_schedule_and_plans_one_job_each(tmp_path):
    zoo = REPO / "examples/sampler-zoo.yaml"
    out = snakemake(tmp_path, "-n", configfiles=(zoo,))
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, flags=re.M))
    assert jobs["warmup"] == jobs["sample"] == "7"  # config.yaml's sgld, sghmc and sghmc_persistent join the zoo's four
    merged = yaml.safe_load((REPO / "config.yaml").read_text())["samplers"] | yaml.safe_load(zoo.read_text())["samplers"]
    settings = [config.sampler_settings(entry) for entry in merged.values()]
    # Every SG-MCMC kernel; hmc, whose steps take the whole training set, is the reference posterior's kernel.
    assert {s["kernel"] for s in settings} == set(kernels.NAMES) - {"hmc"}
    assert {s["schedule"]["kind"] for s in settings} == {"constant", "polynomial", "cyclical"}
