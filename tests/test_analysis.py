"""Report numbers from predictive probabilities (bnn_sgmcmc.analysis), on hand-computed cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from bnn_sgmcmc.analysis import (
    RejectionCurve,
    Reliability,
    ThresholdCurve,
    accuracy,
    agreement,
    brier,
    certain_share,
    confidence,
    default_thresholds,
    ece,
    entropy,
    most_uncertain,
    mutual_information,
    nll,
    pool_log_chains,
    pool_chains,
    rejection_curve,
    reliability,
    summary,
    threshold_curve,
    total_variation,
    uncertain_per_class,
)

# Four 2-class examples: confidences 0.9, 0.6, 0.7, 0.5; arg-max 0, 0, 1, 0 (the tie goes to
# class 0); with these labels the predictions are right, wrong, right, right.
P4 = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
Y4 = np.array([0, 1, 1, 0])


def harmonic(n: int) -> float:
    return sum(1.0 / i for i in range(1, n + 1))


def ranked(n: int, wrong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-class probs with strictly decreasing confidence by index; ``wrong`` marks the errors."""
    c = np.linspace(0.99, 0.51, n)
    probs = np.stack([c, 1.0 - c], axis=1)
    return probs, wrong.astype(int)  # class 0 is predicted, so label 1 is an error


# --- confidence, accuracy, certain and uncertain counts ---------------------------------


def test_confidence_is_top_probability():
    np.testing.assert_array_equal(confidence(P4), [0.9, 0.6, 0.7, 0.5])


def test_accuracy_counts_first_argmax_on_ties():
    # right, wrong, right, right; row 3 is a tie [0.5, 0.5] whose first class 0 is the label.
    assert accuracy(P4, Y4) == 0.75
    # The same tie against label 1 is wrong: first class wins.
    assert accuracy(P4, np.array([0, 1, 1, 1])) == 0.5


def test_certain_share_is_strictly_greater():
    assert certain_share(P4, 0.7) == 0.25  # only 0.9; 0.7 itself is not "certain"
    assert certain_share(P4, 0.6) == 0.5  # 0.9, 0.7
    assert certain_share(P4, 0.5) == 0.75  # all but the 0.5 tie
    assert certain_share(P4, 0.95) == 0.0
    assert certain_share(P4, 0.0) == 1.0


P5 = np.array(
    [
        [0.9, 0.05, 0.05],  # conf 0.9, label 0
        [0.4, 0.3, 0.3],  # conf 0.4, label 0
        [0.2, 0.5, 0.3],  # conf 0.5, label 2
        [0.1, 0.1, 0.8],  # conf 0.8, label 2
        [0.34, 0.33, 0.33],  # conf 0.34, label 1
    ]
)
Y5 = np.array([0, 0, 2, 2, 1])


def test_uncertain_per_class_counts_by_true_label():
    # <= 0.8: rows 1, 2, 3, 4 with labels 0, 2, 2, 1 (0.8 itself counts as uncertain).
    counts = uncertain_per_class(P5, Y5, 0.8, 3)
    np.testing.assert_array_equal(counts, [1, 1, 2])
    assert np.issubdtype(counts.dtype, np.integer)
    # <= 0.5: rows 1, 2, 4 with labels 0, 2, 1.
    np.testing.assert_array_equal(uncertain_per_class(P5, Y5, 0.5, 3), [1, 1, 1])
    np.testing.assert_array_equal(uncertain_per_class(P5, Y5, 0.3, 3), [0, 0, 0])


def test_uncertain_per_class_complements_certain_share():
    for t in (0.3, 0.5, 0.8, 0.9):
        total = uncertain_per_class(P5, Y5, t, 3).sum()
        assert total == round(len(Y5) * (1.0 - certain_share(P5, t)))


def test_uncertain_per_class_keeps_empty_classes():
    np.testing.assert_array_equal(uncertain_per_class(P4, np.array([0, 0, 0, 0]), 1.0, 2), [4, 0])


# --- most uncertain -----------------------------------------------------------------------


def test_most_uncertain_orders_by_confidence_then_index():
    probs = np.array([[0.6, 0.4], [0.5, 0.5], [0.1, 0.9], [0.5, 0.5], [0.3, 0.7]])
    # confidences 0.6, 0.5, 0.9, 0.5, 0.7: the two 0.5 ties come in index order.
    np.testing.assert_array_equal(most_uncertain(probs, 3), [1, 3, 0])
    np.testing.assert_array_equal(most_uncertain(probs, 5), [1, 3, 0, 4, 2])
    np.testing.assert_array_equal(most_uncertain(probs, 50), [1, 3, 0, 4, 2])
    assert most_uncertain(probs, 0).shape == (0,)


