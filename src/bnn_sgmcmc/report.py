"""The report rules' jobs: read predictive files, compute with ``analysis`` and ``diagnostics``, draw with ``plots``.

One function per report rule. Each reads the gathered predictive files (never
the sampler state), so changing a plotting or analysis setting reruns these
jobs only. What a rule computes lives in ``analysis`` (predictive metrics,
calibration, shift, OOD, decisions, agreement), ``diagnostics`` (R-hat, ESS,
verdicts, and for a baseline, whose chains are not Markov chains, its members'
diversity instead) and ``runs`` (a run's settings and compute); here are the
reads, the writes and the tables' layouts. Tables are tab-separated, written
with pandas.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bnn_sgmcmc import analysis, diagnostics, h5io, plots, runs

log = logging.getLogger(__name__)


def _load(predictive: Mapping[str, str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    return {name: h5io.read_predictive(path) for name, path in predictive.items()}


def _write_table(frame: pd.DataFrame, path: str) -> None:
    with h5io.atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def _read_row(path: str, **options: Any) -> pd.Series:
    """The first row of a one-row table that another rule wrote (a sampler's verdict)."""
    return pd.read_csv(path, sep="\t", **options).iloc[0]


def _test_images(predictive: str, data: str, labels: np.ndarray) -> np.ndarray:
    """The test images of the data file ``data``, checked to be those the predictive file was made from."""
    images, _ = h5io.read_data_h5(data, splits=("test",))  # the training images are not needed
    if len(images.test.labels) != len(labels) or not np.array_equal(images.test.labels, labels):
        raise h5io.DataError(f"{predictive} was made from other test data than {data}; rerun sampling.")
    return images.test.images


def warmup(*, predictive: Mapping[str, str], samplers: Sequence[str], figure: str, dpi: int) -> None:
    """Figure: pointwise test accuracy against warmup step, one line per chain; each sampler's step size
    over warmup and sampling, as its schedule sets it or, for a kernel that adapts it (HMC), as traced
    (the mean over chains)."""
    loaded = _load(predictive)
    traces = {
        name: (arrays["warmup"]["trace"]["step"], arrays["warmup"]["trace"]["test_accuracy"])
        for name, (arrays, _) in loaded.items()
    }
    sizes = {name: runs.step_sizes(arrays, attrs) for name, (arrays, attrs) in loaded.items()}
    plots.warmup(traces, plots.sampler_colors(samplers), figure, dpi=dpi, step_sizes=sizes)


#: The criteria the comparison ranks samplers by: column, and whether larger is better.
RANKED = {
    "ensemble_accuracy": True, "nll": False, "rhat": False, "ess_bulk_per_second": True,
    "ess_bulk_per_1k_grad_evals": True,
}
#: What the comparison takes from each sampler's diagnostics verdict table.
VERDICT_IN_COMPARISON = ("converged", "rhat", "ess_bulk", "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals")


def comparison(
    *, predictive: Mapping[str, str], samplers: Sequence[str], figure: str, table: str, dpi: int,
    verdicts: Mapping[str, str] | None = None, ranking_figure: str | None = None,
) -> None:
    """Figure: running-ensemble accuracy per step, gradient evaluation and second. Table: per sampler its
    accuracies, NLL and, from the diagnostics' ``verdicts``, convergence and ESS per second and per 1,000
    gradient evaluations, with its rank on each (1 = best), ordered by ESS per second: the sampler that
    comes closest to convergence per second of compute comes first. A baseline, whose chains are not Markov
    chains, has no R-hat or ESS (its cells say so) and no rank on them. ``ranking_figure`` draws the ranks'
    numbers."""
    loaded = _load(predictive)
    traces, rows = {}, []
    for name, (arrays, attrs) in loaded.items():
        trace = arrays["trace"]
        traces[name] = {
            "sample_step": trace["sample_step"],
            "grad_evals": trace["grad_evals"],
            "wall_seconds": trace["wall_seconds"],
            "ensemble_accuracy": trace["test"]["ensemble_accuracy"],
        }
        facts = runs.facts(name, arrays, attrs)
        facts["last_sample_accuracy"] = facts.pop("pointwise_accuracy")
        facts["ensemble_gain_points"] = 100 * (facts["ensemble_accuracy"] - facts["last_sample_accuracy"])
        facts["nll"] = analysis.nll(analysis.pool_log_chains(arrays["test"]["log_probs"]),
                                    arrays["test"]["labels"].astype(np.int64))
        facts["hottest_kinetic_temperature"] = runs.hottest_kinetic_temperature(arrays)
        if verdicts and name in verdicts:
            verdict = _read_row(verdicts[name])
            facts |= {k: verdict[k] for k in VERDICT_IN_COMPARISON}
        rows.append(facts)
    colors = plots.sampler_colors(samplers)
    plots.comparison(traces, colors, figure, dpi=dpi)
    frame = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    ranks = {column: f"rank_{column}" for column in RANKED}
    for column, larger in RANKED.items():
        # A baseline's R-hat and ESS cells say "not a Markov chain": missing here, ranked after every number.
        values = pd.to_numeric(frame[column], errors="coerce")
        frame[ranks[column]] = values.rank(ascending=not larger, method="min").astype("Int64")
    frame = frame.sort_values([ranks["ess_bulk_per_second"], "sampler"], na_position="last", kind="stable")
    _write_table(frame, table)
    if ranking_figure:
        plots.ranking(frame, ranks, colors, ranking_figure, dpi=dpi)


def uncertainty(
    *,
    predictive: str,
    data: str,
    sampler: str,
    samplers: Sequence[str],
    threshold: float,
    n_images: int,
    images_figure: str,
    per_class_figure: str,
    table: str,
    dpi: int,
) -> None:
    """The least confident test predictions (figure and table) and uncertain counts per digit."""
    arrays, _ = h5io.read_predictive(predictive)
    test_images = _test_images(predictive, data, arrays["test"]["labels"])
    probs = analysis.ensemble_probs(arrays["test"]["log_probs"])
    labels = arrays["test"]["labels"].astype(np.int64)
    idx = analysis.most_uncertain(probs, n_images)
    predicted = probs.argmax(axis=1)
    conf = analysis.confidence(probs)
    plots.uncertain_images(test_images[idx], labels[idx], predicted[idx], conf[idx], sampler, images_figure, dpi=dpi)
    counts = analysis.uncertain_per_class(probs, labels, threshold, probs.shape[1])
    plots.uncertain_per_class(counts, threshold, sampler, plots.sampler_colors(samplers)[sampler], per_class_figure, dpi=dpi)
    epistemic = analysis.mutual_information(probs, analysis.pool_chains(arrays["test"]["mean_entropy"]))
    _write_table(
        pd.DataFrame({
            "test_index": idx,
            "label": labels[idx],
            "predicted": predicted[idx],
            "confidence": conf[idx],
            "entropy": analysis.entropy(probs[idx]),
            "mutual_information": epistemic[idx],
        }),
        table,
    )
    log.info("%s: %.4f of test predictions exceed p = %g", sampler, analysis.certain_share(probs, threshold), threshold)


def threshold(
    *, predictive: Mapping[str, str], samplers: Sequence[str], points: int, figure: str, rejection_figure: str, table: str, dpi: int
) -> None:
    """Accuracy on kept examples and share dropped against the threshold; accuracy-rejection curves."""
    loaded = _load(predictive)
    thresholds = analysis.default_thresholds(points)
    curves, rejections, frames = {}, {}, []
    for name, (arrays, _) in loaded.items():
        probs, labels = analysis.ensemble_probs(arrays["test"]["log_probs"]), arrays["test"]["labels"].astype(np.int64)
        curves[name] = curve = analysis.threshold_curve(probs, labels, thresholds)
        rejections[name] = analysis.rejection_curve(probs, labels)
        frames.append(pd.DataFrame({
            "sampler": name,
            "threshold": curve.thresholds,
            "accuracy_kept": curve.accuracy_kept,
            "dropped_share": curve.dropped_share,
        }))
    colors = plots.sampler_colors(samplers)
    plots.threshold(curves, colors, figure, dpi=dpi)
    plots.rejection(rejections, colors, rejection_figure, dpi=dpi)
    _write_table(pd.concat(frames, ignore_index=True), table)


def calibration(
    *, predictive: str, sampler: str, samplers: Sequence[str], bins: int, figure: str, table: str, dpi: int
) -> None:
    """NLL, Brier, ECE and accuracy per predictor, and the reliability diagram."""
    arrays, _ = h5io.read_predictive(predictive)
    test, labels = arrays["test"], arrays["test"]["labels"].astype(np.int64)
    rows, diagrams = [], {}
    for predictor, members in analysis.predictors(test["log_probs"], test["last_log_probs"], arrays["chain"]).items():
        scores = analysis.mean_scores([analysis.calibration_scores(lp, labels, bins) for lp in members])
        rows.append({"sampler": sampler, "predictor": predictor, "members": len(members)} | scores)
        if predictor in (analysis.ENSEMBLE, analysis.LAST_SAMPLE):
            diagrams[predictor if len(members) == 1 else f"{predictor} (chain {int(arrays['chain'][0])})"] = (
                analysis.reliability(np.exp(members[0]), labels, bins)
            )
    plots.reliability(diagrams, sampler, plots.sampler_colors(samplers)[sampler], figure, dpi=dpi)
    _write_table(pd.DataFrame(rows), table)


COMPARISON_COLUMNS = (
    "sampler", "kernel", "schedule", "chains", "samples_per_chain", "ensemble_accuracy", "last_sample_accuracy",
    "ensemble_gain_points", "nll", "converged", "rhat", "ess_bulk", "ess_bulk_per_second",
    "ess_bulk_per_1k_grad_evals", "hottest_kinetic_temperature", "grad_evals", "sampling_seconds",
)
SUMMARY_COLUMNS = (
    "sampler", "kernel", "schedule", "ensemble_accuracy", "pointwise_accuracy", "nll", "ece", "brier", "certain_share",
    "aurc", "converged", "rhat", "ess_bulk", "ess_tail", "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals",
    "fs_share_rhat_ok", "fs_share_rhat_1.1", "more_samples_per_chain", "more_seconds", "verdict",
    "member_disagreement", "member_total_variation", "ood_auroc_entropy", "ood_auroc_mi", "decision_cost", "agreement",
    "total_variation", "chains", "samples_per_chain", "grad_evals", "sampling_seconds", "device",
)
#: What the summary takes from each sampler's diagnostics verdict table.
VERDICT_IN_SUMMARY = (
    "converged", "rhat", "ess_bulk", "ess_tail", "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals",
    "fs_share_rhat_ok", "fs_share_rhat_1.1", "more_samples_per_chain", "more_seconds", "member_disagreement",
    "member_total_variation",
)
#: The summary's columns of the ensemble's OOD AUROCs, by score.
OOD_IN_SUMMARY = {analysis.PREDICTIVE_ENTROPY: "ood_auroc_entropy", analysis.MUTUAL_INFORMATION: "ood_auroc_mi"}


def _verdict_in_summary(path: str) -> dict[str, Any]:
    """A sampler's verdict table's headline numbers, and the verdict in words (empty for a column that a table
    from before it lacks)."""
    row = _read_row(path, keep_default_na=False, na_values=[""])
    failures = row["failures"] if isinstance(row["failures"], str) else ""
    verdict = diagnostics.verdict_text(row["converged"], failures)
    return {k: row.get(k) for k in VERDICT_IN_SUMMARY} | {"verdict": verdict}


def _ood_in_summary(path: str) -> dict[str, dict[str, Any]]:
    """Per sampler, the ensemble's AUROCs from the OOD table (none where the step was skipped)."""
    frame, out = pd.read_csv(path, sep="\t"), {}
    for _, row in frame[frame["predictor"] == analysis.ENSEMBLE].iterrows():
        out.setdefault(row["sampler"], {})[OOD_IN_SUMMARY[row["score"]]] = row["auroc"]
    return out


def _decisions_in_summary(path: str) -> dict[str, dict[str, Any]]:
    """Per sampler, the realised cost of the posterior's Bayes decisions from the decisions table."""
    frame = pd.read_csv(path, sep="\t")
    rows = frame[frame["rule"] == analysis.BAYES_POSTERIOR].iterrows()
    return {row["sampler"]: {"decision_cost": row["realised_cost"]} for _, row in rows}


def _agreement_in_summary(path: str) -> dict[str, dict[str, Any]]:
    """Per sampler, its agreement with and total variation from the reference posterior."""
    rows = pd.read_csv(path, sep="\t").iterrows()
    return {row["sampler"]: {k: row[k] for k in analysis.REFERENCE_MEASURES} for _, row in rows}


def summary(
    *, predictive: Mapping[str, str], threshold: float, bins: int, table: str,
    diagnostics: Mapping[str, str] | None = None, ood_table: str | None = None, decisions_table: str | None = None,
    agreement_table: str | None = None,
) -> None:
    """One row per sampler: accuracies, scores, certain share, diagnostics, OOD AUROC, decision cost, agreement
    with the reference posterior, compute.

    ``diagnostics`` (per-sampler verdict tables), ``ood_table``,
    ``decisions_table`` and ``agreement_table`` are the other report rules'
    tables; their headline numbers join the row (the convergence verdict with
    the worst R-hat and smallest ESS over the traced quantities and the
    function-space shares, or, for a baseline whose chains are not Markov
    chains, its members' mean pairwise disagreement and total variation; the
    ensemble's AUROCs, the realised cost of the posterior's Bayes decisions,
    agreement with and total variation from the reference posterior, when the
    config has one).
    """
    extra: dict[str, dict[str, Any]] = {name: _verdict_in_summary(path) for name, path in (diagnostics or {}).items()}
    for path, read in ((ood_table, _ood_in_summary), (decisions_table, _decisions_in_summary),
                       (agreement_table, _agreement_in_summary)):
        for name, values in (read(path) if path else {}).items():
            extra.setdefault(name, {}).update(values)
    rows = []
    for name, (arrays, attrs) in _load(predictive).items():
        labels = arrays["test"]["labels"].astype(np.int64)
        scores = analysis.summary(analysis.pool_log_chains(arrays["test"]["log_probs"]), labels,
                                  threshold=threshold, bins=bins)
        scores.pop("accuracy")  # the same number as the facts' ensemble_accuracy
        device = attrs.get("device") or {}
        rows.append(runs.facts(name, arrays, attrs) | scores | extra.get(name, {})
                    | {"device": device.get("device_kind", "")})
    _write_table(pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)), table)


