"""Report jobs on crafted predictive files with known answers (bnn_sgmcmc.report)."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bnn_sgmcmc import diagnostics, h5io, kernels, report, schema
from bnn_sgmcmc.data import ImageData, Split
from bnn_sgmcmc.errors import DataError


def fake_predictive(path, chains=2, n=40, classes=10, samples=5, seed=0, kernel="sgld", grads=1, draws=0,
                    kernel_trace=None, warmup_grad_evals=None):
    """A predictive file with the workflow's layout and probabilities we control (and ``draws``
    function-space draws per chain of independent true-class probabilities; the per-chain gradient
    evaluations of warmup in its attributes where ``warmup_grad_evals`` is given, as the sampling jobs record)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % classes).astype(np.uint8)
    probs = rng.dirichlet(np.ones(classes) * 0.2, size=(chains, n)).astype(np.float32)
    probs[:, : n // 2] = 0.9 * np.eye(classes, dtype=np.float32)[labels[: n // 2]] + 0.01  # first half right
    steps = np.arange(1, samples + 1)
    arrays = {
        "chain": np.arange(chains),
        "test": {"log_probs": np.log(probs), "last_log_probs": np.log(probs[:, ::-1]),
                 "mean_entropy": np.zeros((chains, n), np.float32), "labels": labels},
        "trace": {
            "sample_step": steps, "cycle": np.zeros(samples, np.int64), "grad_evals": grads * steps,
            "wall_seconds": np.repeat(0.5 * steps[:, None], chains, 1),
            "test": {"ensemble_accuracy": np.full((samples, chains), 0.8, np.float32),
                     "pointwise_accuracy": np.full((samples, chains), 0.7, np.float32),
                     "mean_log_likelihood": np.full((samples, chains), -0.5, np.float32)},
        },
        "warmup": {"trace": {"step": np.array([10, 20]), "grad_evals": grads * np.array([10, 20]),
                             "wall_seconds": np.ones((2, chains)), "test_accuracy": np.full((2, chains), 0.6, np.float32)}},
    }
    if draws:
        arrays["draws"] = {"step": np.arange(1, draws + 1),
                           "test": {"true_class_log_prob": np.log(rng.beta(5, 2, (draws, chains, n))).astype(np.float16)}}
    if kernel_trace:
        arrays["kernel_trace"] = {"step": steps, **kernel_trace}
    settings = schema.sampler_settings({"kernel": kernel, "step_size": 1e-3})
    attrs = {"sampler": {"name": kernel, **settings}, "chains": chains, "num_samples": samples,
             "schedule": {"warmup_steps": 20, "sampling_steps": samples, "thinning": 1},
             "device": {"device_kind": "cpu"}, "schema_version": h5io.PREDICTIVE_SCHEMA_VERSION}
    if warmup_grad_evals is not None:
        attrs["warmup_grad_evals"] = warmup_grad_evals
    h5io.write_arrays(path, arrays, attrs)
    return path


#: Kernels whose chains are not Markov chains, in these tests.
BASELINES = ("map", "laplace")


def baselines_are_not_markov_chains(monkeypatch):
    """``kernels.markov_chain`` answers False for the :data:`BASELINES`, whether or not their modules exist."""
    real = kernels.markov_chain
    monkeypatch.setattr(kernels, "markov_chain", lambda name: name not in BASELINES and real(name))


#: Three members' predicted classes on four test examples of labels ``MEMBER_LABELS``, each member giving its
#: class 0.8 and the two others 0.1 (:func:`member_log_probs`): members 0 and 1 predict different classes on
#: 2 of the 4 examples, 0 and 2 on 3, 1 and 2 on 2; two predictions that differ are 0.7 apart in total variation.
MEMBER_CLASSES = np.array([[0, 0, 0, 0], [0, 0, 1, 1], [0, 2, 2, 1]])
MEMBER_LABELS = np.array([0, 1, 2, 1], np.uint8)
MEMBER_DISAGREEMENT = np.array([[0, 2, 3], [2, 0, 2], [3, 2, 0]]) / 4
#: Per example, the largest minus the smallest member's true-class probability: examples 0 and 1 (all 0.8,
#: all 0.1) have none, 2 and 3 0.7.
MEMBER_SPREAD = np.array([0, 0, 0.7, 0.7])


def member_log_probs(classes, repeat=1):
    """Log-probabilities [C, 4 repeat, 3]: each member's predicted class 0.8, the others 0.1, ``repeat`` times."""
    probs = np.full((*classes.shape, 3), 0.1)
    np.put_along_axis(probs, classes[..., None], 0.8, axis=2)
    return np.log(np.tile(probs, (1, repeat, 1))).astype(np.float32)


def baseline_predictive(path, log_probs=None, labels=None, chains=3, kernel="map", warmup_grad_evals=600, draws=0):
    """A predictive file of a baseline's members (kernel ``kernel``): test ``log_probs`` [C, n, K] and ``labels``
    (or :func:`fake_predictive`'s, of ``chains`` members), one kept draw per member whose sampling spent no
    gradient (map's), and ``warmup_grad_evals`` per chain in training."""
    chains, n = (chains, 40) if log_probs is None else log_probs.shape[:2]
    fake_predictive(path, chains=chains, n=n, samples=1, grads=0, draws=draws, warmup_grad_evals=warmup_grad_evals)
    arrays, attrs = h5io.read_arrays(path)
    if log_probs is not None:
        arrays["test"] = {"log_probs": log_probs, "last_log_probs": log_probs, "labels": np.asarray(labels, np.uint8),
                          "mean_entropy": np.zeros((chains, n), np.float32)}
    attrs["sampler"]["kernel"] = kernel
    h5io.write_arrays(path, arrays, attrs)
    return str(path)


def write_test_images(path, labels):
    """A data file whose test split has the given ``labels`` (and random images), as the report rules read it."""
    rng = np.random.default_rng(0)
    labels = np.asarray(labels, np.uint8)
    data = ImageData(train=Split(rng.integers(0, 256, (8, 28, 28), dtype=np.uint8), np.zeros(8, np.uint8)),
                     test=Split(rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8), labels))
    h5io.write_data_h5(path, data, num_classes=10, attrs={})
    return str(path)


