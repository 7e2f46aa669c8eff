"""Convergence diagnostics: ArviZ's defaults, known answers, function space, the verdict, memory and a run's rows."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats.mstats import mquantiles
from test_report import (
    MEMBER_CLASSES,
    MEMBER_DISAGREEMENT,
    MEMBER_LABELS,
    MEMBER_SPREAD,
    fake_predictive,
    map_diagnostics,
    member_log_probs,
)

from bnn_sgmcmc import diagnostics, h5io

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ArviZ announces its coming refactor on import
    import arviz as az
    from arviz.stats.diagnostics import _autocov, _ess, _ess_bulk, _ess_tail, _rhat_rank, _split_chains, _z_scale


def ar1(shape: tuple[int, ...], rho: float, seed: int) -> np.ndarray:
    """Stationary AR(1) chains [C, S, ...] with unit innovations: ESS -> C S (1 - rho) / (1 + rho)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=shape)
    x = np.zeros(shape)
    x[:, 0] = noise[:, 0] / np.sqrt(1 - rho**2)
    for t in range(1, shape[1]):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x


# --------------------------------------------------------------------------- ArviZ's defaults

FIXTURES = [  # (chains, draws, rho, seed, chain c shifted by c * offset)
    (4, 1000, 0.0, 0, 0.0),
    (4, 1000, 0.9, 1, 0.0),
    (1, 1000, 0.5, 2, 0.0),
    (2, 501, 0.9, 3, 0.0),  # odd: the middle draw is dropped, as ArviZ and Stan split chains
    (8, 200, 0.0, 4, 0.3),  # chains apart
    (3, 400, 0.97, 5, 0.0),
    (4, 300, 0.6, 7, 0.0),
]


def fixture(chains: int, draws: int, rho: float, seed: int, offset: float) -> np.ndarray:
    return ar1((chains, draws), rho, seed) + offset * np.arange(chains)[:, None]


@pytest.mark.parametrize("case", [c for c in FIXTURES if c[0] > 1])  # ArviZ wants 2 chains for R-hat
def test_rhat_equals_arviz_default(case):
    x = fixture(*case)
    assert float(diagnostics.rhat(x)) == pytest.approx(_rhat_rank(x), abs=1e-6)  # ArviZ's array function


def test_rhat_equals_arviz_on_tied_and_vector_draws():
    """Ties (rounded draws) take average ranks; trailing axes are separate quantities."""
    x = np.round(ar1((4, 300, 3), 0.8, 6), 1)
    expected = az.rhat(az.convert_to_dataset({"q": x}))["q"].values  # ArviZ reads [chain, draw, *shape]
    np.testing.assert_allclose(diagnostics.rhat(x), expected, atol=1e-6)


def geyer_differs(series: np.ndarray) -> bool:
    """Whether BlackJAX's ESS estimator departs from Stan's and ArviZ's on this [C, S] series.

    The two differ in Geyer's truncation only: when the autocorrelation pairs
    stay positive to the end of the series (ArviZ stops 3 lags earlier), or when
    the final even-lag term that Stan adds to reduce variance in antithetic
    chains exceeds the last retained pair (BlackJAX caps it by the monotone
    rule; Stan and ArviZ add it as it is). Written after ArviZ's ``_ess``.
    """
    chains, n = series.shape
    acov = _autocov(series, axis=1)
    mean_var = acov[:, 0].mean() * n / (n - 1)
    var_plus = mean_var * (n - 1) / n + (series.mean(axis=1).var(ddof=1) if chains > 1 else 0.0)
    rho = lambda t: 1 - (mean_var - acov[:, t].mean()) / var_plus  # noqa: E731
    seq = np.zeros(n)
    seq[0], seq[1] = 1.0, rho(1)
    even, odd, t = 1.0, seq[1], 1
    while t < n - 3 and even + odd > 0:
        even, odd = rho(t + 1), rho(t + 2)
        if even + odd >= 0:
            seq[t + 1], seq[t + 2] = even, odd
        t += 2
    last = t - 2
    for s in range(1, last - 1, 2):  # the initial monotone sequence
        if seq[s + 1] + seq[s + 2] > seq[s - 1] + seq[s]:
            seq[s + 1] = seq[s + 2] = (seq[s - 1] + seq[s]) / 2
    return t >= n - 3 or (even > 0 and even > seq[last - 1] + seq[last])