def test_most_uncertain_ties_keep_index_order_at_scale():
    # Many ties among three confidences, enough that an unstable sort would reorder them.
    c = np.random.default_rng(0).choice([0.5, 0.6, 0.7], size=2000)
    probs = np.stack([c, 1.0 - c], axis=1)
    expected = np.lexsort((np.arange(2000), c))  # by confidence, then by index
    np.testing.assert_array_equal(most_uncertain(probs, 2000), expected)
    np.testing.assert_array_equal(most_uncertain(probs, 5), expected[:5])


# --- threshold curve ----------------------------------------------------------------------


def test_threshold_curve_hand_values():
    curve = threshold_curve(P4, Y4, np.array([0.5, 0.6, 0.8, 0.95]))
    assert isinstance(curve, ThresholdCurve)
    np.testing.assert_array_equal(curve.thresholds, [0.5, 0.6, 0.8, 0.95])
    # t=0.5: all kept, 3/4 right. t=0.6: 0.9, 0.6, 0.7 kept (>= t), right/wrong/right = 2/3.
    # t=0.8: only 0.9, right. t=0.95: none kept -> NaN.
    np.testing.assert_allclose(curve.accuracy_kept[:3], [3 / 4, 2 / 3, 1.0])
    assert math.isnan(curve.accuracy_kept[3])
    np.testing.assert_allclose(curve.dropped_share, [0.0, 1 / 4, 3 / 4, 1.0])


def test_threshold_curve_is_frozen():
    curve = threshold_curve(P4, Y4, np.array([0.5]))
    with pytest.raises(AttributeError):
        curve.thresholds = np.array([0.1])  # type: ignore[misc]


def test_default_thresholds():
    t = default_thresholds()
    assert t.shape == (90,)
    assert t[0] == pytest.approx(0.1) and t[-1] == pytest.approx(1.0)
    assert np.all(np.diff(t) > 0)
    np.testing.assert_allclose(default_thresholds(10), np.linspace(0.1, 1.0, 10))


# --- accuracy-rejection and AURC -------------------------------------------------------


def test_rejection_curve_hand_values():
    curve = rejection_curve(P4, Y4)
    assert isinstance(curve, RejectionCurve)
    # By confidence: 0.9 right, 0.7 right, 0.6 wrong, 0.5 right.
    np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.accuracy, [1.0, 1.0, 2 / 3, 3 / 4])
    # Risks 0, 0, 1/3, 1/4; mean = (1/3 + 1/4) / 4 = 7/48.
    assert curve.aurc == pytest.approx(7 / 48)


def test_aurc_perfect_ranking_closed_form():
    n, m = 10, 2
    probs, labels = ranked(n, np.arange(n) >= n - m)  # errors least confident
    # Risk 0 for k <= n-m, then (k - (n-m))/k: mean = m/n - (n-m)/n * (H_n - H_{n-m}).
    expected = m / n - (n - m) / n * (harmonic(n) - harmonic(n - m))
    assert expected == pytest.approx((1 / 9 + 2 / 10) / 10)  # the two nonzero risks, by hand
    assert rejection_curve(probs, labels).aurc == pytest.approx(expected)


def test_aurc_perfect_ranking_approaches_continuous_optimum():
    n, r = 10_000, 0.1
    probs, labels = ranked(n, np.arange(n) >= n - int(n * r))
    # Geifman & El-Yaniv (2019): optimal AURC = r + (1 - r) ln(1 - r) as n grows.
    optimum = r + (1 - r) * math.log(1 - r)
    assert rejection_curve(probs, labels).aurc == pytest.approx(optimum, abs=1e-4)


def test_aurc_worst_ranking_closed_form():
    n, m = 10, 2
    probs, labels = ranked(n, np.arange(n) < m)  # errors most confident
    # Risk 1 for k <= m, then m/k: mean = (m + m * (H_n - H_m)) / n.
    expected = (m + m * (harmonic(n) - harmonic(m))) / n
    curve = rejection_curve(probs, labels)
    assert curve.aurc == pytest.approx(expected)
    np.testing.assert_allclose(curve.accuracy[:2], [0.0, 0.0])
    best = rejection_curve(*ranked(n, np.arange(n) >= n - m)).aurc
    assert curve.aurc > best


