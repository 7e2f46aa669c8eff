"""Report jobs on crafted predictive files with known answers (bnn_sgmcmc.report)."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from bnn_sgmcmc import h5io, report, schema
from bnn_sgmcmc.data import ImageData, Split
from bnn_sgmcmc.errors import DataError


def fake_predictive(path, chains=2, n=40, classes=10, samples=5, seed=0, kernel="sgld", grads=1, draws=0,
                    kernel_trace=None):
    """A predictive file with the workflow's layout and probabilities we control (and ``draws``
    function-space draws per chain of independent true-class probabilities)."""
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
    h5io.write_arrays(path, arrays, attrs)
    return path


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
    assert "reference posterior has not converged (worst R-hat 1.200" in caplog.text
    assert figure.stat().st_size > 1000
    assert "matmul precision" not in caplog.text  # a CPU's float32, whatever the setting


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
                         table=str(tmp_path / "a.tsv"), figure=str(tmp_path / "a.png"), bins=15, dpi=40)
    assert ("rounds every product's operands to TF32" in caplog.text) == warned, caplog.text