# --------------------------------------------------------------------------- diagnostics, shift, OOD, decisions


def _unavailable(message: str, *figures: str, dpi: int) -> None:
    for path in figures:
        plots.unavailable(message, path, dpi=dpi)


def chain_diagnostics(
    *, predictive: str, data: str, sampler: str, samplers: Sequence[str], threshold: float, ess_per_chain: float,
    function_space_share: float, least: int, table: str, verdict_table: str, least_table: str, figure: str,
    histogram: str, least_figure: str, dpi: int, threads: int = 1,
) -> None:
    """Rule diagnostics: per-quantity and function-space convergence, the verdict, and their figures; the
    function-space R-hat ranks its blocks of test examples on ``threads`` threads. A run whose chains are not
    Markov chains (a baseline's members) is shown by :func:`_member_diagnostics` instead."""
    arrays, attrs = h5io.read_predictive(predictive, draws=True)
    color = plots.sampler_colors(samplers)[sampler]
    if not runs.markov_chain(attrs):
        _member_diagnostics(predictive=predictive, data=data, arrays=arrays, attrs=attrs, sampler=sampler, color=color,
                            least=least, table=table, verdict_table=verdict_table, least_table=least_table,
                            figure=figure, histogram=histogram, least_figure=least_figure, dpi=dpi)
        return
    test = arrays["test"]
    draws = h5io.lookup(arrays, h5io.FUNCTION_SPACE) if "draws" in arrays else None  # [D, C, n] float16
    function_space = diagnostics.function_space_rhat(draws, threads=threads) if draws is not None else None
    rows = diagnostics.diagnostics_rows(sampler, arrays, attrs, threshold, ess_per_chain, function_space,
                                        function_space_share)
    _write_table(pd.DataFrame(rows, columns=list(diagnostics.DIAGNOSTICS_COLUMNS)), table)
    found = diagnostics.run_verdict(sampler, rows, function_space, arrays, attrs, threshold, function_space_share,
                                    ess_per_chain)
    _write_table(pd.DataFrame([found], columns=list(diagnostics.VERDICT_COLUMNS)), verdict_table)

    idx = diagnostics.least_converged(function_space, least) if function_space is not None else np.zeros(0, np.int64)
    loglik = "mean test log-likelihood"
    series = {loglik: (loglik, arrays["trace"]["sample_step"], arrays["trace"]["test"]["mean_log_likelihood"])}
    rhats = {loglik: next(r["rhat"] for r in rows if (r["set"], r["quantity"])
                          == (diagnostics.TEST_SET, diagnostics.TRACED["mean_log_likelihood"]))}
    if len(idx):
        worst = f"true-class probability of test example {int(idx[0])} (largest R-hat in function space)"
        series[worst] = ("true-class probability", arrays["draws"]["step"],
                         np.exp(draws[:, :, idx[0]].astype(np.float64)))  # [D], [D, C]
        rhats[worst] = float(function_space[idx[0]])
    plots.chain_traces(series, rhats, threshold, sampler, color, figure, dpi=dpi)
    least_rows = diagnostics.least_converged_table(test["log_probs"], test["labels"], function_space, idx)
    _write_table(pd.DataFrame(least_rows), least_table)

    if function_space is None:
        _unavailable("No function-space draws: diagnostics.draws_per_chain is 0.", histogram, least_figure, dpi=dpi)
        return
    if draws.shape[0] < 4:
        message = f"{draws.shape[0]} function-space draws per chain are too few for R-hat (at least 4)."
        _unavailable(message, histogram, least_figure, dpi=dpi)
        return
    plots.rhat_histogram(function_space, threshold, sampler, color, int(attrs["chains"]), histogram, dpi=dpi)
    if not len(idx):
        why = "diagnostics.least_converged is 0" if least == 0 else "every draw of every test example is the same"
        _unavailable(f"No least converged examples to show: {why}.", least_figure, dpi=dpi)
        return
    images = _test_images(predictive, data, test["labels"])
    plots.least_converged(
        images[idx], test["labels"][idx], function_space[idx], arrays["draws"]["step"],
        np.exp(draws[:, :, idx].astype(np.float64)), sampler, color, least_figure, dpi=dpi,
    )