def test_rejection_curve_breaks_ties_by_index():
    probs = np.full((3, 2), 0.5)  # all predict class 0 with equal confidence
    curve = rejection_curve(probs, np.array([1, 0, 0]))
    np.testing.assert_allclose(curve.accuracy, [0.0, 0.5, 2 / 3])


def test_rejection_curve_ties_by_index_at_scale():
    rng = np.random.default_rng(1)
    c = rng.choice([0.6, 0.7, 0.8], size=2000)
    probs = np.stack([c, 1.0 - c], axis=1)
    labels = rng.integers(0, 2, size=2000)
    order = np.lexsort((np.arange(2000), -c))  # confidence descending, then index
    expected = np.cumsum(labels[order] == 0) / np.arange(1, 2001)
    np.testing.assert_array_equal(rejection_curve(probs, labels).accuracy, expected)


# --- NLL and Brier --------------------------------------------------------------------------

P3 = np.array([[0.8, 0.2], [0.25, 0.75], [0.5, 0.5]])
Y3 = np.array([0, 0, 1])  # probabilities of the labels: 0.8, 0.25, 0.5


def test_nll_by_hand():
    expected = -(math.log(0.8) + math.log(0.25) + math.log(0.5)) / 3
    assert expected == pytest.approx(0.767528, abs=1e-6)
    assert nll(np.log(P3), Y3) == pytest.approx(expected)


def test_nll_is_exact_where_probabilities_underflow():
    """Log-probabilities of -200 and -745 are probabilities of 0 in float32 (and the second in float64):
    the score is the exact 200 and 745 nats, with no floor (the old 1e-12 floor capped it at 27.6)."""
    log_probs = np.array([[0.0, -200.0], [-745.0, 0.0]], dtype=np.float32)
    assert np.exp(log_probs).min() == 0.0
    assert nll(log_probs[:1], np.array([1])) == pytest.approx(200.0)
    assert nll(log_probs, np.array([1, 0])) == pytest.approx((200.0 + 745.0) / 2)
    assert nll(log_probs, np.array([0, 1])) == 0.0


def test_pooled_log_probabilities_are_the_log_of_the_pooled_probabilities_without_underflow():
    probs = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])
    np.testing.assert_allclose(pool_log_chains(np.log(probs)), np.log(pool_chains(probs)))
    tiny = np.array([[[0.0, -1000.0]], [[0.0, -1001.0]]])  # exp underflows even in float64
    np.testing.assert_allclose(pool_log_chains(tiny)[0, 1], -1000 + math.log((1 + math.exp(-1)) / 2))
    with pytest.raises(ValueError, match=r"\[C, n, K\]"):
        pool_log_chains(np.zeros((2, 2)))


def test_brier_by_hand():
    # (0.8-1)^2 + 0.2^2 = 0.08;  (0.25-1)^2 + 0.75^2 = 1.125;  0.5^2 + (0.5-1)^2 = 0.5.
    expected = (0.08 + 1.125 + 0.5) / 3
    assert brier(P3, Y3) == pytest.approx(expected)


def test_brier_range_ends():
    eye = np.eye(3)
    assert brier(eye, np.array([0, 1, 2])) == 0.0
    assert brier(eye, np.array([1, 2, 0])) == pytest.approx(2.0)


# --- reliability and ECE ----------------------------------------------------------------


def test_ece_single_bin():
    # All confidences 0.8, half right: |0.5 - 0.8| = 0.3 whatever the binning.
    probs = np.tile([0.8, 0.2], (4, 1))
    labels = np.array([0, 0, 1, 1])
    assert ece(probs, labels) == pytest.approx(0.3)
    assert ece(probs, labels, bins=4) == pytest.approx(0.3)


def test_ece_zero_when_calibrated():
    probs = np.tile([0.75, 0.25], (4, 1))
    assert ece(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)