def ess_estimators_differ(x: np.ndarray) -> bool:
    """:func:`geyer_differs` on the series that bulk and tail ESS feed to the estimator."""
    low, high = mquantiles(x, [0.05, 0.95], alphap=1, betap=1)  # ArviZ's quantiles (R's type 7)
    return any(geyer_differs(s) for s in (_z_scale(_split_chains(x)), _split_chains(x <= low), _split_chains(x <= high)))


def test_the_ess_estimators_agree_except_in_geyers_truncation():
    """BlackJAX's core ESS estimator against ArviZ's on 120 AR(1) series: equal to rounding wherever
    :func:`geyer_differs` says they should be, and within 10 % where it does not (measured: 12 of the 120
    differ, by 0.04 % to 1.4 %, and 8.5 % for one chain of independent draws)."""
    import blackjax.diagnostics
    import jax

    rng = np.random.default_rng(8)
    agreed = differed = 0
    with jax.enable_x64(True):
        estimate = jax.jit(blackjax.diagnostics.effective_sample_size)
        for i in range(120):
            shape = (int(rng.choice([1, 4])), int(rng.choice([200, 400])))
            x = ar1(shape, float(rng.choice([0.0, 0.3, 0.6, 0.9, 0.97])), 100 + i)
            ours, reference = float(estimate(x)), _ess(x)
            if geyer_differs(x):
                differed += 1
                assert ours == pytest.approx(reference, rel=0.10)
            else:
                agreed += 1
                assert ours == pytest.approx(reference, rel=1e-9)
    assert agreed > 80 and differed > 5  # both cases were exercised


@pytest.mark.parametrize("case", [c for c in FIXTURES if c[1] % 2 == 0])
def test_bulk_and_tail_ess_equal_arviz_default(case):
    """To 1e-6 wherever the estimators coincide (the test above shows where they do not). Even draw
    counts only: with an odd count, ArviZ's tail quantiles also use the middle draw that the split drops."""
    x = fixture(*case)
    if ess_estimators_differ(x):
        pytest.skip("Geyer's truncation differs here: covered by the estimator test above")
    assert float(diagnostics.ess_bulk(x)) == pytest.approx(_ess_bulk(x), rel=1e-6)
    assert float(diagnostics.ess_tail(x)) == pytest.approx(_ess_tail(x), rel=1e-6)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_tail_ess_equals_arviz_on_tied_draws(rho):
    """Draws of a few values (as traced accuracies are): ties at the 95 % quantile count as below it, as in
    ArviZ; BlackJAX's own ess_tail counts them above (its docstring says so) and departs here."""
    x = np.round(ar1((4, 400), rho, 3), 0)
    assert len(np.unique(x)) < 20
    assert float(diagnostics.ess_tail(x)) == pytest.approx(_ess_tail(x), rel=1e-6)
    binary = (ar1((4, 400), rho, 4) > 1.2).astype(float)
    assert float(diagnostics.ess_tail(binary)) == pytest.approx(_ess_tail(binary), rel=1e-6)


def test_most_fixtures_are_compared_with_arviz():
    compared = [c for c in FIXTURES if c[1] % 2 == 0 and not ess_estimators_differ(fixture(*c))]
    assert len(compared) >= 4, compared


# --------------------------------------------------------------------------- known answers


def test_independent_draws_mix_and_count_fully():
    draws = np.random.default_rng(0).normal(size=(4, 2000))
    found = diagnostics.diagnose(draws)
    assert found.rhat == pytest.approx(1.0, abs=0.01)
    assert found.ess_bulk == pytest.approx(8000, rel=0.15) and found.ess_tail == pytest.approx(8000, rel=0.25)


def test_identical_chains_agree():
    """Copies of one well-mixed chain: nothing disagrees, so R-hat is 1."""
    chain = np.random.default_rng(1).normal(size=(1, 2000))
    assert diagnostics.rhat(np.repeat(chain, 4, axis=0)) == pytest.approx(1.0, abs=0.01)


def test_chains_in_different_places_are_flagged():
    draws = np.random.default_rng(2).normal(size=(4, 1000)) + np.arange(4)[:, None]
    assert diagnostics.rhat(draws) > 1.5


def test_chains_of_different_spread_are_flagged_by_the_folded_rhat():
    """Same centre, different scale: the bulk R-hat misses it, the tail (folded) part does not."""
    draws = np.random.default_rng(3).normal(size=(4, 1000)) * np.array([1.0, 1.0, 1.0, 4.0])[:, None]
    assert diagnostics.rhat(draws) > 1.05