@pytest.fixture
def files(tmp_path):
    return {"sgld": str(fake_predictive(tmp_path / "sgld.h5")),
            "sghmc": str(fake_predictive(tmp_path / "sghmc.h5", seed=1, kernel="sghmc", grads=10))}


def read(path):
    return pd.read_csv(path, sep="\t")


def test_summary_has_one_row_per_sampler_with_known_numbers(tmp_path, files):
    out = tmp_path / "tables" / "summary.tsv"
    report.summary(predictive=files, threshold=0.5, bins=15, table=str(out))
    table = read(out)
    assert list(table.columns) == list(report.SUMMARY_COLUMNS)
    assert table["sampler"].tolist() == ["sgld", "sghmc"]
    arrays, _ = h5io.read_predictive(files["sgld"])
    pooled = arrays["test"]["probs"].mean(0)
    expected = (pooled.argmax(1) == arrays["test"]["labels"]).mean()
    row = table.iloc[0]
    assert row["ensemble_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert row["pointwise_accuracy"] == pytest.approx(0.7)
    assert row["grad_evals"] == 5 and table.iloc[1]["grad_evals"] == 50
    assert row["chains"] == 2 and row["device"] == "cpu"


def test_comparison_table_and_figure(tmp_path, files):
    fig, tab, ranking = tmp_path / "c.png", tmp_path / "c.tsv", tmp_path / "r.png"
    verdicts = {}
    for name, (rhat, per_second) in {"sgld": (1.3, 0.5), "sghmc": (1.1, 2.0)}.items():
        verdicts[name] = str(tmp_path / f"{name}_verdict.tsv")
        pd.DataFrame([{"sampler": name, "converged": False, "rhat": rhat, "ess_bulk": 5.0,
                       "ess_bulk_per_second": per_second, "ess_bulk_per_1k_grad_evals": 10 / per_second}]).to_csv(
            verdicts[name], sep="\t", index=False)
    report.comparison(predictive=files, samplers=list(files), figure=str(fig), table=str(tab), dpi=60,
                      verdicts=verdicts, ranking_figure=str(ranking))
    table = read(tab)
    assert fig.stat().st_size > 1000 and ranking.stat().st_size > 1000
    # Ordered by ESS per second; each criterion ranked, 1 = best (a lower R-hat and NLL are better).
    assert table["sampler"].tolist() == ["sghmc", "sgld"]
    ranks = table.set_index("sampler")
    assert ranks.loc["sghmc", "rank_ess_bulk_per_second"] == 1 and ranks.loc["sgld", "rank_ess_bulk_per_1k_grad_evals"] == 1
    assert ranks.loc["sghmc", "rank_rhat"] == 1
    assert ranks.loc["sgld", "rank_nll"] == (1 if ranks.loc["sgld", "nll"] < ranks.loc["sghmc", "nll"] else 2)
    gain = table["ensemble_gain_points"] - 100 * (table["ensemble_accuracy"] - table["last_sample_accuracy"])
    assert np.allclose(gain, 0, atol=1e-6)
    assert table["sampling_seconds"].tolist() == [2.5, 2.5]
    assert table["hottest_kinetic_temperature"].isna().all()  # neither kernel carries a momentum


def test_comparison_reports_the_mean_kinetic_temperature_of_a_carried_momentum(tmp_path, files):
    hot = np.array([[1.0, 3.0], [5.0, 7.0], [9.0, 11.0], [13.0, 15.0], [17.0, 19.0]], np.float32)  # [samples, chains]
    files["persistent"] = str(fake_predictive(tmp_path / "p.h5", kernel="sghmc_persistent", grads=10, kernel_trace={
        "kinetic_temperature": np.ones_like(hot), "hottest_kinetic_temperature": hot}))
    tab = tmp_path / "c.tsv"
    report.comparison(predictive=files, samplers=list(files), figure=str(tmp_path / "c.png"), table=str(tab), dpi=60)
    table = read(tab).set_index("sampler")
    assert table.loc["persistent", "hottest_kinetic_temperature"] == pytest.approx(10.0)
    assert table.loc[["sgld", "sghmc"], "hottest_kinetic_temperature"].isna().all()


def test_threshold_table_is_long_format(tmp_path, files):
    tab = tmp_path / "t.tsv"
    report.threshold(predictive=files, samplers=list(files), points=10, figure=str(tmp_path / "t.png"),
                     rejection_figure=str(tmp_path / "r.png"), table=str(tab), dpi=60)
    table = read(tab)
    assert len(table) == 20 and set(table["sampler"]) == {"sgld", "sghmc"}
    assert table["dropped_share"].between(0, 1).all()
    assert table.groupby("sampler")["dropped_share"].apply(lambda s: s.is_monotonic_increasing).all()


def test_calibration_rows_per_predictor(tmp_path, files):
    tab = tmp_path / "cal.tsv"
    report.calibration(predictive=files["sgld"], sampler="sgld", samplers=list(files), bins=15, figure=str(tmp_path / "cal.png"),
                       table=str(tab), dpi=60)
    table = read(tab)
    assert table["predictor"].tolist() == ["ensemble", "last sample", "chain 0 ensemble", "chain 1 ensemble"]
    assert table["members"].tolist() == [1, 2, 1, 1]
    assert (table["ece"] >= 0).all() and (table["brier"] <= 2).all()


def test_uncertainty_outputs_and_mismatched_data(tmp_path, files):
    rng = np.random.default_rng(0)
    labels = (np.arange(40) % 10).astype(np.uint8)
    data = ImageData(train=Split(rng.integers(0, 256, (8, 28, 28), dtype=np.uint8), np.zeros(8, np.uint8)),
                     test=Split(rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), labels))
    h5io.write_data_h5(tmp_path / "data.h5", data, num_classes=10, attrs={})
    kwargs = dict(predictive=files["sgld"], data=str(tmp_path / "data.h5"), sampler="sgld", samplers=list(files),
                  threshold=0.5, n_images=6, images_figure=str(tmp_path / "i.png"),
                  per_class_figure=str(tmp_path / "p.png"), table=str(tmp_path / "u.tsv"), dpi=60)
    report.uncertainty(**kwargs)
    table = read(tmp_path / "u.tsv")
    assert len(table) == 6 and table["confidence"].is_monotonic_increasing
    assert table["test_index"].min() >= 20  # the confident first half is never among them
    shuffled = ImageData(train=data.train, test=Split(data.test.images, labels[::-1].copy()))
    h5io.write_data_h5(tmp_path / "data.h5", shuffled, num_classes=10, attrs={})
    with pytest.raises(DataError, match="other test data"):
        report.uncertainty(**kwargs)