def _member_diagnostics(
    *, predictive: str, data: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any], sampler: str, color: str,
    least: int, table: str, verdict_table: str, least_table: str, figure: str, histogram: str, least_figure: str,
    dpi: int,
) -> None:
    """Rule diagnostics for a run whose chains are not Markov chains (a baseline's independently trained
    members): no R-hat or ESS, whose cells say so, but the members' diversity on the test set. The verdict
    gives their mean pairwise disagreement and total variation; the figure their heatmaps, the histogram the
    spread of the members' true-class probabilities over test examples, the least figure and table the
    examples of widest spread. One member has nothing to compare: its figures say so."""
    test = arrays["test"]
    rows = diagnostics.member_rows(sampler, arrays, attrs)
    _write_table(pd.DataFrame(rows, columns=list(diagnostics.DIAGNOSTICS_COLUMNS)), table)
    diversity = diagnostics.member_diversity(test["log_probs"], test["labels"])
    found = diagnostics.member_verdict(sampler, attrs, diversity, arrays.get("kernel_trace", {}))
    _write_table(pd.DataFrame([found], columns=list(diagnostics.VERDICT_COLUMNS)), verdict_table)
    idx = diagnostics.least_agreeing(diversity.spread, least)
    _write_table(pd.DataFrame(diagnostics.least_agreeing_table(test["log_probs"], test["labels"], diversity, idx)),
                 least_table)

    members = int(test["log_probs"].shape[0])
    if members == 1:
        message = ("One member (chains: 1): no second member to disagree with. It is not a Markov chain either, "
                   "so there is no R-hat or ESS to show.")
        _unavailable(message, figure, histogram, least_figure, dpi=dpi)
        return
    plots.member_disagreement(diversity, sampler, figure, dpi=dpi)
    plots.member_spread_histogram(diversity.spread, sampler, color, members, histogram, dpi=dpi)
    if not len(idx):
        why = "diagnostics.least_converged is 0" if least == 0 else "the members agree on every example"
        _unavailable(f"No test examples on which the members disagree to show: {why}.", least_figure, dpi=dpi)
        return
    labels = test["labels"].astype(np.int64)[idx]
    plots.least_agreeing(
        _test_images(predictive, data, test["labels"])[idx], labels, diversity.spread[idx],
        np.exp(test["log_probs"][:, idx, labels].astype(np.float64)),
        analysis.ensemble_probs(test["log_probs"])[idx, labels], sampler, color, least_figure, dpi=dpi,
    )


