"""Chain diagnostics on what the model predicts: rank-normalised split R-hat, bulk and tail ESS.

The weights of an MLP are permutation-symmetric (swapping hidden units leaves
the function unchanged), so chains that agree about the predictions can sit in
different weight modes: diagnosing weights would flag them for nothing. We
diagnose predicted quantities instead, traced per kept sample during sampling:
each sample's mean log-likelihood and accuracy on every labelled set, and, in
function space, each sample's probability of the true class of every test
example (Izmailov, Vikram, Hoffman and Wilson, "What are Bayesian neural
network posteriors really like?", ICML 2021).

The statistics are those of Vehtari, Gelman, Simpson, Carpenter and Bürkner
("Rank-normalization, folding, and localization: an improved R-hat for
assessing convergence of MCMC", Bayesian Analysis, 2021), as ArviZ and Stan
compute them by default, from BlackJAX (``blackjax.diagnostics``) in float64:

* each chain's draws are cut into halves, which then count as separate chains
  (an odd middle draw is dropped), so a drifting chain shows as disagreeing
  halves; one chain thus still gets an R-hat, but it can only see drift;
* R-hat is the larger of the split R-hat of the rank-normalised draws (bulk)
  and of the rank-normalised draws folded about their median (tail);
* bulk ESS is the effective sample size of the rank-normalised split draws;
  tail ESS the smaller ESS of the indicators of the 5 % and 95 % quantiles.

A value whose draws are all equal has nothing to diagnose (0/0): it gets NaN.

From these, the diagnostics report's rows of one run (:func:`diagnostics_rows`),
its verdict (:func:`run_verdict`), its least converged test examples, and the
reference's HMC statistics, with the labels and columns of their tables.

A baseline's chains (a deep ensemble's MAP members, a Laplace approximation's
members) are not Markov chains: R-hat and ESS do not apply, and its tables say
:data:`NOT_A_MARKOV_CHAIN` in their place. What does apply is how much the
members disagree on the test set (:func:`member_diversity`).
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnn_sgmcmc import analysis, runs

log = logging.getLogger(__name__)


def _even_draws(draws: np.ndarray) -> np.ndarray:
    """[C, S, ...] as float64 with S even: an odd middle draw dropped, as ArviZ and Stan split chains."""
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"draws must be [chains, samples, ...], got shape {x.shape}")
    if x.shape[1] < 4:
        raise ValueError(f"need at least 4 draws per chain for split diagnostics, got {x.shape[1]}")
    if x.shape[1] % 2:
        x = np.delete(x, x.shape[1] // 2, axis=1)
    return x


@functools.cache
def _all_statistics() -> Callable[..., Any]:
    """R-hat and bulk ESS of [C, S, ...] draws and the ESS of both tail indicators, as one compiled program.

    One program instead of one per statistic: compiling is most of the
    diagnostics job's time for traced quantities (a few hundred values), and
    this compiles once (a third less) and then comes from JAX's persistent cache.
    :func:`rhat`, :func:`ess_bulk` and :func:`ess_tail` each run it too, so the
    statistics tested one by one are those :func:`diagnose` reports.
    """
    import blackjax.diagnostics as bd
    import jax

    def statistics(x, below_low, below_high):
        return bd.rhat(x), bd.ess_bulk(x), bd.effective_sample_size(below_low), bd.effective_sample_size(below_high)

    return jax.jit(statistics)


@functools.cache
def _split_rhat_rows() -> Callable[..., Any]:
    """BlackJAX's split R-hat of rank-normalised rows [b, 2C, S/2] (bulk and folded at once), compiled."""
    import blackjax.diagnostics as bd
    import jax

    def both(bulk, tail):
        return tuple(bd.potential_scale_reduction(z, chain_axis=1, sample_axis=2) for z in (bulk, tail))

    return jax.jit(both)