def test_a_predictive_file_with_mismatched_shapes_is_named(tmp_path):
    path = fake_predictive(tmp_path / "bad.h5")
    with h5py.File(path, "a") as f:
        del f["test/mean_entropy"]
        f["test/mean_entropy"] = np.zeros((2, 39), np.float32)
    with pytest.raises(DataError, match=r"bad.h5: 'test/mean_entropy' should have shape \[2, 40\]"):
        report.summary(predictive={"sgld": str(path)}, threshold=0.5, bins=15, table=str(tmp_path / "s.tsv"))
    assert not (tmp_path / "s.tsv").exists()


def test_nll_on_shifted_sets_is_exact_where_probabilities_underflow(tmp_path):
    """A shifted set whose true-class log-probabilities lie between -110 and -300 (probabilities of 0 in
    float32): the shift table's NLL equals the float64 value computed here, for the ensemble (the
    log-mean-exp over chains) and for the last sample (averaged over chains)."""
    path = fake_predictive(tmp_path / "p.h5", chains=3, n=40)
    rng = np.random.default_rng(1)
    labels = (np.arange(40) % 10).astype(np.uint8)
    logits = rng.normal(size=(3, 40, 10))
    logits[:, np.arange(40), labels] -= rng.uniform(110, 300, size=(3, 40))
    log_probs = (logits - np.logaddexp.reduce(logits, axis=2, keepdims=True)).astype(np.float32)
    last = np.roll(log_probs, 1, axis=0)
    assert np.exp(log_probs[:, np.arange(40), labels]).max() == 0.0  # every true-class probability underflows
    with h5py.File(path, "a") as f:
        for level in (0, 0.5):
            group = f.create_group(f"shift/noise_{level}")
            group["log_probs"], group["last_log_probs"] = log_probs, last
            group["mean_entropy"], group["labels"] = np.zeros((3, 40), np.float32), labels
    report.shift(predictive={"sgld": str(path)}, bins=15, table=str(tmp_path / "s.tsv"),
                 figure=str(tmp_path / "s.png"), dpi=60)
    table = read(tmp_path / "s.tsv")
    picked = log_probs.astype(np.float64)[:, np.arange(40), labels]  # [C, n]
    ensemble = -np.mean(np.logaddexp.reduce(picked, axis=0) - np.log(3))
    last_sample = -np.mean(last.astype(np.float64)[:, np.arange(40), labels])
    rows = table.set_index(["level", "predictor"])["nll"]
    assert rows[(0.5, "ensemble")] == pytest.approx(ensemble, rel=1e-5)  # tables keep 6 digits
    assert rows[(0.5, "last sample")] == pytest.approx(last_sample, rel=1e-5)
    assert ensemble > 100  # the old floor of 1e-12 capped every example at 27.6 nats


