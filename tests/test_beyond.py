"""Chain diagnostics, shifted sets, OOD AUROC and cost-matrix decisions, on cases with known answers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, snakemake
from test_report import fake_predictive

from bnn_sgmcmc import analysis, diagnostics, h5io, report, shift

# --------------------------------------------------------------------------- shifted sets


def test_zero_shift_leaves_the_images_unchanged():
    images = np.random.default_rng(7).uniform(size=(5, 28, 28)).astype(np.float32)
    sets = shift.shifted_sets(images, {"examples": 3, "rotations": [0, 90], "noise": [0, 0.5]}, seed=0)
    assert list(sets) == ["shift/rotation_0", "shift/rotation_90", "shift/noise_0", "shift/noise_0.5"]
    assert all(s.shape == (3, 28, 28) and s.dtype == np.float32 for s in sets.values())
    np.testing.assert_array_equal(sets["shift/rotation_0"], images[:3])
    np.testing.assert_array_equal(sets["shift/noise_0"], images[:3])
    assert shift.levels(list(sets), "noise") == [(0.0, "shift/noise_0"), (0.5, "shift/noise_0.5")]


def test_rotations_turn_the_image_about_its_centre():
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 2:8, 13] = 1.0  # a vertical stroke in the top half
    np.testing.assert_allclose(shift.rotate(image, 180), image[:, ::-1, ::-1], atol=1e-6)
    turned = shift.rotate(image, 90)  # counter-clockwise: the stroke goes to the left half, lying down
    rows, cols = np.nonzero(turned[0] > 0.5)
    assert cols.max() < 14 and np.ptp(rows) <= 1 and np.ptp(cols) >= 5
    np.testing.assert_allclose(shift.rotate(shift.rotate(image, 90), 270), image, atol=1e-6)


def test_noise_is_seeded_and_clipped():
    images = np.full((4, 28, 28), 0.5, np.float32)
    a, b = shift.add_noise(images, 1.0, seed=3), shift.add_noise(images, 1.0, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.min() == 0.0 and a.max() == 1.0 and not np.array_equal(a, shift.add_noise(images, 1.0, seed=4))


# --------------------------------------------------------------------------- OOD


def test_auroc_known_values_and_brute_force():
    assert analysis.auroc([0, 1, 2], [3, 4]) == 1.0
    assert analysis.auroc([3, 4], [0, 1, 2]) == 0.0
    assert analysis.auroc([1, 1], [1, 1]) == 0.5
    rng = np.random.default_rng(8)
    a, b = rng.integers(0, 5, 50), rng.integers(2, 8, 40)  # ties included
    brute = np.mean([(y > x) + 0.5 * (y == x) for x in a for y in b])
    assert analysis.auroc(a, b) == pytest.approx(brute)
    # SciPy's Mann-Whitney U of the OOD scores over the in-distribution ones, on continuous scores with ties.
    from scipy.stats import mannwhitneyu

    a, b = np.round(rng.gamma(2.0, size=3000), 2), np.round(rng.gamma(2.5, size=700), 2)
    assert analysis.auroc(a, b) == mannwhitneyu(b, a).statistic / (a.size * b.size)


def test_ood_step_says_when_it_is_skipped(tmp_path):
    files = {"sgld": str(fake_predictive(tmp_path / "sgld.h5"))}
    report.ood(predictive=files, source=None, table=str(tmp_path / "ood.tsv"), figure=str(tmp_path / "ood.png"), dpi=60)
    table = pd.read_csv(tmp_path / "ood.tsv", sep="\t")
    assert table["score"].tolist() == ["skipped"] and "ood.source" in table["predictor"][0]
    assert (tmp_path / "ood.png").stat().st_size > 1000


# --------------------------------------------------------------------------- decisions


PROBS = np.array([[0.6, 0.4, 0.0], [0.1, 0.2, 0.7], [0.34, 0.33, 0.33]])
COSTS = np.array([[0, 1, 1], [5, 0, 1], [1, 1, 0]], dtype=float)  # calling a true 1 a 0 costs 5


def test_bayes_rule_on_a_crafted_three_class_example():
    expected = analysis.expected_costs(PROBS, COSTS, reject=0.5)
    np.testing.assert_allclose(expected[0], [2.0, 0.6, 1.0, 0.5])  # 0.4 x 5 for predicting 0
    # Example 0: arg-max says 0, but a 40 % chance of a costly mistake makes rejecting cheapest.
    assert analysis.bayes_decisions(PROBS, COSTS, reject=0.5).tolist() == [3, 2, 3]
    # Without a reject option the rule picks class 1 for example 0, still not the arg-max.
    assert analysis.bayes_decisions(PROBS, COSTS).tolist() == [1, 2, 1]
    # Under 0-1 loss the Bayes rule is the arg-max.
    assert analysis.bayes_decisions(PROBS, None).tolist() == PROBS.argmax(axis=1).tolist()
    assert analysis.threshold_decisions(PROBS, 0.5).tolist() == [0, 2, 3]


def test_decision_result_counts_costs_rejections_and_confusions():
    labels = np.array([1, 2, 0])
    result = analysis.evaluate_decisions(PROBS.argmax(axis=1), PROBS, labels, COSTS, reject=0.5)
    assert result.realised_cost == pytest.approx((5 + 0 + 0) / 3)
    assert result.expected_cost == pytest.approx((2.0 + 0.3 + 1.98) / 3)  # example 2: 0.33 x 5 + 0.33
    assert result.reject_share == 0 and result.accuracy_on_decided == pytest.approx(2 / 3)
    assert result.confusions[1, 0] == 1 and result.confusions.sum() == 3
    bayes = analysis.evaluate_decisions(analysis.bayes_decisions(PROBS, COSTS, 0.5), PROBS, labels, COSTS, 0.5)
    assert bayes.realised_cost == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert bayes.realised_cost < result.realised_cost


@pytest.mark.parametrize("costs, match", [
    (np.ones((2, 3)), "3 x 3"), (-np.eye(3), "non-negative"), (np.full((3, 3), np.nan), "non-negative"),
])
def test_bad_cost_matrices(costs, match):
    with pytest.raises(ValueError, match=match):
        analysis.check_costs(costs, 3)


def test_the_example_costs_flag_the_expensive_confusions(tmp_path):
    decision = yaml.safe_load((REPO / "examples/costly-confusions.yaml").read_text())["decision"]
    files = {"sgld": str(fake_predictive(tmp_path / "sgld.h5"))}
    report.decisions(predictive=files, costs=decision["costs"], reject=decision["reject"], threshold=0.9,
                     table=str(tmp_path / "d.tsv"), figure=str(tmp_path / "d.png"), dpi=60)
    table = pd.read_csv(tmp_path / "d.tsv", sep="\t")
    assert table["rule"].tolist() == ["bayes (posterior)", "bayes (last sample)", "argmax", "threshold 0.9"]
    assert {"4->9", "7->1"} <= set(table.columns)
    bayes, argmax = table.iloc[0], table.iloc[2]
    assert bayes["expected_cost"] <= argmax["expected_cost"]  # it minimises exactly this


# --------------------------------------------------------------------------- bad config, before any job


def _config(**changes):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data"]["source"] = "synthetic"
    for key, value in changes.items():
        section, name = key.split("__")
        config[section][name] = value
    return config


def test_a_cost_matrix_of_the_wrong_shape_stops_the_workflow(tmp_path):
    out = snakemake(tmp_path, "-n", config=_config(decision__costs=[[0, 1], [1, 0]]))
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "decision.costs is 2 x 2" in text and "10 x 10" in text
    assert not (tmp_path / "results").exists()


def test_a_negative_cost_stops_the_workflow(tmp_path):
    costs = (1 - np.eye(10)).tolist()
    costs[4][9] = -1
    out = snakemake(tmp_path, "-n", config=_config(decision__costs=costs))
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "Invalid config: decision.costs.4.9: -1 is less than the minimum of 0" in text, text[-2000:]


@pytest.mark.parametrize("same", [True, False])
def test_an_ood_set_that_is_the_test_split_itself_is_warned_about(tmp_path, caplog, same):
    path = fake_predictive(tmp_path / "sgld.h5")
    arrays, attrs = h5io.read_arrays(path)
    arrays["ood"] = {k: arrays["test"][k] for k in ("log_probs", "last_log_probs", "mean_entropy")}
    attrs["fingerprint"] = {"data": {"train": {"images_sha256": "a"}, "test": {"images_sha256": "b"}},
                            "evaluation": {"ood": "b" if same else "c"}}
    h5io.write_arrays(path, arrays, attrs)
    with caplog.at_level(logging.WARNING, logger="bnn_sgmcmc"):
        report.ood(predictive={"sgld": str(path)}, source="mnist", table=str(tmp_path / "ood.tsv"),
                   figure=str(tmp_path / "ood.png"), dpi=60)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if same:
        assert warned == ["ood.source mnist gives the same images as the test split of data.source: in- and "
                          "out-of-distribution are one set, so every AUROC is about 0.5 and says nothing. Set "
                          "ood.source to another data set (for MNIST, e.g. fashion_mnist)."]
        assert np.allclose(pd.read_csv(tmp_path / "ood.tsv", sep="\t")["auroc"], 0.5)
    else:
        assert warned == []


def test_an_ood_source_of_another_image_shape_stops_the_workflow(tmp_path):
    from conftest import write_idx_folder

    from bnn_sgmcmc.data import ImageData, Split

    rng = np.random.default_rng(9)
    small = ImageData(*(Split(rng.integers(0, 256, (n, 14, 14), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10)
                        for n in (20, 10)))
    folder = write_idx_folder(tmp_path / "small", small, gz=True)
    out = snakemake(tmp_path, "-n", config=_config(ood__source=str(folder)))
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "ood.source" in text and "14x14" in text
    assert not (tmp_path / "results").exists()


def test_a_shift_without_its_own_level_zero_borrows_the_other_ones():
    names = ["shift/rotation_0", "shift/rotation_90", "shift/noise_0.5", "shift/noise_0.25"]
    assert shift.levels(names, "noise") == [(0.0, "shift/rotation_0"), (0.25, "shift/noise_0.25"),
                                            (0.5, "shift/noise_0.5")]
    assert shift.levels(names, "rotation") == [(0.0, "shift/rotation_0"), (90.0, "shift/rotation_90")]


def run_diagnostics(tmp_path, path, least=5):
    """The diagnostics rule on ``path``; returns its tables (the rows, the verdict, the least converged)."""
    data = tmp_path / "data.h5"
    test = report.h5io.Split(np.zeros((40, 28, 28), np.uint8), (np.arange(40) % 10).astype(np.uint8))
    report.h5io.write_data_h5(data, report.h5io.ImageData(train=test, test=test), num_classes=10, attrs={})
    out = {k: str(tmp_path / f"{k}.{'png' if k.endswith('figure') or k == 'histogram' else 'tsv'}")
           for k in ("table", "verdict_table", "least_table", "figure", "histogram", "least_figure")}
    report.chain_diagnostics(predictive=str(path), data=str(data), sampler="sgld", samplers=["sgld"], threshold=1.01,
                             ess_per_chain=100, function_space_share=0.99, least=least, dpi=60, **out)
    assert all(Path(v).stat().st_size > 0 for v in out.values())
    return [pd.read_csv(out[k], sep="\t") for k in ("table", "verdict_table", "least_table")]


def test_too_few_samples_for_diagnostics_give_nan_not_a_failed_report(tmp_path, caplog):
    table, verdict, least = run_diagnostics(tmp_path, fake_predictive(tmp_path / "p.h5", chains=2, samples=3, draws=3))
    assert table["rhat"].isna().all() and not table["converged"].any()
    verdict = verdict.iloc[0]
    assert not verdict["converged"] and "no traced quantity could be diagnosed" in verdict["failures"]
    assert "3 function-space draws per chain are too few" in verdict["failures"]
    assert "too few for split R-hat" in caplog.text and len(least) == 0


def test_function_space_in_the_diagnostics_report(tmp_path):
    """Independent draws of 2 chains: examples mix, a constant trace has nothing to diagnose."""
    path = fake_predictive(tmp_path / "p.h5", chains=2, samples=5, draws=200)
    table, verdict, least = run_diagnostics(tmp_path, path)
    constant = table[table["quantity"] != diagnostics.FUNCTION_SPACE]  # the fake traces never change
    assert constant["rhat"].isna().all() and constant["converged"].isna().all() and (constant["values"] == 0).all()
    fs = table.iloc[-1]
    assert fs["values"] == 40 and fs["samples_per_chain"] == 200 and fs["share_rhat_1.1"] == 1.0
    assert verdict.iloc[0]["fs_share_rhat_ok"] == fs["share_rhat_ok"]
    assert len(least) == 5 and least["rhat"].is_monotonic_decreasing
