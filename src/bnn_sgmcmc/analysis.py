"""Report numbers from posterior-predictive probabilities.

Every function here takes the per-example predictive probabilities ``probs``
[n, K] (each row the mean over kept weight samples, so it sums to 1), or for
the log score their logarithms ``log_probs``, and, where needed, the true
``labels`` [n] in 0..K-1, and returns plain numbers, numpy
arrays or small frozen dataclasses: accuracy, confidence and the notebook's
"certain" share, threshold and accuracy-rejection curves, proper scoring rules
(NLL, Brier), reliability and ECE, the entropy split into aleatoric and
epistemic parts, AUROC for out-of-distribution detection, and decisions that
minimise the posterior expected cost under a cost matrix; and, built on these,
the report's per-set scores, predictors, OOD scores, decision rows and
agreement with a reference posterior, with the labels their tables share.
Nothing here reads files, plots or needs JAX.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ARGMAX",
    "BAYES_LAST_SAMPLE",
    "BAYES_POSTERIOR",
    "DecisionResult",
    "ENSEMBLE",
    "LAST_SAMPLE",
    "LAST_SAMPLE_ENTROPY",
    "MUTUAL_INFORMATION",
    "OOD_SCORES",
    "PREDICTIVE_ENTROPY",
    "REFERENCE_MEASURES",
    "RejectionCurve",
    "Reliability",
    "SHIFT_METRICS",
    "ThresholdCurve",
    "accuracy",
    "against_reference",
    "agreement",
    "auroc",
    "bayes_decisions",
    "brier",
    "calibration_scores",
    "certain_share",
    "chain_ensemble",
    "confidence",
    "costly_pairs",
    "decision_rows",
    "default_thresholds",
    "check_costs",
    "ece",
    "ensemble_probs",
    "entropy",
    "evaluate_decisions",
    "expected_costs",
    "mean_scores",
    "most_uncertain",
    "mutual_information",
    "nll",
    "noise_floor",
    "ood_scores",
    "pool_chains",
    "pool_log_chains",
    "predictors",
    "realised_costs",
    "rejection_curve",
    "reliability",
    "shift_scores",
    "summary",
    "threshold_curve",
    "threshold_decisions",
    "total_variation",
    "uncertain_per_class",
]


def _check_probs(probs: np.ndarray) -> np.ndarray:
    """``probs`` as float64 [n, K] with n, K >= 1 and finite entries, or ValueError."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D [n, K], got shape {p.shape}")
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probs must have at least one example and one class, got shape {p.shape}")
    # A diverged chain shows up as NaN here; every number below would silently be NaN too.
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contain NaN or infinite values")
    return p