def _verdict(path, name, converged, rhat):
    pd.DataFrame([{"sampler": name, "converged": converged, "rhat": rhat}]).to_csv(path, sep="\t", index=False)
    return str(path)


def _reference_diagnostics(path, test_rhat=1.005, shifted_rhat=1.005, threshold=1.01):
    """A reference's diagnostics table: the test set's and a shifted set's mean log-likelihood, and the function
    space, converged (its share of examples) though its largest R-hat over examples is 1.05."""
    rows = [("test", "mean log-likelihood", test_rhat, test_rhat <= threshold),
            ("shift/rotation_90", "mean log-likelihood", shifted_rhat, shifted_rhat <= threshold),
            ("test", diagnostics.FUNCTION_SPACE, 1.05, True)]
    pd.DataFrame([{"sampler": "reference", "set": group, "quantity": quantity, "rhat": rhat, "converged": converged}
                  for group, quantity, rhat, converged in rows]).to_csv(path, sep="\t", index=False)
    return str(path)


def test_agreement_with_the_reference_against_hand_computed_values(tmp_path, files, caplog):
    """A reference of 4 chains: its noise floor compares chains 0-1 pooled with chains 2-3 pooled; each
    sampler's row compares its pooled predictive with all 4 pooled; a sampler identical to the reference
    agrees fully at zero distance; an unconverged reference is warned about."""
    reference = str(fake_predictive(tmp_path / "reference.h5", chains=4, seed=7, kernel="hmc"))
    files = files | {"same": reference}  # the reference itself, as a sampler
    verdicts = {name: _verdict(tmp_path / f"{name}.tsv", name, False, 1.5) for name in files}
    verdicts["reference"] = _verdict(tmp_path / "ref.tsv", "reference", False, 1.2)
    table_path, figure = tmp_path / "agreement.tsv", tmp_path / "agreement.png"
    with caplog.at_level("WARNING"):
        report.agreement(predictive=files, reference=reference, verdicts=verdicts, samplers=list(files),
                         reference_diagnostics=_reference_diagnostics(tmp_path / "rd.tsv", test_rhat=1.2),
                         table=str(table_path), figure=str(figure), bins=15, dpi=60)
    table = read(table_path).set_index("sampler")
    assert table.index.tolist() == ["reference", "sgld", "sghmc", "same"]
    ref_log = h5io.read_arrays(reference)[0]["test"]["log_probs"].astype(np.float64)
    pooled = np.exp(ref_log).mean(axis=0)
    halves = np.exp(ref_log[:2]).mean(axis=0), np.exp(ref_log[2:]).mean(axis=0)
    assert table.loc["reference", "agreement"] == pytest.approx(np.mean(halves[0].argmax(1) == halves[1].argmax(1)))
    assert table.loc["reference", "total_variation"] == pytest.approx(np.abs(halves[0] - halves[1]).sum(1).mean() / 2)
    sgld = np.exp(h5io.read_arrays(files["sgld"])[0]["test"]["log_probs"].astype(np.float64)).mean(axis=0)
    assert table.loc["sgld", "agreement"] == pytest.approx(np.mean(sgld.argmax(1) == pooled.argmax(1)))
    assert table.loc["sgld", "total_variation"] == pytest.approx(np.abs(sgld - pooled).sum(1).mean() / 2, rel=1e-6)
    labels = h5io.read_arrays(reference)[0]["test"]["labels"]
    assert table.loc["sgld", "accuracy_diff"] == pytest.approx(
        np.mean(sgld.argmax(1) == labels) - np.mean(pooled.argmax(1) == labels))
    same = table.loc["same"]
    assert same["agreement"] == 1 and same["total_variation"] == pytest.approx(0, abs=1e-7)
    assert same["nll_diff"] == pytest.approx(0, abs=1e-9) and same["within_noise_floor"]
    assert table.loc["sghmc", "grad_evals"] == 50 and table.loc["reference", "rhat"] == 1.2
    assert "reference posterior has not converged on the test set (worst R-hat 1.200" in caplog.text
    assert figure.stat().st_size > 1000
    assert "matmul precision" not in caplog.text  # a CPU's float32, whatever the setting