def shift(*, predictive: Mapping[str, str], bins: int, table: str, figure: str, dpi: int) -> None:
    """Rule shift: accuracy, NLL, ECE and mean predictive entropy against each kind and level of shift.

    The ensemble (all chains pooled) against the last single sample (per chain, averaged).
    """
    from bnn_sgmcmc import shift as shift_mod

    rows, curves = [], {}
    loaded = _load(predictive)
    colors = plots.sampler_colors(list(loaded))
    for name, (arrays, _) in loaded.items():
        names = [f"{shift_mod.GROUP}/{k}" for k in arrays.get(shift_mod.GROUP, {})]
        for kind in shift_mod.KINDS:
            for level, set_name in shift_mod.levels(names, kind):
                data = h5io.lookup(arrays, set_name)
                labels = data["labels"].astype(np.int64)
                for predictor, members in analysis.predictors(data["log_probs"], data["last_log_probs"]).items():
                    mean = analysis.mean_scores([analysis.shift_scores(lp, labels, bins) for lp in members])
                    rows.append({"sampler": name, "shift": kind, "level": level, "predictor": predictor,
                                 "examples": len(labels)} | mean)
                    for m in analysis.SHIFT_METRICS:
                        x, y = curves.setdefault(kind, {}).setdefault(m, {}).setdefault((name, predictor), ([], []))
                        x.append(level)
                        y.append(mean[m])
    columns = ["sampler", "shift", "level", "predictor", "examples", *analysis.SHIFT_METRICS]
    _write_table(pd.DataFrame(rows, columns=columns), table)
    if curves:
        plots.shift_curves(curves, colors, figure, dpi=dpi)
    else:
        plots.unavailable("No shifted test sets: shift.rotations and shift.noise are empty.", figure, dpi=dpi)