def rhat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat of [C, S, ...] draws; one value per trailing index (Vehtari et al., 2021)."""
    return _statistics(_even_draws(draws))[0]


def ess_bulk(draws: np.ndarray) -> np.ndarray:
    """Bulk effective sample size of [C, S, ...] draws, all chains together (Vehtari et al., 2021)."""
    return _statistics(_even_draws(draws))[1]


def ess_tail(draws: np.ndarray) -> np.ndarray:
    """Tail effective sample size of [C, S, ...] draws (Vehtari et al., 2021), as ArviZ computes it.

    The smaller ESS of the indicators ``x <= q05`` and ``x <= q95`` over the
    split chains, the quantiles taken over all draws (R's type 7), by
    BlackJAX's ESS estimator. Not ``blackjax.diagnostics.ess_tail``, whose
    upper indicator ``x >= q95`` puts ties at the quantile on the other side
    (its docstring says so): traced accuracies take few values, and there it
    departs from ArviZ. As in ArviZ, an indicator that never changes counts as
    fully effective (its ESS is the number of draws).
    """
    return _statistics(_even_draws(draws))[2]


def _tail_indicators(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The split chains' indicators ``x <= q05`` and ``x <= q95`` of even [C, S, ...] draws, as floats."""
    half = x.shape[1] // 2
    halves = np.concatenate([x[:, :half], x[:, half:]], axis=0)  # split chains, as the estimator wants them
    low, high = np.quantile(x.reshape(-1, *x.shape[2:]), [0.05, 0.95], axis=0)
    return (halves <= low).astype(np.float64), (halves <= high).astype(np.float64)


def _statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-hat, bulk and tail ESS of even [C, S, ...] float64 draws, NaN where every draw is equal."""
    import jax

    below = _tail_indicators(x)
    with jax.enable_x64(True):  # float64 here only: the ranks of 10^4 draws need it
        rhat_, bulk, *tails = (np.asarray(v, dtype=np.float64).reshape(x.shape[2:])
                               for v in _all_statistics()(x, *below))
    sizes = []
    for indicator, value in zip(below, tails):
        fixed = np.all(indicator == indicator[:1, :1], axis=(0, 1))  # never changes: fully effective
        sizes.append(np.where(fixed, indicator.shape[0] * indicator.shape[1], value))
    constant = np.all(x == x[:1, :1], axis=(0, 1))
    return tuple(np.where(constant, np.nan, v) for v in (rhat_, bulk, np.minimum(*sizes)))


@dataclass(frozen=True)
class Diagnosis:
    """R-hat, bulk and tail ESS per traced value; NaN where nothing can be diagnosed."""

    rhat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray


def diagnose(draws: np.ndarray) -> Diagnosis:
    """All three statistics of [C, S, ...] draws (one compiled program); all NaN with fewer than 4 draws per chain."""
    x = np.asarray(draws, dtype=np.float64)
    if x.shape[1] < 4:
        nan = np.full(x.shape[2:], np.nan)
        return Diagnosis(nan, nan, nan)
    return Diagnosis(*_statistics(_even_draws(x)))


# --------------------------------------------------------------------------- function space

#: Draws held in float64 at once by :func:`function_space_rhat` (about 16 MB a copy).
BLOCK_VALUES = 2_000_000


#: E-BFMI below this suggests the momentum resampling explores the energy poorly (Betancourt 2016; ArviZ's advice).
E_BFMI_LOW = 0.3


def e_bfmi(energy: np.ndarray) -> np.ndarray:
    """Energy Bayesian fraction of missing information of each HMC chain (Betancourt 2016), [C, T] -> [C].

    The mean squared change of the energy between transitions over its
    variance, as ArviZ's ``bfmi``: near 1 the momentum resampling moves the
    chain across the energy levels it needs, below 0.3 it does not.
    """
    e = np.atleast_2d(np.asarray(energy, dtype=np.float64))
    if e.shape[1] < 2:
        raise ValueError(f"E-BFMI needs at least 2 transitions per chain, got energy of shape {e.shape}")
    return np.square(np.diff(e, axis=1)).mean(axis=1) / np.var(e, axis=1, ddof=1)


def _twice_ranks(rows: np.ndarray) -> np.ndarray:
    """Twice the 1-based average ranks along the last axis, as integers (ties share the mean of their ranks):
    ``2 * scipy.stats.rankdata(rows, axis=-1)``, as Vehtari et al. rank, about twice as fast."""
    n = rows.shape[-1]
    order = np.argsort(rows, axis=-1)
    ordered = np.take_along_axis(rows, order, axis=-1)
    first = np.ones(rows.shape, dtype=bool)
    first[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    last = np.ones(rows.shape, dtype=bool)
    last[..., :-1] = first[..., 1:]
    index = np.arange(n, dtype=np.int32)
    group_start = np.maximum.accumulate(np.where(first, index, 0), axis=-1)
    group_end = np.flip(np.minimum.accumulate(np.flip(np.where(last, index, n - 1), -1), axis=-1), -1)
    twice = np.empty(rows.shape, dtype=np.int32)
    np.put_along_axis(twice, order, group_start + group_end + 2, axis=-1)
    return twice


def _rank_normalise(rows: np.ndarray) -> np.ndarray:
    """Normal scores of the ranks along the last axis (Blom: Phi^-1((r - 3/8) / (n + 1/4))).

    A rank is a multiple of 1/2 up to n, so the normal scores come from a
    table of the 2n + 1 possible values: the same numbers as evaluating
    Phi^-1 per draw, a tenth of the time.
    """
    from scipy.special import ndtri

    n = rows.shape[-1]
    scores = ndtri((np.arange(2 * n + 1) / 2 - 0.375) / (n + 0.25))
    return scores[_twice_ranks(rows)]


def _block_scores(log_probs: np.ndarray, keep: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, ...]:
    """Examples ``start:stop`` of [D, C, n] log-probabilities: the normal scores of the ranks of their draws
    and of the draws folded about their median, each [b, 2C, D/2], and which examples have one value only."""
    p = np.exp(np.asarray(log_probs[keep, :, start:stop], dtype=np.float64))  # [D, C, b]
    half, c, b = len(keep) // 2, p.shape[1], p.shape[2]
    # Per example, all split chains in a row: [b, 2C * D/2], chain c's first half then its second.
    rows = np.concatenate([p[:half], p[half:]], axis=1).transpose(2, 1, 0).reshape(b, -1)
    folded = np.abs(rows - np.median(rows, axis=1, keepdims=True))
    constant = np.all(rows == rows[:, :1], axis=1)
    return *(_rank_normalise(x).reshape(b, 2 * c, half) for x in (rows, folded)), constant


def function_space_rhat(log_probs: np.ndarray, block_values: int = BLOCK_VALUES, threads: int = 1) -> np.ndarray:
    """R-hat of each test example's true-class probability, from [D, C, n] stored log-probabilities.

    ``log_probs`` is the predictive file's ``draws/test/true_class_log_prob``
    (float16, kept samples first); the probability ``exp(log_probs)`` is
    diagnosed exactly as :func:`rhat` does (equal to it, and to ArviZ, to
    rounding), but with the ranks from NumPy: XLA's CPU sort, which
    ``blackjax.diagnostics.rhat`` runs on, took 8 times as long (4 s against
    0.5 s for 2 million draws on a 2-core VM). The split R-hat of the normal
    scores is BlackJAX's. Examples are taken a block at a time, so the float64
    working set stays near ``block_values`` draws per thread whatever n is:
    8 chains x 1,000 draws x 10,000 examples (160 MB in float16) never
    becomes one 640 MB float64 array. ``threads`` rank that many blocks at
    once (NumPy's sorts and indexing let go of Python's lock); the blocks, and
    so every value, are the same whatever the number. Returns [n], NaN for
    examples whose every draw is equal.
    """
    import jax

    d, c, n = log_probs.shape
    if d < 4:
        return np.full(n, np.nan)
    keep = np.arange(d) if d % 2 == 0 else np.delete(np.arange(d), d // 2)  # as _even_draws
    block = int(max(1, min(n, block_values // (c * len(keep)))))
    out = np.empty(n)

    def finish(start: int, scores: tuple[np.ndarray, ...]) -> None:
        *normal_scores, constant = scores
        b = len(constant)
        # An example whose draws are all equal is 0/0 here: it is set to NaN below, without a warning.
        with jax.enable_x64(True), np.errstate(invalid="ignore", divide="ignore"):
            bulk, tail = (np.asarray(v).reshape(b) for v in _split_rhat_rows()(*normal_scores))
        # fmax: folded draws can be constant where the draws are not (two values, half each).
        out[start:start + b] = np.where(constant, np.nan, np.fmax(bulk, tail))

    starts = range(0, n, block)
    if threads <= 1:
        for start in starts:
            finish(start, _block_scores(log_probs, keep, start, start + block))
        return out
    # At most `threads` blocks ranked at a time (their memory), BlackJAX's R-hat in this thread, in order.
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for start in starts:
            pending.append((start, pool.submit(_block_scores, log_probs, keep, start, start + block)))
            if len(pending) >= threads:
                first, future = pending.popleft()
                finish(first, future.result())
        for first, future in pending:
            finish(first, future.result())
    return out


# --------------------------------------------------------------------------- verdict

@dataclass(frozen=True)
class Verdict:
    """Converged or not, by which criterion, and how far from the ESS target the run is.

    ``more_samples_per_chain`` extrapolates the measured ESS per kept sample
    (ESS grows in proportion to the draws of a stationary chain): the kept
    samples per chain still needed to reach ``ess_target``, 0 when reached,
    None when no ESS could be measured. While R-hat fails, the chains are not
    yet stationary and this is a lower bound.
    """

    converged: bool
    criterion: str
    failures: tuple[str, ...]
    ess_target: float
    more_samples_per_chain: int | None
    more_seconds: float | None
    note: str = ""

    def sentence(self, sampler: str) -> str:
        """The verdict in one line, for the log."""
        head = f"{sampler}: {'converged' if self.converged else 'NOT converged'}"
        parts = [head + (": " + "; ".join(self.failures) if self.failures else f" ({self.criterion})")]
        if self.more_samples_per_chain:
            parts.append(
                f"about {self.more_samples_per_chain:,} more kept samples per chain"
                + (f" (~{self.more_seconds:,.0f} s at the measured rate)" if self.more_seconds is not None else "")
                + f" would reach ESS {self.ess_target:g}"
            )
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


def verdict(
    *,
    rhats: dict[str, float],
    ess: dict[str, float],
    function_space: np.ndarray | None,
    function_space_draws: int,
    chains: int,
    samples_per_chain: int,
    seconds_per_sample: float,
    rhat_threshold: float,
    function_space_share: float,
    ess_per_chain: float,
) -> Verdict:
    """Judge a run by rank-normalised R-hat and bulk/tail ESS of every traced quantity, and in function space.

    ``rhats`` and ``ess`` map each traced quantity to its R-hat and its binding
    (smaller of bulk and tail) ESS, NaN where there was nothing to diagnose;
    ``function_space`` is the R-hat of every test example from
    ``function_space_draws`` draws per chain (None when no draws were
    recorded; fewer than 4 cannot be diagnosed and fail). Converged means: R-hat <= ``rhat_threshold`` and ESS >=
    ``ess_per_chain`` x chains for every quantity, and R-hat <= ``rhat_threshold``
    for at least ``function_space_share`` of the test examples (an example whose
    every draw is equal agrees with itself and counts as converged). Vehtari et
    al. (2021) recommend an ESS of at least 100 per chain.
    """
    target = float(ess_per_chain * chains)
    criterion = (
        f"R-hat <= {rhat_threshold:g} and bulk and tail ESS >= {ess_per_chain:g} per chain on every traced "
        f"quantity; R-hat <= {rhat_threshold:g} on at least {100 * function_space_share:g}% of test examples"
    )
    failures: list[str] = []
    known = {q: r for q, r in rhats.items() if np.isfinite(r)}
    if not known:
        failures.append("no traced quantity could be diagnosed (at least 4 kept samples per chain are needed)")
    elif max(known.values()) > rhat_threshold:
        worst = max(known, key=known.get)
        failures.append(f"R-hat {known[worst]:.3f} > {rhat_threshold:g} ({worst})")
    sizes = {q: e for q, e in ess.items() if np.isfinite(e)}
    least = min(sizes, key=sizes.get) if sizes else None
    if least is not None and sizes[least] < target:
        failures.append(f"ESS {sizes[least]:.1f} < {target:g} ({least})")
    if function_space is None:
        criterion = criterion.rsplit(";", 1)[0] + " (no function-space draws recorded)"
    elif function_space_draws < 4:
        failures.append(f"{function_space_draws} function-space draws per chain are too few for R-hat (at least 4)")
    elif len(function_space):
        share = float(np.mean(~(function_space > rhat_threshold)))  # NaN (constant) counts as agreeing
        if share < function_space_share:
            failures.append(
                f"{100 * share:.1f}% of test examples with R-hat <= {rhat_threshold:g} "
                f"(< {100 * function_space_share:g}%)"
            )
    more = seconds = None
    if least is not None:
        needed = int(np.ceil(samples_per_chain * target / max(sizes[least], 1e-12)))
        more = max(0, needed - samples_per_chain)
        seconds = more * seconds_per_sample if np.isfinite(seconds_per_sample) else None
    note = "one chain: R-hat compares only the chain's two halves, so it sees drift, not chains that disagree" \
        if chains == 1 else ""
    return Verdict(not failures, criterion, tuple(failures), target, more, seconds, note)


def verdict_text(converged: bool | str, failures: str) -> str:
    """A verdict in the summary table's words: ``converged``, or ``not converged:`` and its ``failures``, or
    :data:`NOT_A_MARKOV_CHAIN` where the verdict table says so."""
    if not_a_markov_chain(converged):
        return NOT_A_MARKOV_CHAIN
    return "converged" if converged else f"not converged: {failures}"


# --------------------------------------------------------------------------- one run's report

#: The traced per-sample scalars that are diagnosed, by their trace name: the quantity's label in the tables.
TRACED = {"mean_log_likelihood": "mean log-likelihood", "pointwise_accuracy": "accuracy"}
#: The quantity of the function-space row: the R-hat of every test example's true-class probability.
FUNCTION_SPACE = "true-class probability, every example"
#: The labelled set every run is evaluated on (the predictive file's group), listed first.
TEST_SET = "test"

DIAGNOSTICS_COLUMNS = (
    "sampler", "set", "quantity", "values", "chains", "samples_per_chain", "rhat", "ess_bulk", "ess_tail",
    "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals", "share_rhat_ok", "share_rhat_1.1", "converged",
)
VERDICT_COLUMNS = (
    "sampler", "converged", "chains", "samples_per_chain", "rhat", "ess_bulk", "ess_tail", "ess_target",
    "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals", "fs_examples", "fs_share_rhat_ok", "fs_share_rhat_1.1",
    "member_disagreement", "member_total_variation", "more_samples_per_chain", "suggested_sampling_steps",
    "more_seconds", "failures", "criterion", "note",
)


def _traced_draws(trace: Mapping[str, Any], prefix: str = "") -> dict[tuple[str, str], np.ndarray]:
    """Per (evaluation set, quantity): the draws [C, S] of each traced scalar, for every labelled set."""
    out: dict[tuple[str, str], np.ndarray] = {}
    for key, value in trace.items():
        if not isinstance(value, Mapping):
            continue
        name = f"{prefix}{key}"
        for metric, label in TRACED.items():
            if metric in value:
                out[(name, label)] = np.asarray(value[metric], dtype=np.float64).T
        out |= _traced_draws(value, f"{name}/")
    return out


def _set_order(name: str) -> tuple[bool, str, float]:
    """The test set first, then the shifted sets by kind and level (``shift/rotation_30`` before ``_135``)."""
    kind, _, level = name.rpartition("_")
    try:
        return name != TEST_SET, kind, float(level)
    except ValueError:
        return name != TEST_SET, name, 0.0


def diagnostics_rows(
    name: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any], threshold: float,
    ess_per_chain: float, function_space: np.ndarray | None = None, function_space_share: float = 1.0,
) -> list[dict[str, Any]]:
    """Rank-normalised split R-hat, bulk and tail ESS of every traced quantity of one sampler, with the ESS
    rates per second and per 1,000 gradient evaluations; a last row summarises ``function_space`` (R-hat per
    test example) by the largest R-hat and the shares of examples at most ``threshold`` and 1.1, converged
    when the first share reaches ``function_space_share``. A quantity whose every draw is equal has
    nothing to diagnose: its R-hat, ESS and converged are left empty."""
    chains = int(attrs["chains"])
    grad_evals = chains * int(arrays["trace"]["grad_evals"][-1]) if len(arrays["trace"]["grad_evals"]) else 0
    seconds = runs.sampling_seconds(attrs)
    rows = []
    traced = dict(sorted(_traced_draws(arrays["trace"]).items(), key=lambda kv: _set_order(kv[0][0])))
    samples = next(iter(traced.values())).shape[1] if traced else 0
    # Every traced quantity at once, as the trailing axis: one compiled program per statistic.
    found = diagnose(np.stack(list(traced.values()), axis=-1)) if traced else None
    for i, (set_name, quantity) in enumerate(traced):
        rhat, bulk, tail = (float(found.rhat[i]), float(found.ess_bulk[i]), float(found.ess_tail[i]))
        rows.append({
            "sampler": name, "set": set_name, "quantity": quantity, "values": int(np.isfinite(rhat)),
            "chains": chains, "samples_per_chain": samples, "rhat": rhat, "ess_bulk": bulk, "ess_tail": tail,
            "ess_bulk_per_second": bulk / seconds if seconds > 0 else float("nan"),
            "ess_bulk_per_1k_grad_evals": 1000 * bulk / grad_evals if grad_evals else float("nan"),
            "converged": bool(rhat <= threshold and min(bulk, tail) >= ess_per_chain * chains)
            if np.isfinite(rhat) else None,
        })
    if traced and samples < 4:
        log.warning("%s: %d kept samples per chain are too few for split R-hat and ESS (at least 4).", name, samples)
    if function_space is not None:
        draws = int(arrays["draws"]["step"].shape[0])
        known = function_space[np.isfinite(function_space)]
        row = {"sampler": name, "set": TEST_SET, "quantity": FUNCTION_SPACE, "values": len(known), "chains": chains,
               "samples_per_chain": draws, "converged": False}
        if draws >= 4 and len(function_space):
            share = float(np.mean(~(function_space > threshold)))  # an example whose every draw is equal agrees
            row |= {"rhat": float(known.max()) if len(known) else float("nan"), "share_rhat_ok": share,
                    "share_rhat_1.1": float(np.mean(~(function_space > 1.1))),
                    "converged": share >= function_space_share}
        rows.append(row)
    return rows


def run_verdict(
    name: str, rows: Sequence[Mapping[str, Any]], function_space: np.ndarray | None, arrays: Mapping[str, Any],
    attrs: Mapping[str, Any], threshold: float, function_space_share: float, ess_per_chain: float,
) -> dict[str, Any]:
    """The one-row verdict of a sampler (converged or not, by which criterion, how many more samples)."""
    traced = [r for r in rows if r["quantity"] != FUNCTION_SPACE]
    label = lambda r: f"{r['quantity']} ({r['set']})"  # noqa: E731
    chains, samples = int(attrs["chains"]), int(attrs["num_samples"])
    wall = float(np.max(arrays["trace"]["wall_seconds"][-1])) if samples else float("nan")
    fs = next((r for r in rows if r["quantity"] == FUNCTION_SPACE), {})
    found = verdict(
        rhats={label(r): r["rhat"] for r in traced},
        ess={label(r): float(np.fmin(r["ess_bulk"], r["ess_tail"])) for r in traced},
        function_space=function_space, function_space_draws=int(fs.get("samples_per_chain", 0)),
        chains=chains, samples_per_chain=samples,
        seconds_per_sample=wall / samples if samples else float("nan"),
        rhat_threshold=threshold, function_space_share=function_space_share, ess_per_chain=ess_per_chain,
    )
    (log.info if found.converged else log.warning)("%s", found.sentence(name))
    thinning = int((attrs.get("schedule") or {}).get("thinning", 1))
    worst = lambda key, pick: pick((r[key] for r in traced if np.isfinite(r[key])), default=float("nan"))  # noqa: E731
    return {
        "sampler": name, "converged": found.converged, "chains": chains, "samples_per_chain": samples,
        "rhat": worst("rhat", max), "ess_bulk": worst("ess_bulk", min), "ess_tail": worst("ess_tail", min),
        "ess_target": found.ess_target, "ess_bulk_per_second": worst("ess_bulk_per_second", min),
        "ess_bulk_per_1k_grad_evals": worst("ess_bulk_per_1k_grad_evals", min),
        "fs_examples": fs.get("values"), "fs_share_rhat_ok": fs.get("share_rhat_ok"),
        "fs_share_rhat_1.1": fs.get("share_rhat_1.1"),
        "more_samples_per_chain": found.more_samples_per_chain,
        "suggested_sampling_steps": None if found.more_samples_per_chain is None
        else (samples + found.more_samples_per_chain) * thinning,
        "more_seconds": found.more_seconds, "failures": "; ".join(found.failures), "criterion": found.criterion,
        "note": found.note,
    }


def least_converged(function_space: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` test examples of largest R-hat (NaN, nothing to diagnose, never), largest first."""
    order = np.argsort(-np.nan_to_num(function_space, nan=-np.inf), kind="stable")
    return order[: min(k, int(np.isfinite(function_space).sum()))]


def least_converged_table(
    log_probs: np.ndarray, labels: np.ndarray, function_space: np.ndarray | None, idx: np.ndarray
) -> dict[str, np.ndarray]:
    """The columns of the test examples ``idx`` (of per-chain ``log_probs`` [C, n, K] and ``labels`` [n]):
    label, R-hat, the ensemble's prediction and true-class probability, and the smallest and largest
    per-chain mean of that probability (far apart where the chains disagree)."""
    labels = labels.astype(np.int64)[idx]
    pooled = analysis.ensemble_probs(log_probs)[idx]
    chain_means = np.exp(log_probs[:, idx, labels])  # [C, k]
    return {
        "test_index": idx, "label": labels, "rhat": function_space[idx] if len(idx) else np.zeros(0),
        "predicted": pooled.argmax(axis=1), "ensemble_true_class_prob": pooled[np.arange(len(idx)), labels],
        "chain_mean_min": chain_means.min(axis=0, initial=np.inf), "chain_mean_max": chain_means.max(axis=0, initial=-np.inf),
    }


def hmc_statistics(kernel_trace: Mapping[str, Any]) -> dict[str, float]:
    """An HMC run's traced acceptance rate, share of divergent transitions and step size, each the mean over
    steps and chains, and its E-BFMI, the smallest over chains (one chain that explores its energy badly
    is enough to doubt the run); NaN for what was not traced."""

    def mean(name: str) -> float:
        return float(np.mean(kernel_trace[name])) if name in kernel_trace else float("nan")

    return {
        "acceptance_rate": mean("acceptance_rate"), "divergent_share": mean("divergent"), "step_size": mean("step_size"),
        "e_bfmi": float(np.min(e_bfmi(np.asarray(kernel_trace["energy"]).T)))
        if "energy" in kernel_trace and len(kernel_trace["energy"]) > 1 else float("nan"),
    }


# --------------------------------------------------------------------------- members that are not Markov chains

#: What the diagnostics tables say in place of every R-hat and ESS statistic for a run whose chains are not
#: Markov chains (a baseline's independently trained members, :func:`bnn_sgmcmc.runs.markov_chain`).
NOT_A_MARKOV_CHAIN = "not a Markov chain"
#: The diagnostics table's columns that say :data:`NOT_A_MARKOV_CHAIN` for such a run.
NOT_MARKOV_DIAGNOSTICS = (
    "values", "rhat", "ess_bulk", "ess_tail", "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals", "share_rhat_ok",
    "share_rhat_1.1", "converged",
)
#: The verdict table's columns that say :data:`NOT_A_MARKOV_CHAIN` for such a run.
NOT_MARKOV_VERDICT = (
    "converged", "rhat", "ess_bulk", "ess_tail", "ess_target", "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals",
    "fs_examples", "fs_share_rhat_ok", "fs_share_rhat_1.1", "more_samples_per_chain", "suggested_sampling_steps",
    "more_seconds",
)


def not_a_markov_chain(value: Any) -> bool:
    """Whether a table's cell (a verdict read back from its table) says :data:`NOT_A_MARKOV_CHAIN`."""
    return isinstance(value, str) and value == NOT_A_MARKOV_CHAIN


@dataclass(frozen=True)
class MemberDiversity:
    """How much the C members of a run (its chains, each with its own predictive) disagree on the test set.

    ``disagreement`` [C, C]: the share of test examples on which members i and j predict different classes
    (1 - :func:`bnn_sgmcmc.analysis.agreement`); ``total_variation`` [C, C]: the mean total variation between
    their predictive distributions (:func:`bnn_sgmcmc.analysis.total_variation`); ``spread`` [n]: per test
    example, the largest minus the smallest of the members' probabilities of the true class. Function-space
    diversity, the quantity an ensemble's members are judged by (Fort, Hu and Lakshminarayanan, "Deep
    ensembles: a loss landscape perspective", 2019).
    """

    disagreement: np.ndarray
    total_variation: np.ndarray
    spread: np.ndarray

    @property
    def mean_disagreement(self) -> float:
        """The mean over pairs of members of their disagreement; NaN with one member (no pair)."""
        return _mean_over_pairs(self.disagreement)

    @property
    def mean_total_variation(self) -> float:
        """The mean over pairs of members of their total variation; NaN with one member (no pair)."""
        return _mean_over_pairs(self.total_variation)


def _mean_over_pairs(matrix: np.ndarray) -> float:
    upper = matrix[np.triu_indices(len(matrix), k=1)]
    return float(upper.mean()) if len(upper) else float("nan")


def member_diversity(log_probs: np.ndarray, labels: np.ndarray) -> MemberDiversity:
    """The :class:`MemberDiversity` of per-member test log-probabilities [C, n, K] with ``labels`` [n]."""
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 3 or lp.shape[0] == 0:
        raise ValueError(f"log_probs must be [members, n, K] with at least one member, got shape {lp.shape}")
    probs, members = np.exp(lp), lp.shape[0]
    disagreement, total_variation = np.zeros((members, members)), np.zeros((members, members))
    for i in range(members):
        for j in range(i + 1, members):
            disagreement[i, j] = disagreement[j, i] = 1.0 - analysis.agreement(probs[i], probs[j])
            total_variation[i, j] = total_variation[j, i] = analysis.total_variation(probs[i], probs[j])
    true_class = probs[:, np.arange(lp.shape[1]), np.asarray(labels).astype(np.int64)]  # [C, n]
    return MemberDiversity(disagreement, total_variation, true_class.max(axis=0) - true_class.min(axis=0))


def member_rows(name: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The diagnostics table's rows of a run whose chains are not Markov chains: the rows a Markov chain's run
    has (every traced quantity of every labelled set, and the function space where draws were recorded), with
    :data:`NOT_A_MARKOV_CHAIN` for every statistic, none of which is computed."""
    chains = int(attrs["chains"])
    traced = sorted(_traced_draws(arrays["trace"]).items(), key=lambda kv: _set_order(kv[0][0]))
    quantities = [(set_name, quantity, draws.shape[1]) for (set_name, quantity), draws in traced]
    if "draws" in arrays:
        quantities.append((TEST_SET, FUNCTION_SPACE, int(arrays["draws"]["step"].shape[0])))
    text = dict.fromkeys(NOT_MARKOV_DIAGNOSTICS, NOT_A_MARKOV_CHAIN)
    return [{"sampler": name, "set": set_name, "quantity": quantity, "chains": chains, "samples_per_chain": samples}
            | text for set_name, quantity, samples in quantities]


def member_note(attrs: Mapping[str, Any], diversity: MemberDiversity,
                kernel_trace: Mapping[str, Any] | None = None) -> str:
    """The verdict's note on a run whose chains are not Markov chains: what its members are, their diversity,
    and the prior precision each member's Laplace approximation used where the kernel traces it."""
    chains, samples, kernel = int(attrs["chains"]), int(attrs["num_samples"]), attrs["sampler"]["kernel"]
    draws = f"{samples} kept draw{'s' if samples != 1 else ''} each"
    precision = _prior_precision_text(attrs, (kernel_trace or {}).get("prior_precision"))
    if chains == 1:
        return (f"one member (kernel {kernel}, {draws}), not a Markov chain: R-hat and ESS do not apply, and "
                "with no second member there is no disagreement between members to show" + precision)
    return (f"the {chains} chains are independently trained members (kernel {kernel}, {draws}), not Markov "
            "chains: R-hat and ESS do not apply. Their diversity on the test set is shown instead: mean pairwise "
            f"disagreement {diversity.mean_disagreement:.4f} (share of test examples on which two members predict "
            f"different classes), mean pairwise total variation {diversity.mean_total_variation:.4f}" + precision)


def _prior_precision_text(attrs: Mapping[str, Any], traced: Any) -> str:
    """``; output layer's prior precision ...`` from a ``prior_precision`` trace [steps, chains], or ''."""
    if traced is None or np.asarray(traced).size == 0:
        return ""
    values = np.asarray(traced, dtype=np.float64)[0]
    how = attrs["sampler"].get("prior_precision", "model")  # absent from files of before the setting: the model's
    chosen = ", ".join(f"{v:.3g}" for v in values) if len(values) <= 8 else f"{values.min():.3g} to {values.max():.3g}"
    source = "maximising each member's marginal likelihood" if how == "marglik" else "the model's prior"
    return f"; output layer's prior precision {chosen} ({source})"


def member_verdict(name: str, attrs: Mapping[str, Any], diversity: MemberDiversity,
                   kernel_trace: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The one-row verdict (:data:`VERDICT_COLUMNS`) of a run whose chains are not Markov chains: no R-hat or
    ESS (:data:`NOT_A_MARKOV_CHAIN`), the members' mean pairwise disagreement and total variation instead."""
    note = member_note(attrs, diversity, kernel_trace)
    log.info("%s: %s", name, note)
    return (
        {"sampler": name, "chains": int(attrs["chains"]), "samples_per_chain": int(attrs["num_samples"])}
        | dict.fromkeys(NOT_MARKOV_VERDICT, NOT_A_MARKOV_CHAIN)
        | {"member_disagreement": diversity.mean_disagreement,
           "member_total_variation": diversity.mean_total_variation, "failures": "",
           "criterion": "none: R-hat and ESS judge Markov chains, and these members are independent", "note": note}
    )


def least_agreeing(spread: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` test examples whose members' true-class probabilities spread the most, largest
    first; examples on which every member gives the same probability never."""
    order = np.argsort(-spread, kind="stable")
    return order[: min(k, int(np.sum(spread > 0)))]


def least_agreeing_table(
    log_probs: np.ndarray, labels: np.ndarray, diversity: MemberDiversity, idx: np.ndarray
) -> dict[str, Any]:
    """The columns of :func:`least_converged_table` for the test examples ``idx`` of a run whose chains are not
    Markov chains, its R-hat :data:`NOT_A_MARKOV_CHAIN`, with the members' spread of the true-class
    probability (``member_spread``, by which they are chosen) after it; the per-chain means are the members'."""
    columns = least_converged_table(log_probs, labels, np.full(len(labels), np.nan), idx)
    head = {key: columns.pop(key) for key in ("test_index", "label")}
    del columns["rhat"]
    return head | {"rhat": NOT_A_MARKOV_CHAIN, "member_spread": diversity.spread[idx]} | columns