def test_a_reference_unconverged_only_on_shifted_sets_is_no_warning_on_the_agreement(tmp_path, files, caplog,
                                                                                   monkeypatch):
    """Agreement is scored on the test set: a reference whose verdict fails only on a shifted set's quantity (as the
    CPU reference's rotated sets did) gets no red warning in the figure, and the log says what did not converge;
    one that fails on the test set gets the warning."""
    reference = str(fake_predictive(tmp_path / "reference.h5", chains=4, seed=7, kernel="hmc"))
    verdicts = {name: _verdict(tmp_path / f"{name}.tsv", name, False, 1.5) for name in files}
    verdicts["reference"] = _verdict(tmp_path / "ref.tsv", "reference", False, 1.013)
    drawn = {}
    monkeypatch.setattr(report.plots, "agreement", lambda *args, warning=None, **kw: drawn.update(warning=warning))
    for test_rhat, warned in ((1.008, False), (1.013, True)):
        caplog.clear()
        with caplog.at_level("WARNING"):
            report.agreement(predictive=files, reference=reference, verdicts=verdicts, samplers=list(files),
                             reference_diagnostics=_reference_diagnostics(tmp_path / "rd.tsv", test_rhat, 1.013),
                             table=str(tmp_path / "a.tsv"), figure=str(tmp_path / "a.png"), bins=15, dpi=40)
        assert (drawn["warning"] is not None) == warned, drawn
        if warned:
            assert drawn["warning"].startswith("the reference posterior has not converged on the test set (worst "
                                               "R-hat 1.013")
        else:
            assert "converged on the test set, which agreement is scored on (worst R-hat there 1.008), but not on " \
                   "every shifted set (worst R-hat 1.013" in caplog.text