OOD_COLUMNS = ("sampler", "score", "predictor", "auroc", "in_examples", "ood_examples", "in_mean", "ood_mean")


def _warn_if_ood_is_in_distribution(source: str, attrs: Mapping[str, Any]) -> None:
    """Warn when the out-of-distribution images are a split of the training data set itself, where every
    AUROC is about 0.5 and says nothing about the samplers."""
    split = runs.ood_split(attrs)
    if split is not None:
        log.warning(
            "ood.source %s gives the same images as the %s split of data.source: in- and out-of-distribution "
            "are one set, so every AUROC is about 0.5 and says nothing. Set ood.source to another data set "
            "(for MNIST, e.g. fashion_mnist).", source, split,
        )


def ood(*, predictive: Mapping[str, str], source: str | None, table: str, figure: str, dpi: int) -> None:
    """Rule ood: AUROC of in- against out-of-distribution by predictive entropy and mutual information.

    Without an OOD source the table and figure say the step was skipped.
    """
    loaded = _load(predictive)
    if source is None or any("ood" not in arrays for arrays, _ in loaded.values()):
        message = "Skipped: no out-of-distribution source (set ood.source, e.g. fashion_mnist or a local folder)."
        log.info("%s", message)
        _write_table(pd.DataFrame([{"sampler": s, "score": "skipped", "predictor": message} for s in loaded],
                                  columns=list(OOD_COLUMNS)), table)
        plots.unavailable(message, figure, dpi=dpi)
        return
    _warn_if_ood_is_in_distribution(source, next(iter(loaded.values()))[1])
    rows, scores, aurocs = [], {}, {}
    for name, (arrays, _) in loaded.items():
        per_set = {s: analysis.ood_scores(arrays[s]["probs"], arrays[s]["mean_entropy"], arrays[s]["last_probs"])
                   for s in ("test", "ood")}
        scores[name], aurocs[name] = {}, {}
        for score, predictor in analysis.OOD_SCORES.items():
            inside, outside = per_set["test"][score], per_set["ood"][score]
            value = analysis.auroc(inside, outside)
            rows.append({"sampler": name, "score": score, "predictor": predictor,
                         "auroc": value, "in_examples": len(inside), "ood_examples": len(outside),
                         "in_mean": float(inside.mean()), "ood_mean": float(outside.mean())})
            if predictor == analysis.ENSEMBLE:
                scores[name][score], aurocs[name][score] = (inside, outside), value
    _write_table(pd.DataFrame(rows, columns=list(OOD_COLUMNS)), table)
    plots.ood_histograms(scores, aurocs, figure, dpi=dpi)