def test_a_drifting_single_chain_is_flagged_by_its_halves():
    draws = np.random.default_rng(3).normal(size=(1, 1000)) + np.linspace(0, 4, 1000)
    assert diagnostics.rhat(draws) > 1.2


def test_ess_of_an_autocorrelated_chain():
    """AR(1) with rho = 0.9: bulk ESS = N (1 - rho) / (1 + rho)."""
    rho, n = 0.9, 20000
    assert diagnostics.ess_bulk(ar1((4, n), rho, 4)) == pytest.approx(4 * n * (1 - rho) / (1 + rho), rel=0.2)


def test_constant_values_have_nothing_to_diagnose_and_too_few_draws_are_refused():
    draws = np.random.default_rng(5).normal(size=(2, 400, 3))
    draws[:, :, 1] = 0.5
    found = diagnostics.diagnose(draws)
    assert found.rhat.shape == (3,) and np.isnan(found.rhat[1]) and np.isnan(found.ess_bulk[1])
    assert np.all(np.isfinite(found.rhat[[0, 2]]))
    assert np.all(np.isnan(diagnostics.diagnose(np.zeros((2, 3))).rhat))
    with pytest.raises(ValueError, match="at least 4 draws"):
        diagnostics.rhat(np.zeros((2, 3)))


# --------------------------------------------------------------------------- function space


def test_function_space_rhat_equals_arviz_per_example():
    """Per example, the R-hat of exp(stored float16 log-probabilities), as ArviZ computes it; blocks do not matter
    (beyond rounding)."""
    rng = np.random.default_rng(9)
    logp = np.log(rng.uniform(0.01, 1, size=(301, 3, 40))).astype(np.float16)  # odd draws: middle dropped
    logp[:, 1, :8] -= 1  # chain 1 apart on 8 examples
    logp[:, :, 20] = -0.25  # every draw equal
    got = diagnostics.function_space_rhat(logp, block_values=2000)
    probs = np.exp(logp.astype(np.float64))
    expected = np.array([_rhat_rank(probs[:, :, i].T) for i in range(40)])
    np.testing.assert_allclose(got, expected, atol=1e-10)
    assert np.isnan(got[20])
    # One block: equal to rounding (jax 0.12's XLA vectorises the two batch shapes differently: 1 ulp apart).
    np.testing.assert_allclose(got, diagnostics.function_space_rhat(logp), rtol=1e-14)
    np.testing.assert_allclose(got[:20], diagnostics.rhat(probs[:, :, :20].transpose(1, 0, 2)), atol=1e-10)


def test_function_space_rhat_is_the_same_on_any_number_of_threads():
    """The blocks are ranked on several threads but cut the same way: every value equal bit for bit, constant
    examples included, in blocks that do not divide the examples evenly."""
    rng = np.random.default_rng(13)
    logp = np.log(rng.beta(5, 2, size=(60, 2, 97))).astype(np.float16)
    logp[:, 0, :10] -= 0.5  # chain 0 apart on 10 examples
    logp[:, :, 50] = -0.125
    one = diagnostics.function_space_rhat(logp, block_values=1200)  # blocks of 10 examples, the last of 7
    for threads in (2, 3, 16):
        np.testing.assert_array_equal(diagnostics.function_space_rhat(logp, block_values=1200, threads=threads), one)
    assert np.isnan(one[50]) and np.all(one[:10] > 1.1)


def test_function_space_flags_exactly_the_examples_where_chains_disagree():
    """Four chains of independent draws; on a known subset, one chain sits elsewhere."""
    rng = np.random.default_rng(11)
    probs = rng.beta(5, 2, size=(400, 4, 300))  # [D, C, n]
    apart = np.sort(rng.choice(300, size=30, replace=False))
    probs[:, 2, apart] = rng.beta(2, 5, size=(400, 30))
    rhat = diagnostics.function_space_rhat(np.log(probs).astype(np.float16))
    np.testing.assert_array_equal(np.flatnonzero(rhat > 1.1), apart)
    assert np.all(rhat[np.setdiff1d(np.arange(300), apart)] < 1.02)


def test_identical_chains_agree_in_function_space():
    one = np.random.default_rng(12).beta(5, 2, size=(400, 1, 100))
    rhat = diagnostics.function_space_rhat(np.log(np.repeat(one, 4, axis=1)).astype(np.float16))
    assert np.all(rhat < 1.03) and np.median(rhat) < 1.005  # only the halves of 400 draws differ