@pytest.mark.parametrize("precision, backend, warned", [
    ("default", "gpu", True), ("float32", "gpu", False), ("default", "cpu", False), (None, "gpu", True),
])
def test_a_reference_sampled_at_tf32_on_a_gpu_is_warned_about(tmp_path, files, caplog, precision, backend, warned):
    """JAX's default precision is TF32 on recent NVIDIA GPUs, noise in the reference's Metropolis test; a file
    from before the setting (None) was computed at that default."""
    reference = fake_predictive(tmp_path / "reference.h5", chains=4, seed=7, kernel="hmc")
    arrays, attrs = h5io.read_arrays(reference)
    if precision is None:
        del attrs["sampler"]["matmul_precision"]
    else:
        attrs["sampler"]["matmul_precision"] = precision
    attrs["shard_runs"] = [{"shard": 0, "device": {"backend": backend}, "chains": [0, 1, 2, 3]}]
    h5io.write_arrays(reference, arrays, attrs)
    verdicts = {name: _verdict(tmp_path / f"{name}.tsv", name, True, 1.0) for name in [*files, "reference"]}
    with caplog.at_level("WARNING"):
        report.agreement(predictive=files, reference=str(reference), verdicts=verdicts, samplers=list(files),
                         reference_diagnostics=_reference_diagnostics(tmp_path / "rd.tsv"),
                         table=str(tmp_path / "a.tsv"), figure=str(tmp_path / "a.png"), bins=15, dpi=40)
    assert ("rounds every product's operands to TF32" in caplog.text) == warned, caplog.text


# --------------------------------------------------------------------------- baselines: not Markov chains


def map_diagnostics(tmp_path, monkeypatch, chains=3):
    """Rule diagnostics on a ``map`` run of the hand-made members (the first ``chains`` of
    :data:`MEMBER_CLASSES`, their four examples 10 times): its outputs' paths."""
    baselines_are_not_markov_chains(monkeypatch)
    labels = np.tile(MEMBER_LABELS, 10)
    predictive = baseline_predictive(tmp_path / "map.h5", member_log_probs(MEMBER_CLASSES[:chains], 10), labels,
                                     draws=1)
    out = {key: str(tmp_path / f"{key}.{'tsv' if 'table' in key else 'png'}")
           for key in ("table", "verdict_table", "least_table", "figure", "histogram", "least_figure")}
    report.chain_diagnostics(predictive=predictive, data=write_test_images(tmp_path / "data.h5", labels),
                             sampler="map", samplers=["sgld", "map"], threshold=1.01, ess_per_chain=100,
                             function_space_share=0.99, least=6, dpi=60, **out)
    return predictive, out


def test_comparison_ranks_a_baseline_on_what_applies_and_after_every_sampler_on_rhat_and_ess(
        tmp_path, files, monkeypatch):
    """A baseline's R-hat and ESS cells say it is not a Markov chain: missing to the ranks, which rank the
    samplers among themselves, and the baseline last; its one kept draw per chain and no sampling gradient
    draw in the figure."""
    files["map"], out = map_diagnostics(tmp_path, monkeypatch)
    verdicts = {"map": out["verdict_table"]}
    for name, (rhat, per_second) in {"sgld": (1.3, 0.5), "sghmc": (1.1, 2.0)}.items():
        verdicts[name] = str(tmp_path / f"{name}_verdict.tsv")
        pd.DataFrame([{"sampler": name, "converged": False, "rhat": rhat, "ess_bulk": 5.0,
                       "ess_bulk_per_second": per_second, "ess_bulk_per_1k_grad_evals": 10 / per_second}]).to_csv(
            verdicts[name], sep="\t", index=False)
    fig, tab, ranking = tmp_path / "c.png", tmp_path / "c.tsv", tmp_path / "r.png"
    report.comparison(predictive=files, samplers=list(files), figure=str(fig), table=str(tab), dpi=60,
                      verdicts=verdicts, ranking_figure=str(ranking))
    table = read(tab)
    assert table["sampler"].tolist() == ["sghmc", "sgld", "map"]
    ranks = table.set_index("sampler")
    for column in ("converged", "rhat", "ess_bulk", "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals"):
        assert ranks.loc["map", column] == diagnostics.NOT_A_MARKOV_CHAIN, column
    assert ranks["rank_rhat"].tolist()[:2] == [1, 2] and ranks["rank_ess_bulk_per_second"].tolist()[:2] == [1, 2]
    assert ranks.loc[["map"], ["rank_rhat", "rank_ess_bulk_per_second", "rank_ess_bulk_per_1k_grad_evals"]].isna().all(
        axis=None)
    assert ranks.loc["map", "rank_ensemble_accuracy"] >= 1  # accuracy and NLL apply to an ensemble too
    assert ranks.loc["map", "samples_per_chain"] == 1 and ranks.loc["map", "grad_evals"] == 0
    assert fig.stat().st_size > 1000 and ranking.stat().st_size > 1000