def decisions(
    *, predictive: Mapping[str, str], costs: Any, reject: float | None, threshold: float, table: str, figure: str,
    dpi: int,
) -> None:
    """Rule decisions: least posterior expected cost against arg-max and the notebook's threshold rule."""
    loaded = _load(predictive)
    # The same confusions for every sampler: chosen on the first one.
    arrays = next(iter(loaded.values()))[0]
    labels, pooled = arrays["test"]["labels"].astype(np.int64), analysis.pool_chains(arrays["test"]["probs"])
    pairs = analysis.costly_pairs(analysis.check_costs(costs, pooled.shape[1], reject), pooled.argmax(axis=1), labels)
    rows = [
        row for name, (arrays, _) in loaded.items()
        for row in analysis.decision_rows(name, arrays["test"]["probs"], arrays["test"]["last_probs"],
                                          arrays["test"]["labels"].astype(np.int64), costs, reject, threshold, pairs)
    ]
    _write_table(pd.DataFrame(rows), table)
    plots.decision_costs(rows, plots.sampler_colors(list(loaded)), figure, dpi=dpi)


# --------------------------------------------------------------------------- agreement with the reference posterior

#: The agreement table's columns; the reference's row holds its noise floor (its two halves of chains
#: against each other) and its own convergence.
AGREEMENT_COLUMNS = (
    "sampler", "kernel", "chains", "agreement", "total_variation", "within_noise_floor", "accuracy",
    "accuracy_diff", "nll", "nll_diff", "ece", "ece_diff", "device_seconds", "grad_evals", "total_grad_evals",
    "converged", "rhat",
    "acceptance_rate", "divergent_share", "step_size", "e_bfmi",
)