MEMORY_PROBE = """
import json, resource, sys
import numpy as np
from bnn_sgmcmc import diagnostics
d, c, n = (int(v) for v in sys.argv[1:4])
rng = np.random.default_rng(0)
log_probs = np.log(rng.uniform(0.05, 1.0, size=(d, c, n))).astype(np.float16)
diagnostics.function_space_rhat(log_probs[:, :, :2])  # imports and first compile, before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rhat = diagnostics.function_space_rhat(log_probs)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"extra_mib": (after - before) / 1024, "finite": int(np.isfinite(rhat).sum())}))
"""


def peak_extra_mib(draws: int, chains: int, examples: int) -> float:
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(draws), str(chains), str(examples)],
                         capture_output=True, text=True, check=True, timeout=600)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["finite"] == examples
    return record["extra_mib"]


def test_function_space_memory_does_not_grow_with_the_test_set():
    """Blocks bound the float64 working set: at 8 chains x 200 draws, 3x the examples (9,000 rather than
    3,000; the float16 input is allocated before the baseline) adds nothing to the peak, which stays at a
    block's working set (about 170 MB measured; one float64 pass over 9,000 examples would take 1 GB).
    The benchmark measures the full 8 x 1,000 x 10,000 case (docs/benchmarks.md)."""
    small, large = peak_extra_mib(200, 8, 3000), peak_extra_mib(200, 8, 9000)
    assert abs(large - small) < 20, (small, large)
    assert large < 300, large


# --------------------------------------------------------------------------- the verdict


def judge(**overrides):
    settings = dict(
        rhats={"q": 1.001}, ess={"q": 5000.0}, function_space=np.full(100, 1.001), function_space_draws=200, chains=4,
        samples_per_chain=1000, seconds_per_sample=0.01, rhat_threshold=1.01, function_space_share=0.99,
        ess_per_chain=100,
    )
    return diagnostics.verdict(**(settings | overrides))


def test_a_run_that_meets_every_criterion_converged():
    found = judge()
    assert found.converged and found.failures == () and found.more_samples_per_chain == 0
    assert found.ess_target == 400 and "converged" in found.sentence("sgld") and found.note == ""


def test_each_failed_criterion_is_named():
    fs = np.full(100, 1.001)
    fs[:5] = 1.5  # 95 % of examples within the threshold
    found = judge(rhats={"a": 1.001, "b": 1.3}, ess={"a": 5000.0, "b": 40.0}, function_space=fs)
    assert not found.converged
    assert found.failures == ("R-hat 1.300 > 1.01 (b)", "ESS 40.0 < 400 (b)",
                              "95.0% of test examples with R-hat <= 1.01 (< 99%)")


def test_more_samples_extrapolate_the_ess_per_kept_sample():
    """ESS 40 from 1,000 samples per chain: 10,000 reach 400, so 9,000 more, at 0.01 s each."""
    found = judge(ess={"q": 40.0})
    assert found.more_samples_per_chain == 9000 and found.more_seconds == pytest.approx(90.0)
    assert "about 9,000 more kept samples per chain (~90 s" in found.sentence("sgld")


def test_constant_examples_agree_and_one_chain_is_said():
    fs = np.full(100, np.nan)  # every draw of every example equal
    found = judge(function_space=fs, chains=1, ess={"q": 5000.0})
    assert found.converged and "halves" in found.note
    assert not judge(function_space=None).criterion.endswith("test examples")


def test_too_few_function_space_draws_fail_rather_than_pass_as_agreeing():
    found = judge(function_space=np.full(100, np.nan), function_space_draws=3)
    assert not found.converged
    assert found.failures == ("3 function-space draws per chain are too few for R-hat (at least 4)",)


def test_e_bfmi_equals_arviz_and_falls_for_energies_that_barely_move():
    """White-noise energies change by their whole spread each transition (E-BFMI near 2); a slow AR(1)
    random walk of the energy (what too short trajectories give) scores far below ArviZ's 0.3."""
    rng = np.random.default_rng(5)
    white = rng.normal(size=(4, 500))
    np.testing.assert_allclose(diagnostics.e_bfmi(white), az.bfmi(white), rtol=1e-12)
    slow = ar1((4, 500), 0.98, seed=6)
    np.testing.assert_allclose(diagnostics.e_bfmi(slow), az.bfmi(slow), rtol=1e-12)
    assert np.all(diagnostics.e_bfmi(white) > 1.5) and np.all(diagnostics.e_bfmi(slow) < diagnostics.E_BFMI_LOW)
    with pytest.raises(ValueError, match="at least 2 transitions"):
        diagnostics.e_bfmi(np.zeros((3, 1)))