def test_reliability_two_bins_by_hand():
    probs = np.array([[0.8, 0.2]] * 4 + [[0.6, 0.4]] * 2)
    labels = np.array([0, 0, 1, 1, 0, 0])
    r = reliability(probs, labels, bins=4)
    assert isinstance(r, Reliability)
    np.testing.assert_allclose(r.edges, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(r.counts, [0, 0, 2, 4])
    np.testing.assert_allclose(r.accuracy, [np.nan, np.nan, 1.0, 0.5])
    np.testing.assert_allclose(r.confidence, [np.nan, np.nan, 0.6, 0.8])
    # 4/6 * |0.5 - 0.8| + 2/6 * |1.0 - 0.6| = 0.2 + 0.1333...
    assert r.ece == pytest.approx(4 / 6 * 0.3 + 2 / 6 * 0.4)
    assert ece(probs, labels, bins=4) == r.ece


def test_reliability_bin_edges_go_up_and_one_goes_last():
    probs = np.array(
        [
            [0.25, 0.25, 0.25, 0.25],  # on edge 0.25 -> bin 1, not bin 0
            [0.5, 0.5, 0.0, 0.0],  # on edge 0.5 -> bin 2
            [0.75, 0.25, 0.0, 0.0],  # on edge 0.75 -> bin 3
            [1.0, 0.0, 0.0, 0.0],  # 1.0 -> last bin 3
        ]
    )
    r = reliability(probs, np.array([0, 0, 0, 0]), bins=4)
    np.testing.assert_array_equal(r.counts, [0, 1, 1, 2])
    np.testing.assert_allclose(r.confidence, [np.nan, 0.25, 0.5, 0.875])


def test_reliability_default_bins_edge_rule():
    edge = np.linspace(0.0, 1.0, 16)[8]  # 8/15, an inner edge of the default 15 bins
    r = reliability(np.array([[edge, 1.0 - edge], [1.0, 0.0]]), np.array([0, 0]))
    assert r.edges.shape == (16,) and r.counts.shape == (15,)
    assert r.counts[8] == 1 and r.counts[7] == 0 and r.counts[14] == 1
    assert r.counts.sum() == 2


# --- entropy, mutual information, pooling -------------------------------------------------


def test_entropy_uniform_and_one_hot():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0 log 0 must not warn
        assert entropy(np.full(4, 0.25)) == pytest.approx(math.log(4))
        assert entropy(np.array([0.0, 1.0, 0.0])) == 0.0
        assert entropy(np.array([0.5, 0.5, 0.0])) == pytest.approx(math.log(2))


def test_entropy_by_hand_and_leading_shape():
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy(np.array([0.25, 0.75])) == pytest.approx(expected)
    probs = np.tile([0.25, 0.75], (2, 3, 1))
    h = entropy(probs)
    assert h.shape == (2, 3)
    np.testing.assert_allclose(h, expected)


def test_mutual_information_identical_samples_is_zero():
    sample = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    samples = np.stack([sample] * 3)  # [S, n, K], all the same
    mi = mutual_information(samples.mean(axis=0), entropy(samples).mean(axis=0))
    assert mi.shape == (2,)
    np.testing.assert_allclose(mi, 0.0, atol=1e-12)
    assert np.all(mi >= 0.0)


def test_mutual_information_disagreeing_samples():
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two confident samples that disagree
    mi = mutual_information(samples.mean(axis=0), entropy(samples).mean(axis=0))
    np.testing.assert_allclose(mi, [math.log(2)])


def test_mutual_information_clips_rounding_below_zero():
    mi = mutual_information(np.array([[0.5, 0.5]]), np.array([math.log(2) + 1e-9]))
    np.testing.assert_array_equal(mi, [0.0])


def test_mutual_information_shape_mismatch():
    with pytest.raises(ValueError, match="mean_entropy shape"):
        mutual_information(np.full((3, 2), 0.5), np.zeros(4))


def test_pool_chains_is_mean_over_chains():
    probs = np.array(
        [
            [[0.8, 0.2], [0.1, 0.9]],
            [[0.4, 0.6], [0.3, 0.7]],
        ]
    )
    pooled = pool_chains(probs)
    np.testing.assert_allclose(pooled, [[0.6, 0.4], [0.2, 0.8]])
    np.testing.assert_allclose(pooled.sum(axis=1), 1.0)
    np.testing.assert_allclose(pool_chains(np.array([[1.0, 2.0], [3.0, 6.0]])), [2.0, 4.0])
    with pytest.raises(ValueError, match="leading chains axis"):
        pool_chains(np.array([0.5, 0.5]))


# --- summary ------------------------------------------------------------------------------


def test_summary_matches_functions():
    s = summary(np.log(P5), Y5, threshold=0.8, bins=4)  # from log-probabilities
    assert set(s) == {"accuracy", "nll", "brier", "ece", "certain_share", "aurc"}
    assert all(isinstance(v, float) for v in s.values())
    assert s["accuracy"] == accuracy(P5, Y5)
    assert s["nll"] == nll(np.log(P5), Y5)
    assert s["brier"] == pytest.approx(brier(P5, Y5))
    assert s["ece"] == pytest.approx(ece(P5, Y5, bins=4))
    assert s["certain_share"] == 0.2  # only 0.9 > 0.8
    assert s["aurc"] == rejection_curve(P5, Y5).aurc
    assert summary(np.log(P5), Y5)["certain_share"] == 0.0  # default threshold 0.95


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "probs, labels, match",
    [
        (np.array([0.5, 0.5]), np.array([0]), "probs must be 2-D"),
        (np.zeros((2, 2, 2)), np.array([0, 1]), "probs must be 2-D"),
        (np.zeros((0, 2)), np.zeros(0, int), "at least one example"),
        (P4, np.array([0, 1, 1]), "labels length mismatch: 3 labels for 4 rows"),
        (P4, np.array([0, 1, 2, 0]), r"labels out of range: must lie in 0\.\.1"),
        (P4, np.array([0, -1, 1, 0]), "labels out of range"),
        (P4, np.array([0.0, 1.0, 1.0, 0.0]), "labels must be integers"),
        (P4, np.array([[0, 1, 1, 0]]), "labels must be 1-D"),
        (np.array([[np.nan, 0.5], [0.5, 0.5]]), np.array([0, 1]), "NaN or infinite"),
    ],
)
def test_validation_messages(probs, labels, match):
    for fn in (accuracy, nll, brier, ece, rejection_curve, summary):
        with pytest.raises(ValueError, match=match):
            fn(probs, labels)