def _agreement_facts(
    name: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any], verdict: str, labels: np.ndarray, bins: int,
) -> tuple[dict[str, Any], np.ndarray]:
    """The columns every row of the agreement table has, from a run's predictive file and its ``verdict``
    table, and the run's pooled test predictive. A baseline's convergence and R-hat say, as its verdict
    does, that its chains are not Markov chains."""
    log_pooled = analysis.pool_log_chains(arrays["test"]["log_probs"])
    scores = analysis.summary(log_pooled, labels, bins=bins)
    found = _read_row(verdict)
    markov = not diagnostics.not_a_markov_chain(found["converged"])
    return {
        "sampler": name, "kernel": attrs["sampler"]["kernel"], "chains": int(arrays["test"]["log_probs"].shape[0]),
        "accuracy": scores["accuracy"], "nll": scores["nll"], "ece": scores["ece"],
        "device_seconds": runs.shard_seconds(attrs, "run_seconds", "warmup_run_seconds"),
        "grad_evals": int(arrays["trace"]["grad_evals"][-1]), "total_grad_evals": runs.total_grad_evals(arrays, attrs),
        "converged": bool(found["converged"]) if markov else diagnostics.NOT_A_MARKOV_CHAIN,
        "rhat": float(found["rhat"]) if markov else diagnostics.NOT_A_MARKOV_CHAIN,
    }, np.exp(log_pooled)


def _test_set_convergence(diagnostics_table: str) -> tuple[bool, float]:
    """Whether the reference converged on the test set, which agreement is scored on (no row of the test set in
    its diagnostics table, the function space's included, says False; an empty cell is a quantity with nothing
    to diagnose), and the largest R-hat of the test set's traced quantities (the function space's row holds the
    largest over examples, which its criterion allows a share of to exceed the threshold)."""
    table = pd.read_csv(diagnostics_table, sep="\t", dtype={"converged": str})
    test = table[table["set"] == diagnostics.TEST_SET]
    traced = test[test["quantity"] != diagnostics.FUNCTION_SPACE]
    return not test["converged"].eq("False").any(), float(pd.to_numeric(traced["rhat"], errors="coerce").max())