def test_the_summary_says_a_baseline_is_not_a_markov_chain_and_gives_its_members_diversity(
        tmp_path, files, monkeypatch):
    files["map"], out = map_diagnostics(tmp_path, monkeypatch)
    tab = tmp_path / "s.tsv"
    report.summary(predictive=files, threshold=0.5, bins=15, table=str(tab), diagnostics={"map": out["verdict_table"]})
    table = read(tab).set_index("sampler")
    assert list(table.reset_index().columns) == list(report.SUMMARY_COLUMNS)
    row = table.loc["map"]
    assert row["verdict"] == row["rhat"] == row["ess_bulk"] == row["converged"] == diagnostics.NOT_A_MARKOV_CHAIN
    pairs = MEMBER_DISAGREEMENT[np.triu_indices(3, 1)]
    assert row["member_disagreement"] == pytest.approx(pairs.mean(), rel=1e-5)
    assert row["member_total_variation"] == pytest.approx(0.7 * pairs.mean(), rel=1e-5)
    assert table.loc[["sgld", "sghmc"], ["member_disagreement", "member_total_variation"]].isna().all(axis=None)


def test_agreement_costs_a_run_its_warmup_and_says_a_baseline_is_not_a_markov_chain(tmp_path, files, monkeypatch):
    """total_grad_evals: chains x (warmup's + sampling's gradient evaluations per chain), from the files'
    attributes; empty for a file from before warmup_grad_evals was recorded (sgld's and sghmc's here)."""
    baselines_are_not_markov_chains(monkeypatch)
    reference = str(fake_predictive(tmp_path / "reference.h5", chains=4, seed=7, kernel="hmc", grads=3,
                                    warmup_grad_evals=100))
    files["map"] = baseline_predictive(tmp_path / "map.h5", chains=3, warmup_grad_evals=700)
    verdicts = {name: _verdict(tmp_path / f"{name}.tsv", name, False, 1.5) for name in ("sgld", "sghmc")}
    verdicts["map"] = _verdict(tmp_path / "map.tsv", "map", *[diagnostics.NOT_A_MARKOV_CHAIN] * 2)
    verdicts["reference"] = _verdict(tmp_path / "ref.tsv", "reference", True, 1.005)
    table_path, figure = tmp_path / "agreement.tsv", tmp_path / "agreement.png"
    report.agreement(predictive=files, reference=reference, verdicts=verdicts, samplers=list(files),
                     reference_diagnostics=_reference_diagnostics(tmp_path / "rd.tsv"),
                     table=str(table_path), figure=str(figure), bins=15, dpi=60)
    table = read(table_path).set_index("sampler")
    columns = list(report.AGREEMENT_COLUMNS)
    assert columns[columns.index("grad_evals") + 1] == "total_grad_evals"
    assert table.loc["reference", "total_grad_evals"] == 4 * (100 + 3 * 5)
    assert table.loc["map", "total_grad_evals"] == 3 * (700 + 0) and table.loc["map", "grad_evals"] == 0
    assert table.loc[["sgld", "sghmc"], "total_grad_evals"].isna().all()
    assert table.loc["map", "rhat"] == table.loc["map", "converged"] == diagnostics.NOT_A_MARKOV_CHAIN
    assert float(table.loc["reference", "rhat"]) == 1.005 and float(table.loc["sgld", "rhat"]) == 1.5
    with Image.open(figure) as image:  # two rows of panels: against device seconds and gradient evaluations
        assert image.size == (684, 468)