# --------------------------------------------------------------------------- diagnostics report


def test_diagnostics_table_reports_every_traced_quantity_with_ess_per_second_and_gradient(tmp_path):
    path = fake_predictive(tmp_path / "p.h5", chains=2, samples=200, grads=10)
    arrays, attrs = h5io.read_predictive(path)
    rng = np.random.default_rng(6)
    arrays["trace"]["test"]["mean_log_likelihood"] = rng.normal(size=(200, 2))
    arrays["trace"]["test"]["pointwise_accuracy"] = rng.uniform(size=(200, 2))
    arrays["trace"]["shift"] = {"rotation_90": {"mean_log_likelihood": rng.normal(size=(200, 2)) + [0, 3]},
                                "rotation_30": {"mean_log_likelihood": rng.normal(size=(200, 2))}}
    attrs["run_seconds"] = 4.0
    rows = diagnostics.diagnostics_rows("sgld", arrays, attrs, threshold=1.01, ess_per_chain=100)
    assert [(r["set"], r["quantity"]) for r in rows] == [
        ("test", "mean log-likelihood"), ("test", "accuracy"),
        ("shift/rotation_30", "mean log-likelihood"), ("shift/rotation_90", "mean log-likelihood"),
    ]
    loglik = rows[0]
    assert loglik["rhat"] == pytest.approx(1.0, abs=0.03) and loglik["ess_bulk"] > 250 and loglik["converged"]
    assert loglik["rhat"] == pytest.approx(float(diagnostics.rhat(arrays["trace"]["test"]["mean_log_likelihood"].T)))
    assert loglik["ess_bulk_per_second"] == pytest.approx(loglik["ess_bulk"] / 4.0)
    assert loglik["ess_bulk_per_1k_grad_evals"] == pytest.approx(1000 * loglik["ess_bulk"] / (2 * 200 * 10))
    assert rows[3]["rhat"] > 1.5 and not rows[3]["converged"]  # its chains sit 3 apart


def test_the_verdict_names_the_worst_quantity_and_the_samples_still_needed(tmp_path, caplog):
    path = fake_predictive(tmp_path / "p.h5", chains=2, samples=200, grads=10)
    arrays, attrs = h5io.read_predictive(path)
    rng = np.random.default_rng(7)
    arrays["trace"]["test"]["mean_log_likelihood"] = np.cumsum(rng.normal(size=(200, 2)), axis=0)  # random walks
    arrays["trace"]["test"]["pointwise_accuracy"] = rng.uniform(size=(200, 2))
    arrays["trace"]["wall_seconds"] = np.repeat(0.01 * np.arange(1, 201)[:, None], 2, 1)
    attrs["schedule"] = {"thinning": 5}
    rows = diagnostics.diagnostics_rows("sgld", arrays, attrs, 1.01, 100)
    found = diagnostics.run_verdict("sgld", rows, None, arrays, attrs, 1.01, 0.99, 100)
    assert not found["converged"] and found["ess_target"] == 200
    assert "(mean log-likelihood (test))" in found["failures"]
    ess = min(rows[0]["ess_bulk"], rows[0]["ess_tail"])
    assert found["more_samples_per_chain"] == int(np.ceil(200 * 200 / ess)) - 200
    assert found["suggested_sampling_steps"] == 5 * (200 + found["more_samples_per_chain"])
    assert found["more_seconds"] == pytest.approx(found["more_samples_per_chain"] * 0.01)
    assert found["fs_share_rhat_ok"] is None  # no function-space row without draws
    assert found["criterion"].endswith("(no function-space draws recorded)")
    assert "sgld: NOT converged" in caplog.text


# --------------------------------------------------------------------------- members that are not Markov chains


def test_members_diversity_on_hand_made_predictions():
    """Three members sure of their classes: disagreement is the share of examples where two predict differently,
    total variation 0.7 on each of those, the spread 0.7 where members give the true class 0.8 and 0.1."""
    found = diagnostics.member_diversity(member_log_probs(MEMBER_CLASSES, repeat=3), np.tile(MEMBER_LABELS, 3))
    np.testing.assert_allclose(found.disagreement, MEMBER_DISAGREEMENT)
    np.testing.assert_allclose(found.total_variation, 0.7 * MEMBER_DISAGREEMENT, rtol=1e-6)
    np.testing.assert_allclose(found.spread, np.tile(MEMBER_SPREAD, 3), atol=1e-6)
    assert found.mean_disagreement == pytest.approx((2 + 3 + 2) / 12)
    assert found.mean_total_variation == pytest.approx(0.7 * 7 / 12, rel=1e-6)
    # The widest spreads first, in test order where tied; examples every member agrees on never.
    assert diagnostics.least_agreeing(found.spread, 3).tolist() == [2, 3, 6]
    assert diagnostics.least_agreeing(found.spread, 100).tolist() == [2, 3, 6, 7, 10, 11]
    one = diagnostics.member_diversity(member_log_probs(MEMBER_CLASSES[:1]), MEMBER_LABELS)
    assert np.isnan(one.mean_disagreement) and np.isnan(one.mean_total_variation) and not one.spread.any()