def test_validation_of_other_arguments():
    with pytest.raises(ValueError, match="num_classes is 3 but probs have 2 classes"):
        uncertain_per_class(P4, Y4, 0.5, 3)
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        reliability(P4, Y4, bins=0)
    with pytest.raises(ValueError, match="k must be non-negative"):
        most_uncertain(P4, -1)
    with pytest.raises(ValueError, match="thresholds must be 1-D"):
        threshold_curve(P4, Y4, np.array([[0.5]]))
    with pytest.raises(ValueError, match="probs must be 2-D"):
        confidence(np.array([0.5, 0.5]))


# --------------------------------------------------------------------------- agreement with a reference


def test_agreement_and_total_variation_by_hand():
    """P4 against a crafted reference: arg-max 0, 1, 1, 1 against P4's 0, 0, 1, 0 (its tie goes to class 0),
    so they agree on examples 1 and 3; the total variations are |0.9 - 0.8|, |0.6 - 0.4|, 0 and
    |0.5 - 0.2| (two classes: half the L1 distance is the difference in one class), mean 0.15."""
    reference = np.array([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    assert agreement(P4, reference) == 0.5
    assert total_variation(P4, reference) == pytest.approx((0.1 + 0.2 + 0.0 + 0.3) / 4)


def test_a_predictive_against_itself_agrees_fully_at_zero_distance_and_tv_matches_scipy():
    from scipy.spatial.distance import cityblock

    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(10), size=200)
    q = rng.dirichlet(np.ones(10), size=200)
    assert agreement(p, p) == 1.0 and total_variation(p, p) == 0.0
    assert total_variation(p, q) == pytest.approx(np.mean([cityblock(a, b) / 2 for a, b in zip(p, q)]))
    assert total_variation(p, q) == pytest.approx(total_variation(q, p))
    assert agreement(p, q) == pytest.approx(np.mean([np.argmax(a) == np.argmax(b) for a, b in zip(p, q)]))
    one_hot = np.eye(10)[rng.integers(0, 10, 200)]
    assert total_variation(one_hot, np.roll(one_hot, 1, axis=1)) == 1.0  # disjoint supports


def test_agreement_refuses_predictives_of_other_shapes():
    with pytest.raises(ValueError, match="same shape"):
        agreement(P4, P4[:3])
    with pytest.raises(ValueError, match="same shape"):
        total_variation(P4, np.ones((4, 3)) / 3)