def _warn_about_the_reference(reference: Mapping[str, Any], attrs: Mapping[str, Any],
                              diagnostics_table: str) -> str | None:
    """Log what casts doubt on the reference (its agreement table row, predictive file's ``attrs`` and
    diagnostics table): not converged on the test set, TF32 products on a GPU, a low E-BFMI. Returns the first
    warning, for the figure's title. Where only the shifted sets' quantities did not converge, the agreement
    (scored on the test set) stands, and the log says so without a warning in the figure."""
    warning = None
    verdict = f"tables/diagnostics/{reference['sampler']}_verdict.tsv"
    if not reference["converged"]:
        on_test, test_rhat = _test_set_convergence(diagnostics_table)
        if on_test:
            log.warning("the reference posterior converged on the test set, which agreement is scored on (worst "
                        "R-hat there %.3f), but not on every shifted set (worst R-hat %.3f; see %s): its shift "
                        "results are less certain than its agreement", test_rhat, reference["rhat"], verdict)
        else:
            warning = (f"the reference posterior has not converged on the test set (worst R-hat {test_rhat:.3f}; "
                       f"see {verdict}): agreement with it is agreement with its chains so far")
            log.warning("%s", warning)
    # Files from before the setting computed at JAX's default.
    if runs.ran_on_gpu(attrs) and attrs["sampler"].get("matmul_precision", "default") == "default":
        log.warning("the reference ran on a GPU at JAX's default matmul precision, which on NVIDIA A100, H100 and "
                    "H200 GPUs rounds every product's operands to TF32: on MNIST about 0.7 of error in each change "
                    "of log density its Metropolis test judges (docs/benchmarks-history.md). Set "
                    "reference.matmul_precision to float32 (or BF16_BF16_F32_X3) and rerun the reference.")
    if reference["e_bfmi"] < diagnostics.E_BFMI_LOW:
        log.warning("the reference's E-BFMI is %.2f (< %.1f): its momentum resampling explores the energy poorly "
                    "(Betancourt 2016); longer trajectories or a tuned mass matrix may help",
                    reference["e_bfmi"], diagnostics.E_BFMI_LOW)
    return warning


def agreement(
    *, predictive: Mapping[str, str], reference: str, verdicts: Mapping[str, str], reference_diagnostics: str,
    samplers: Sequence[str], table: str, figure: str, bins: int, dpi: int,
) -> None:
    """Every sampler's test predictive against the reference posterior's (Izmailov et al. 2021): agreement
    (same predicted class), total variation, and the differences in accuracy, NLL and ECE. The reference's
    row compares its two halves of chains, the noise floor below which differences are not real, and
    gives its convergence (``verdicts[reference]``), acceptance rate, divergences and adapted step size.
    Every run's cost is its device seconds and its gradient evaluations of warmup and sampling over all
    chains (``total_grad_evals``: a baseline spends its gradients training, in warmup). A warning (logged, and in
    the figure's title) says when the reference has not converged on the test set (``reference_diagnostics``,
    its diagnostics table); the log says when only its shifted sets did not."""
    from bnn_sgmcmc.plan import REFERENCE

    ref_arrays, ref_attrs = h5io.read_predictive(reference)
    chains = ref_arrays["test"]["log_probs"].shape[0]
    if chains < 2:
        raise ValueError(f"{reference}: the reference has {chains} chain; its noise floor needs 2 or more")
    labels = ref_arrays["test"]["labels"].astype(np.int64)
    ref_row, ref_probs = _agreement_facts(REFERENCE, ref_arrays, ref_attrs, verdicts[REFERENCE], labels, bins)
    floor = analysis.noise_floor(ref_arrays["test"]["log_probs"])
    rows = [ref_row | floor | {"within_noise_floor": True} | {f"{m}_diff": 0.0 for m in analysis.REFERENCE_DIFFERENCES}
            | diagnostics.hmc_statistics(ref_arrays.get("kernel_trace", {}))]
    for name, path in predictive.items():
        row, probs = _agreement_facts(name, *h5io.read_predictive(path), verdicts[name], labels, bins)
        rows.append(row | analysis.against_reference(probs, row, ref_probs, ref_row, floor))
    frame = pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))
    _write_table(frame, table)
    warning = _warn_about_the_reference(rows[0], ref_attrs, reference_diagnostics)
    plots.agreement(frame, floor, plots.sampler_colors(list(samplers)), figure, dpi=dpi, warning=warning)