def test_a_baseline_run_gets_no_rhat_or_ess_but_its_members_diversity(tmp_path, monkeypatch, caplog):
    """A run whose chains are not Markov chains: nothing is diagnosed (BlackJAX is never asked), every R-hat
    and ESS cell says so, and the verdict, figures and least table show how much the members disagree."""

    def refuse(*args, **kwargs):
        raise AssertionError("R-hat or ESS computed for members that are not Markov chains")

    monkeypatch.setattr(diagnostics, "diagnose", refuse)
    monkeypatch.setattr(diagnostics, "function_space_rhat", refuse)
    with caplog.at_level("INFO"):
        _, out = map_diagnostics(tmp_path, monkeypatch)
    table = pd.read_csv(out["table"], sep="\t")
    assert list(table.columns) == list(diagnostics.DIAGNOSTICS_COLUMNS)
    assert table[["set", "quantity"]].values.tolist() == [
        ["test", "mean log-likelihood"], ["test", "accuracy"], ["test", diagnostics.FUNCTION_SPACE]]
    assert (table[list(diagnostics.NOT_MARKOV_DIAGNOSTICS)] == diagnostics.NOT_A_MARKOV_CHAIN).all(axis=None)
    verdict = pd.read_csv(out["verdict_table"], sep="\t").iloc[0]
    assert all(verdict[column] == diagnostics.NOT_A_MARKOV_CHAIN for column in diagnostics.NOT_MARKOV_VERDICT)
    assert verdict["member_disagreement"] == pytest.approx(7 / 12, rel=1e-5)
    assert verdict["member_total_variation"] == pytest.approx(0.7 * 7 / 12, rel=1e-5)
    assert verdict["chains"] == 3 and verdict["samples_per_chain"] == 1 and pd.isna(verdict["failures"])
    assert "independently trained members (kernel map, 1 kept draw each)" in verdict["note"]
    assert "mean pairwise disagreement 0.5833" in caplog.text
    least = pd.read_csv(out["least_table"], sep="\t")
    assert least["test_index"].tolist() == [2, 3, 6, 7, 10, 11]
    assert (least["rhat"] == diagnostics.NOT_A_MARKOV_CHAIN).all()
    np.testing.assert_allclose(least["member_spread"], 0.7, rtol=1e-5)
    np.testing.assert_allclose(least["chain_mean_max"] - least["chain_mean_min"], least["member_spread"], atol=1e-6)
    for key in ("figure", "histogram", "least_figure"):  # drawn, not the one-line "unavailable" figure
        with Image.open(out[key]) as image:
            assert image.size[1] > 150, key


def test_a_single_member_is_said_rather_than_failing(tmp_path, monkeypatch):
    _, out = map_diagnostics(tmp_path, monkeypatch, chains=1)
    verdict = pd.read_csv(out["verdict_table"], sep="\t").iloc[0]
    assert verdict["rhat"] == diagnostics.NOT_A_MARKOV_CHAIN and verdict["note"].startswith("one member")
    assert pd.isna(verdict["member_disagreement"]) and pd.isna(verdict["member_total_variation"])
    assert pd.read_csv(out["least_table"], sep="\t").empty
    for key in ("figure", "histogram", "least_figure"):  # plots.unavailable's one line, 6 x 1.6 inches
        with Image.open(out[key]) as image:
            assert image.size == (360, 96), key


def test_the_summary_verdict_of_a_baseline():
    assert diagnostics.verdict_text(diagnostics.NOT_A_MARKOV_CHAIN, "") == diagnostics.NOT_A_MARKOV_CHAIN
    assert diagnostics.verdict_text(False, "R-hat 1.2 > 1.01") == "not converged: R-hat 1.2 > 1.01"
    assert diagnostics.verdict_text(True, "") == "converged"