def _check(
    probs: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(probs, labels)``: float64 [n, K] and int64 [n] with labels in 0..K-1."""
    p = _check_probs(probs)
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D [n], got shape {y.shape}")
    if y.shape[0] != p.shape[0]:
        raise ValueError(
            f"labels length mismatch: {y.shape[0]} labels for {p.shape[0]} rows of probs"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if num_classes is not None and num_classes != p.shape[1]:
        raise ValueError(f"num_classes is {num_classes} but probs have {p.shape[1]} classes")
    k = p.shape[1]
    if y.min() < 0 or y.max() >= k:
        raise ValueError(
            f"labels out of range: must lie in 0..{k - 1}, got min {y.min()} and max {y.max()}"
        )
    return p, y.astype(np.int64)


def confidence(probs: np.ndarray) -> np.ndarray:
    """Top predictive probability of each example, ``max_k p[i, k]`` [n]."""
    return _check_probs(probs).max(axis=1)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of examples whose arg-max class (first one on ties) equals the label."""
    p, y = _check(probs, labels)
    return float(np.mean(p.argmax(axis=1) == y))


def certain_share(probs: np.ndarray, threshold: float) -> float:
    """Share of examples whose top probability is strictly greater than ``threshold``.

    These are the reference notebook's "certain" predictions.
    """
    return float(np.mean(confidence(probs) > threshold))


def uncertain_per_class(
    probs: np.ndarray, labels: np.ndarray, threshold: float, num_classes: int
) -> np.ndarray:
    """Count, per true label, of examples whose top probability is <= ``threshold``.

    The complement of :func:`certain_share`; returns int64 [num_classes].
    """
    p, y = _check(probs, labels, num_classes)
    uncertain = p.max(axis=1) <= threshold
    return np.bincount(y[uncertain], minlength=num_classes).astype(np.int64)


def most_uncertain(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` examples with the lowest top probability.

    Ordered by ascending top probability, ties by ascending index; ``k`` larger
    than n returns all n indices.
    """
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    return np.argsort(confidence(probs), kind="stable")[:k]


@dataclass(frozen=True)
class ThresholdCurve:
    """Per threshold t: accuracy on examples with top probability >= t, and the share dropped."""

    thresholds: np.ndarray
    accuracy_kept: np.ndarray
    dropped_share: np.ndarray


def default_thresholds(n: int = 90) -> np.ndarray:
    """``n`` evenly spaced thresholds from 0.1 to 1.0 inclusive."""
    return np.linspace(0.1, 1.0, n)


def threshold_curve(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray
) -> ThresholdCurve:
    """Accuracy on the kept examples (top probability >= t) and the dropped share, per t.

    ``accuracy_kept`` is NaN at thresholds that keep no example; ``dropped_share``
    is the share of all n examples with top probability < t.
    """
    p, y = _check(probs, labels)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"thresholds must be 1-D, got shape {t.shape}")
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    kept = conf[None, :] >= t[:, None]  # [T, n]
    n_kept = kept.sum(axis=1)
    n_correct = (kept & correct[None, :]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n_kept > 0, n_correct / n_kept, np.nan)
    return ThresholdCurve(
        thresholds=t,
        accuracy_kept=acc,
        dropped_share=1.0 - n_kept / conf.shape[0],
    )


@dataclass(frozen=True)
class RejectionCurve:
    """Accuracy of the k most confident examples at coverage k/n, k = 1..n, and the AURC."""

    coverage: np.ndarray
    accuracy: np.ndarray
    aurc: float


def rejection_curve(probs: np.ndarray, labels: np.ndarray) -> RejectionCurve:
    """Accuracy-rejection curve and area under the risk-coverage curve (AURC).

    Examples are ranked by confidence, descending (ties by ascending index). For
    k = 1..n, ``coverage[k-1] = k/n`` and ``accuracy[k-1]`` is the accuracy of the
    k most confident. ``aurc = mean_k (1 - accuracy[k-1])``, the mean selective
    risk (Geifman & El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep
    Neural Classifiers", ICLR 2019); lower is better. A perfect ranking of a
    classifier with m errors among n gives ``m/n - (n-m)/n * (H_n - H_{n-m})``
    (H the harmonic numbers), about ``r + (1-r) ln(1-r)`` for error rate r.
    """
    p, y = _check(probs, labels)
    n = p.shape[0]
    # Stable sort on the negated confidence keeps equal confidences in index order.
    order = np.argsort(-p.max(axis=1), kind="stable")
    correct = (p.argmax(axis=1) == y)[order]
    k = np.arange(1, n + 1)
    acc = np.cumsum(correct) / k
    return RejectionCurve(coverage=k / n, accuracy=acc, aurc=float(np.mean(1.0 - acc)))


def nll(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels, ``mean_i -log_probs[i, y_i]``, in nats.

    The logarithmic score (Good, 1952; Gneiting and Raftery, 2007) from
    log-probabilities, with no floor: a true-class probability of 1e-40, which
    is 0 in float32, scores its exact 92.1 nats instead of a capped value.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    _, y = _check(np.exp(lp), labels)
    return float(-np.mean(lp[np.arange(lp.shape[0]), y]))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score, ``mean_i sum_k (p[i, k] - [y_i == k])^2``, in 0..2 (Brier, 1950)."""
    p, y = _check(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


@dataclass(frozen=True)
class Reliability:
    """Reliability diagram: per confidence bin, count, accuracy and mean confidence; and the ECE.

    ``accuracy`` and ``confidence`` are NaN in empty bins.
    """

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    ece: float


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> Reliability:
    """Reliability diagram over ``bins`` equal-width confidence bins on [0, 1], and the ECE.

    Bin b is [edges[b], edges[b+1]), except the last, which also holds confidence
    1.0. ``ece = sum_b (n_b / n) * |accuracy_b - confidence_b|`` over non-empty
    bins (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    p, y = _check(probs, labels)
    n = p.shape[0]
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Comparing against the edges themselves (not floor(conf * bins)) makes a confidence
    # equal to an edge land in the upper bin without floating-point surprises.
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    counts = np.bincount(idx, minlength=bins)
    sum_correct = np.bincount(idx, weights=correct, minlength=bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=bins)
    nonempty = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(nonempty, sum_correct / counts, np.nan)
        mean_conf = np.where(nonempty, sum_conf / counts, np.nan)
    gap = np.abs(acc[nonempty] - mean_conf[nonempty])
    ece_value = float(np.sum(counts[nonempty] / n * gap))
    return Reliability(
        edges=edges,
        counts=counts.astype(np.int64),
        accuracy=acc,
        confidence=mean_conf,
        ece=ece_value,
    )


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error with ``bins`` equal-width bins; see :func:`reliability`."""
    return reliability(probs, labels, bins).ece


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats along the last axis, ``-sum_k p_k log p_k``, with 0 log 0 = 0."""
    p = np.asarray(probs, dtype=np.float64)
    log_p = np.log(p, out=np.zeros_like(p), where=p > 0)
    return -np.sum(p * log_p, axis=-1)


def mutual_information(probs: np.ndarray, mean_entropy: np.ndarray) -> np.ndarray:
    """Epistemic uncertainty, ``H[mean_s p_s] - mean_s H[p_s]``, clipped at 0 from below.

    ``probs`` is the mean predictive over samples, ``mean_entropy`` the mean of the
    per-sample entropies, with shape ``probs.shape[:-1]``. This is the mutual
    information between the label and the weights (Depeweg et al., ICML 2018).
    """
    p = np.asarray(probs, dtype=np.float64)
    h = np.asarray(mean_entropy, dtype=np.float64)
    if h.shape != p.shape[:-1]:
        raise ValueError(
            f"mean_entropy shape {h.shape} does not match probs shape {p.shape} "
            "without its class axis"
        )
    # Jensen makes the difference >= 0 exactly; running means in float32 can undershoot by rounding.
    return np.maximum(entropy(p) - h, 0.0)


def pool_chains(probs: np.ndarray) -> np.ndarray:
    """Pooled predictive of C chains with equal sample counts: the mean over the chains axis.

    Takes [C, n, K] and returns [n, K]; the same holds for per-chain mean
    entropies [C, n], which pool to [n].
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim not in (2, 3):
        raise ValueError(
            f"probs must have a leading chains axis, [C, n, K] or [C, n]; got shape {p.shape}"
        )
    if p.shape[0] == 0:
        raise ValueError("probs have no chains (the chains axis has length 0)")
    return p.mean(axis=0)


def pool_log_chains(log_probs: np.ndarray) -> np.ndarray:
    """:func:`pool_chains` in log space: ``log mean_c exp(log_probs[c])`` over the chains axis, [C, n, K] -> [n, K]."""
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 3 or lp.shape[0] == 0:
        raise ValueError(f"log_probs must be [C, n, K] with C >= 1, got shape {lp.shape}")
    return np.logaddexp.reduce(lp, axis=0) - np.log(lp.shape[0])


def ensemble_probs(log_probs: np.ndarray) -> np.ndarray:
    """The ensemble of all chains as probabilities [n, K]: :func:`pool_log_chains` of [C, n, K], exponentiated."""
    return np.exp(pool_log_chains(log_probs))


def agreement(probs: np.ndarray, reference: np.ndarray) -> float:
    """Share of examples whose most probable class is the same under ``probs`` and ``reference`` (both [n, K]).

    Izmailov, Vikram, Hoffman and Wilson (2021), section 5: how often an
    approximate posterior's predictive picks the reference posterior's class.
    Ties go to the lower class index in both, as ``argmax`` breaks them.
    """
    p, q = _check_probs(probs), _check_probs(reference)
    if p.shape != q.shape:
        raise ValueError(f"probs {p.shape} and reference {q.shape} must have the same shape [n, K]")
    return float(np.mean(p.argmax(axis=-1) == q.argmax(axis=-1)))


def total_variation(probs: np.ndarray, reference: np.ndarray) -> float:
    """Mean over examples of the total variation distance, ``1/2 sum_k |p_k - q_k|``, between two [n, K]
    predictive distributions (Izmailov et al. 2021): 0 when equal, 1 when disjoint."""
    p, q = _check_probs(probs), _check_probs(reference)
    if p.shape != q.shape:
        raise ValueError(f"probs {p.shape} and reference {q.shape} must have the same shape [n, K]")
    return float(np.mean(0.5 * np.abs(p - q).sum(axis=-1)))


def summary(
    log_probs: np.ndarray, labels: np.ndarray, threshold: float = 0.95, bins: int = 15
) -> dict[str, float]:
    """Headline numbers from log-probabilities: accuracy, nll, brier, ece, certain_share and aurc, as floats.

    ``certain_share`` uses ``threshold`` and ``ece`` uses ``bins``, as in the functions so named.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    p, y = _check(np.exp(lp), labels)
    return {
        "accuracy": accuracy(p, y),
        "nll": nll(lp, y),
        "brier": brier(p, y),
        "ece": ece(p, y, bins),
        "certain_share": certain_share(p, threshold),
        "aurc": rejection_curve(p, y).aurc,
    }


# --------------------------------------------------------------------------- predictors and their scores

#: The predictors a set is scored by (:func:`predictors`): all chains pooled, and each chain's last sample.
ENSEMBLE = "ensemble"
LAST_SAMPLE = "last sample"


def chain_ensemble(chain: int) -> str:
    """The name of one chain's own ensemble as a predictor."""
    return f"chain {int(chain)} ensemble"


def predictors(
    log_probs: np.ndarray, last_log_probs: np.ndarray, chains: np.ndarray | None = None
) -> dict[str, list[np.ndarray]]:
    """The predictors a set is scored by, as log-probabilities, from its per-chain ``log_probs`` and
    ``last_log_probs`` [C, n, K]: the ensemble of all chains pooled, each chain's last sample (a list, to
    average over) and, given the ``chains``' numbers, each chain's own ensemble."""
    out = {ENSEMBLE: [pool_log_chains(log_probs)], LAST_SAMPLE: list(last_log_probs)}
    if chains is not None and log_probs.shape[0] > 1:
        for c, chain in enumerate(chains):
            out[chain_ensemble(chain)] = [log_probs[c]]
    return out


def calibration_scores(log_probs: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, float]:
    """Accuracy, NLL, Brier score and ECE (``bins`` bins) of one predictor's [n, K] log-probabilities."""
    return {"accuracy": accuracy(np.exp(log_probs), labels), "nll": nll(log_probs, labels),
            "brier": brier(np.exp(log_probs), labels), "ece": ece(np.exp(log_probs), labels, bins)}


#: The metrics of the shift table, in its order (:func:`shift_scores`).
SHIFT_METRICS = ("accuracy", "nll", "ece", "mean entropy")


def shift_scores(log_probs: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, float]:
    """Accuracy, NLL, ECE (``bins`` bins) and mean predictive entropy of one predictor's [n, K] log-probabilities."""
    probs = np.exp(log_probs)
    return {"accuracy": accuracy(probs, labels), "nll": nll(log_probs, labels),
            "ece": ece(probs, labels, bins), "mean entropy": float(np.mean(entropy(probs)))}


def mean_scores(scores: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each score averaged over a predictor's members (the chains' last samples), in the first one's order."""
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}


# --------------------------------------------------------------------------- out-of-distribution detection


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve for telling out-of-distribution examples by a higher score.

    The probability that a random out-of-distribution example scores above a
    random in-distribution one, ties counting half (the Mann-Whitney statistic):
    1.0 separates perfectly, 0.5 is chance.
    """
    a = np.asarray(in_scores, dtype=np.float64).ravel()
    b = np.asarray(out_scores, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError(f"auroc needs examples on both sides, got {a.size} in and {b.size} out")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("scores contain NaN or infinite values")
    # For each OOD score, the in-distribution scores below it and half those equal to it (Mann-Whitney's U),
    # counted in the sorted in-distribution scores: the rank sum without ranking, and without importing
    # scipy.stats (2 to 3 s of the OOD job's start-up). Half-integer sums below 2^53: exact in float64.
    ordered = np.sort(a)
    below = np.searchsorted(ordered, b, side="left")
    not_above = np.searchsorted(ordered, b, side="right")
    u = float(np.sum(below + not_above)) / 2
    return u / (a.size * b.size)


#: The scores that tell out-of-distribution examples apart (:func:`ood_scores`), each with its predictor.
PREDICTIVE_ENTROPY = "predictive entropy"
MUTUAL_INFORMATION = "mutual information"
LAST_SAMPLE_ENTROPY = "last-sample entropy"
OOD_SCORES = {
    PREDICTIVE_ENTROPY: ENSEMBLE, MUTUAL_INFORMATION: ENSEMBLE, LAST_SAMPLE_ENTROPY: f"{LAST_SAMPLE} (chain 0)",
}


def ood_scores(probs: np.ndarray, mean_entropy: np.ndarray, last_probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per example [n], each of :data:`OOD_SCORES` from a set's per-chain ``probs`` [C, n, K], mean
    per-sample entropies [C, n] and last samples' ``last_probs`` [C, n, K]: the entropy and the mutual
    information of the pooled ensemble, and the entropy of chain 0's last sample."""
    pooled, pooled_h = pool_chains(probs), pool_chains(mean_entropy)
    return {
        PREDICTIVE_ENTROPY: entropy(pooled),
        MUTUAL_INFORMATION: mutual_information(pooled, pooled_h),
        LAST_SAMPLE_ENTROPY: entropy(last_probs[0]),
    }


# --------------------------------------------------------------------------- decisions under a cost matrix


def check_costs(costs: np.ndarray | None, num_classes: int, reject: float | None = None) -> np.ndarray:
    """The cost matrix as float64 [K, K] (rows: true class, columns: predicted class).

    ``None`` gives the 0-1 loss. Raises ValueError for a wrong shape or a
    negative or non-finite cost.
    """
    if costs is None:
        return 1.0 - np.eye(num_classes)
    c = np.asarray(costs, dtype=np.float64)
    if c.shape != (num_classes, num_classes):
        raise ValueError(f"the cost matrix must be {num_classes} x {num_classes} (true x predicted), got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("costs must be finite and non-negative")
    if reject is not None and (not np.isfinite(reject) or reject < 0):
        raise ValueError(f"the reject cost must be finite and non-negative, got {reject}")
    return c


def expected_costs(probs: np.ndarray, costs: np.ndarray, reject: float | None = None) -> np.ndarray:
    """Posterior expected cost of each action [n, K] (+1 column for rejecting when ``reject`` is set).

    Predicting class ``a`` costs ``sum_y p(y | x) costs[y, a]`` in expectation;
    rejecting costs ``reject`` whatever the class.
    """
    p = _check_probs(probs)
    c = check_costs(costs, p.shape[1], reject)
    expected = p @ c
    if reject is not None:
        expected = np.concatenate([expected, np.full((p.shape[0], 1), float(reject))], axis=1)
    return expected


def bayes_decisions(probs: np.ndarray, costs: np.ndarray, reject: float | None = None) -> np.ndarray:
    """The action of least posterior expected cost per example [n]: a class, or K for "reject"."""
    return np.argmin(expected_costs(probs, costs, reject), axis=1)


def threshold_decisions(probs: np.ndarray, threshold: float) -> np.ndarray:
    """The notebook's rule: the arg-max class where its probability reaches ``threshold``, else K (reject)."""
    p = _check_probs(probs)
    return np.where(p.max(axis=1) >= threshold, p.argmax(axis=1), p.shape[1])


def realised_costs(actions: np.ndarray, labels: np.ndarray, costs: np.ndarray, reject: float | None = None) -> np.ndarray:
    """What each action cost given the true label [n]; K (reject) costs ``reject``."""
    actions = np.asarray(actions, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    c = np.asarray(costs, dtype=np.float64)
    k = c.shape[0]
    rejected = actions == k
    if np.any(rejected) and reject is None:
        raise ValueError("some actions reject, but no reject cost is set")
    out = np.empty(actions.shape, dtype=np.float64)
    out[~rejected] = c[labels[~rejected], actions[~rejected]]
    out[rejected] = 0.0 if reject is None else float(reject)
    return out


@dataclass(frozen=True)
class DecisionResult:
    """How a decision rule did on a labelled set."""

    expected_cost: float  # mean posterior expected cost of the chosen actions
    realised_cost: float  # mean cost given the true labels
    reject_share: float
    accuracy_on_decided: float  # accuracy where the rule did not reject (nan if it rejected all)
    confusions: np.ndarray  # [K, K+1] counts of (true class, action)


def evaluate_decisions(
    actions: np.ndarray, probs: np.ndarray, labels: np.ndarray, costs: np.ndarray, reject: float | None = None
) -> DecisionResult:
    """Expected (under ``probs``) and realised (under ``labels``) cost of ``actions``, and their confusions.

    With no reject cost, rejections (from the threshold rule) are scored as
    costing 0 and show in ``reject_share``.
    """
    p, y = _check(probs, labels)
    c = check_costs(costs, p.shape[1], reject)
    actions = np.asarray(actions, dtype=np.int64)
    k = p.shape[1]
    expected_all = expected_costs(p, c, 0.0 if reject is None else reject)
    decided = actions < k
    confusions = np.zeros((k, k + 1), dtype=np.int64)
    np.add.at(confusions, (y, actions), 1)
    return DecisionResult(
        expected_cost=float(expected_all[np.arange(len(y)), actions].mean()),
        realised_cost=float(realised_costs(actions, y, c, 0.0 if reject is None else reject).mean()),
        reject_share=float(1 - decided.mean()),
        accuracy_on_decided=float((actions[decided] == y[decided]).mean()) if decided.any() else float("nan"),
        confusions=confusions,
    )


#: The decision rules :func:`decision_rows` compares (besides the notebook's threshold rule).
BAYES_POSTERIOR = "bayes (posterior)"
BAYES_LAST_SAMPLE = "bayes (last sample)"
ARGMAX = "argmax"


def decision_rows(
    name: str, probs: np.ndarray, last_probs: np.ndarray, labels: np.ndarray, costs: Any, reject: float | None,
    threshold: float, pairs: Sequence[tuple[int, int]],
) -> list[dict[str, Any]]:
    """Each decision rule's expected and realised cost on a set (per-chain ``probs`` and ``last_probs``
    [C, n, K], ``labels`` [n]), and its counts of the ``pairs`` confusions: the Bayes rule under the pooled
    posterior and under chain 0's last sample, arg-max, and the notebook's ``threshold`` rule."""
    pooled = pool_chains(probs)
    k = pooled.shape[1]
    c = check_costs(costs, k, reject)
    last = last_probs[0]
    rules = {
        BAYES_POSTERIOR: bayes_decisions(pooled, c, reject),
        BAYES_LAST_SAMPLE: bayes_decisions(last, c, reject),
        ARGMAX: pooled.argmax(axis=1),
        f"threshold {threshold:g}": threshold_decisions(pooled, threshold),
    }
    rows = []
    for rule, actions in rules.items():
        result = evaluate_decisions(actions, pooled, labels, c, reject)
        row = {"sampler": name, "rule": rule, "expected_cost": result.expected_cost,
               "realised_cost": result.realised_cost, "reject_share": result.reject_share,
               "accuracy_on_decided": result.accuracy_on_decided,
               "mistakes": int(result.confusions[:, :k].sum() - np.trace(result.confusions[:, :k]))}
        for true, pred in pairs:
            row[f"{true}->{pred}"] = int(result.confusions[true, pred])
        rows.append(row)
    return rows


def costly_pairs(costs: np.ndarray, argmax: np.ndarray, labels: np.ndarray, n: int = 2) -> list[tuple[int, int]]:
    """The (true, predicted) confusions to watch: the ``n`` most expensive ones, off the diagonal.

    Equal costs (the 0-1 loss) are ranked by how often arg-max makes the mistake.
    """
    k = costs.shape[0]
    counts = np.zeros((k, k))
    np.add.at(counts, (labels, argmax), 1)
    off = [(float(costs[i, j]), counts[i, j], i, j) for i in range(k) for j in range(k) if i != j]
    return [(i, j) for _, _, i, j in sorted(off, key=lambda t: (-t[0], -t[1], t[2], t[3]))[:n]]


# --------------------------------------------------------------------------- agreement with a reference posterior

#: How close a predictive is to the reference posterior's (Izmailov et al. 2021): the agreement table's
#: columns, and the noise floor's keys.
REFERENCE_MEASURES = ("agreement", "total_variation")
#: The scores whose differences from the reference's :func:`against_reference` gives, as ``{score}_diff``.
REFERENCE_DIFFERENCES = ("accuracy", "nll", "ece")


def noise_floor(log_probs: np.ndarray) -> dict[str, float]:
    """Agreement and total variation between the pooled predictives of the first and the second half of the
    reference's chains ([C, n, K] log-probabilities, C >= 2): below it, differences from the reference are
    not real."""
    lp = np.asarray(log_probs)
    if lp.ndim != 3 or lp.shape[0] < 2:
        raise ValueError(f"the noise floor needs log_probs [C, n, K] with C >= 2, got shape {lp.shape}")
    half = lp.shape[0] // 2
    first, second = (ensemble_probs(lp[s]) for s in (slice(0, half), slice(half, None)))
    return dict(zip(REFERENCE_MEASURES, (agreement(first, second), total_variation(first, second))))


def against_reference(
    probs: np.ndarray, scores: Mapping[str, float], reference: np.ndarray, reference_scores: Mapping[str, float],
    floor: Mapping[str, float],
) -> dict[str, Any]:
    """A predictive ``probs`` [n, K] against the ``reference``'s: agreement, total variation, the differences
    of its ``scores`` from the reference's, and whether it is within the noise ``floor`` (agrees at least
    as often, and is at most as far, as the reference's two halves of chains)."""
    measures = (agreement(probs, reference), total_variation(probs, reference))
    row: dict[str, Any] = dict(zip(REFERENCE_MEASURES, measures))
    for metric in REFERENCE_DIFFERENCES:
        row[f"{metric}_diff"] = scores[metric] - reference_scores[metric]
    row["within_noise_floor"] = bool(
        row["agreement"] >= floor["agreement"] and row["total_variation"] <= floor["total_variation"]
    )
    return row
