"""The report rules' jobs: read predictive files, compute with ``analysis``, draw with ``plots``.

One function per report rule. Each reads the gathered predictive files (never
the sampler state), so changing a plotting or analysis setting reruns these
jobs only. Tables are tab-separated, written with pandas.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bnn_sgmcmc import analysis, h5io, plots

log = logging.getLogger(__name__)


def _load(predictive: Mapping[str, str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    return {name: h5io.read_predictive(path) for name, path in predictive.items()}


def _write_table(frame: pd.DataFrame, path: str) -> None:
    with h5io.atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def _ensemble(arrays: Mapping[str, Any]) -> np.ndarray:
    """All chains pooled: each chain's posterior-predictive mean, averaged (equal sample counts)."""
    return analysis.pool_chains(arrays["test"]["probs"])


def _run_facts(name: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What every per-sampler table reports: accuracies, chains, samples and compute."""
    trace = arrays["trace"]
    return {
        "sampler": name,
        "kernel": attrs["sampler"]["kernel"],
        "ensemble_accuracy": analysis.accuracy(_ensemble(arrays), arrays["test"]["labels"].astype(np.int64)),
        # The last kept sample of each chain alone, averaged over chains.
        "pointwise_accuracy": float(np.mean(trace["test"]["pointwise_accuracy"][-1])),
        "chains": int(attrs["chains"]),
        "samples_per_chain": int(attrs["num_samples"]),
        "grad_evals": int(trace["grad_evals"][-1]),
        "sampling_seconds": float(np.max(trace["wall_seconds"][-1])),
    }


def warmup(*, predictive: Mapping[str, str], samplers: Sequence[str], figure: str, dpi: int) -> None:
    """Figure: pointwise test accuracy against warmup step, one line per chain."""
    loaded = _load(predictive)
    traces = {
        name: (arrays["warmup"]["trace"]["step"], arrays["warmup"]["trace"]["test_accuracy"])
        for name, (arrays, _) in loaded.items()
    }
    plots.warmup(traces, plots.sampler_colors(samplers), figure, dpi=dpi)


def comparison(*, predictive: Mapping[str, str], samplers: Sequence[str], figure: str, table: str, dpi: int) -> None:
    """Figure: running-ensemble accuracy per step, gradient evaluation and second; table per sampler."""
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
        facts = _run_facts(name, arrays, attrs)
        facts["last_sample_accuracy"] = facts.pop("pointwise_accuracy")
        facts["ensemble_gain_points"] = 100 * (facts["ensemble_accuracy"] - facts["last_sample_accuracy"])
        rows.append(facts)
    plots.comparison(traces, plots.sampler_colors(samplers), figure, dpi=dpi)
    _write_table(pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS)), table)


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
    images, _ = h5io.read_data_h5(data, splits=("test",))  # the training images are not needed
    probs = _ensemble(arrays)
    labels = arrays["test"]["labels"].astype(np.int64)
    if len(images.test.labels) != len(labels) or not np.array_equal(images.test.labels, labels):
        raise h5io.DataError(f"{predictive} was made from other test data than {data}; rerun sampling.")
    idx = analysis.most_uncertain(probs, n_images)
    predicted = probs.argmax(axis=1)
    conf = analysis.confidence(probs)
    plots.uncertain_images(images.test.images[idx], labels[idx], predicted[idx], conf[idx], sampler, images_figure, dpi=dpi)
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
        probs, labels = _ensemble(arrays), arrays["test"]["labels"].astype(np.int64)
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


def _predictors(arrays: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
    """The predictors calibration compares; a list holds one array per chain to average over."""
    probs, last = arrays["test"]["probs"], arrays["test"]["last_probs"]
    out = {"ensemble": [analysis.pool_chains(probs)], "last sample": list(last)}
    if probs.shape[0] > 1:
        for c, chain in enumerate(arrays["chain"]):
            out[f"chain {int(chain)} ensemble"] = [probs[c]]
    return out


def calibration(
    *, predictive: str, sampler: str, samplers: Sequence[str], bins: int, figure: str, table: str, dpi: int
) -> None:
    """NLL, Brier, ECE and accuracy per predictor, and the reliability diagram."""
    arrays, _ = h5io.read_predictive(predictive)
    labels = arrays["test"]["labels"].astype(np.int64)
    rows, diagrams = [], {}
    for predictor, members in _predictors(arrays).items():
        scores = [
            {"accuracy": analysis.accuracy(p, labels), "nll": analysis.nll(p, labels),
             "brier": analysis.brier(p, labels), "ece": analysis.ece(p, labels, bins)}
            for p in members
        ]
        rows.append({"sampler": sampler, "predictor": predictor, "members": len(members)}
                    | {k: float(np.mean([s[k] for s in scores])) for k in scores[0]})
        if predictor in ("ensemble", "last sample"):
            diagrams[predictor if len(members) == 1 else f"{predictor} (chain {int(arrays['chain'][0])})"] = (
                analysis.reliability(members[0], labels, bins)
            )
    plots.reliability(diagrams, sampler, plots.sampler_colors(samplers)[sampler], figure, dpi=dpi)
    _write_table(pd.DataFrame(rows), table)


COMPARISON_COLUMNS = (
    "sampler", "kernel", "chains", "samples_per_chain", "ensemble_accuracy", "last_sample_accuracy",
    "ensemble_gain_points", "grad_evals", "sampling_seconds",
)
SUMMARY_COLUMNS = (
    "sampler", "kernel", "ensemble_accuracy", "pointwise_accuracy", "nll", "ece", "brier", "certain_share",
    "aurc", "rhat", "ess", "ess_per_second", "ess_per_1k_grad_evals", "ood_auroc_entropy", "ood_auroc_mi",
    "decision_cost", "chains", "samples_per_chain", "grad_evals", "sampling_seconds", "device",
)


def summary(
    *, predictive: Mapping[str, str], threshold: float, bins: int, table: str,
    diagnostics: Mapping[str, str] | None = None, ood_table: str | None = None, decisions_table: str | None = None,
) -> None:
    """One row per sampler: accuracies, scores, certain share, diagnostics, OOD AUROC, decision cost, compute.

    ``diagnostics`` (per-sampler tables), ``ood_table`` and ``decisions_table``
    are the other report rules' tables; their headline numbers join the row
    (the worst R-hat and smallest ESS over the diagnosed quantities, the
    ensemble's AUROCs, the realised cost of the posterior's Bayes decisions).
    """
    extra: dict[str, dict[str, Any]] = {}
    for name, path in (diagnostics or {}).items():
        frame = pd.read_csv(path, sep="\t")
        extra.setdefault(name, {}).update(
            rhat=frame["rhat"].max(), ess=frame["ess"].min(), ess_per_second=frame["ess_per_second"].min(),
            ess_per_1k_grad_evals=frame["ess_per_1k_grad_evals"].min(),
        )
    if ood_table:
        frame = pd.read_csv(ood_table, sep="\t")
        for _, row in frame[frame["predictor"] == "ensemble"].iterrows():
            key = {"predictive entropy": "ood_auroc_entropy", "mutual information": "ood_auroc_mi"}[row["score"]]
            extra.setdefault(row["sampler"], {})[key] = row["auroc"]
    if decisions_table:
        frame = pd.read_csv(decisions_table, sep="\t")
        for _, row in frame[frame["rule"] == "bayes (posterior)"].iterrows():
            extra.setdefault(row["sampler"], {})["decision_cost"] = row["realised_cost"]
    rows = []
    for name, (arrays, attrs) in _load(predictive).items():
        labels = arrays["test"]["labels"].astype(np.int64)
        scores = analysis.summary(_ensemble(arrays), labels, threshold=threshold, bins=bins)
        scores.pop("accuracy")  # the same number as the facts' ensemble_accuracy
        device = attrs.get("device") or {}
        rows.append(_run_facts(name, arrays, attrs) | scores | extra.get(name, {})
                    | {"device": device.get("device_kind", "")})
    _write_table(pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)), table)


# --------------------------------------------------------------------------- diagnostics, shift, OOD, decisions


def _sampling_seconds(attrs: Mapping[str, Any]) -> float:
    """Device seconds spent sampling: the sum over shards (they may run side by side)."""
    runs = attrs.get("shard_runs") or [attrs]
    return float(sum(float(r.get("run_seconds") or 0.0) for r in runs))


LOGLIK = "mean test log-likelihood"
WATCHED = "true-class probability of watched examples"


def _split_diagnostics(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split R-hat and ESS per traced value of [C, S, ...] draws; NaN where there is nothing to diagnose.

    That is every value with fewer than 4 draws per chain, and a probability
    stuck at 0 or 1 in every draw (0/0).
    """
    from bnn_sgmcmc import diagnostics

    if draws.shape[1] < 4:
        nan = np.full(draws.shape[2:] or (1,), np.nan)
        return nan, nan
    rhat = np.atleast_1d(diagnostics.split_rhat(draws))
    ess = np.atleast_1d(diagnostics.ess(draws))
    flat = np.atleast_1d(draws.reshape(draws.shape[0] * draws.shape[1], -1).std(axis=0) < 1e-6)
    return np.where(flat, np.nan, rhat), np.where(flat, np.nan, ess)


def _diagnosed(arrays: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per diagnosed quantity: its draws [C, S, ...] and their split R-hat and ESS per value."""
    trace = arrays["trace"]["test"]
    quantities = {LOGLIK: np.asarray(trace["mean_log_likelihood"]).T}  # [C, S]
    if "watched_probs" in trace:
        quantities[WATCHED] = np.moveaxis(np.asarray(trace["watched_probs"]), 0, 1)  # [C, S, m]
    return {quantity: (draws, *_split_diagnostics(draws)) for quantity, draws in quantities.items()}


def diagnostics_rows(
    name: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any], threshold: float,
    diagnosed: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
) -> list[dict[str, Any]]:
    """Split R-hat and ESS of the traced predictions of one sampler, with ESS per second and per gradient."""
    chains = int(attrs["chains"])
    grad_evals = chains * int(arrays["trace"]["grad_evals"][-1])
    seconds = _sampling_seconds(attrs)
    rows = []
    for quantity, (draws, rhat, ess) in (diagnosed or _diagnosed(arrays)).items():
        if draws.shape[1] < 4:
            log.warning("%s: %d kept samples per chain are too few for split R-hat and ESS (at least 4).",
                        name, draws.shape[1])
        known = np.isfinite(rhat) & np.isfinite(ess)
        worst = float(rhat[known].max()) if known.any() else float("nan")
        least = float(ess[known].min()) if known.any() else float("nan")
        row = {
            "sampler": name, "quantity": quantity, "values": int(known.sum()), "chains": chains,
            "samples_per_chain": draws.shape[1], "rhat": worst,
            "ess": least, "ess_median": float(np.median(ess[known])) if known.any() else float("nan"),
            "ess_per_second": least / seconds if seconds > 0 else float("nan"),
            "ess_per_1k_grad_evals": 1000 * least / grad_evals,
            "converged": bool(worst <= threshold),
        }
        rows.append(row)
        if known.any() and not row["converged"]:
            log.warning(
                "%s: split R-hat of the %s is %.3f > %.3f: the chains have not converged (run longer warmup, more "
                "samples or a smaller step size)", name, quantity, worst, threshold,
            )
    return rows


def chain_diagnostics(
    *, predictive: str, sampler: str, samplers: Sequence[str], threshold: float, table: str, figure: str, dpi: int
) -> None:
    """Rule diagnostics: the R-hat/ESS table and the trace plot of one sampler."""
    arrays, attrs = h5io.read_predictive(predictive)
    diagnosed = _diagnosed(arrays)
    rows = diagnostics_rows(sampler, arrays, attrs, threshold, diagnosed)
    trace = arrays["trace"]["test"]
    series = {LOGLIK: np.asarray(trace["mean_log_likelihood"])}
    rhats = {LOGLIK: rows[0]["rhat"]}
    if WATCHED in diagnosed:
        watched, per_example, _ = diagnosed[WATCHED]  # [C, S, m]
        worst = int(np.argmax(np.nan_to_num(per_example, nan=-np.inf)))
        index = int(arrays["test"]["watch"][worst]) if "watch" in arrays["test"] else worst
        label = f"true-class probability of test example {index} (largest R-hat of the watched)"
        series[label] = watched[:, :, worst].T  # [S, C]
        rhats[label] = rows[1]["rhat"]
    plots.chain_traces(arrays["trace"]["sample_step"], series, rhats, threshold, sampler,
                       plots.sampler_colors(samplers)[sampler], figure, dpi=dpi)
    _write_table(pd.DataFrame(rows), table)


SHIFT_METRICS = ("accuracy", "nll", "ece", "mean entropy")


def _shift_scores(probs: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, float]:
    return {"accuracy": analysis.accuracy(probs, labels), "nll": analysis.nll(probs, labels),
            "ece": analysis.ece(probs, labels, bins), "mean entropy": float(np.mean(analysis.entropy(probs)))}


def shift(*, predictive: Mapping[str, str], bins: int, table: str, figure: str, dpi: int) -> None:
    """Rule shift: accuracy, NLL, ECE and mean predictive entropy against each kind and level of shift.

    The ensemble (all chains pooled) against the last single sample (per chain, averaged).
    """
    from bnn_sgmcmc import shift as shift_mod

    rows, curves = [], {}
    loaded = _load(predictive)
    colors = plots.sampler_colors(list(loaded))
    for name, (arrays, _) in loaded.items():
        sets = arrays.get("shift", {})
        names = [f"shift/{k}" for k in sets]
        for kind in ("rotation", "noise"):
            for level, set_name in shift_mod.levels(names, kind):
                data = h5io.lookup(arrays, set_name)
                labels = data["labels"].astype(np.int64)
                predictors = {"ensemble": [analysis.pool_chains(data["probs"])], "last sample": list(data["last_probs"])}
                for predictor, members in predictors.items():
                    scores = [_shift_scores(p, labels, bins) for p in members]
                    mean = {m: float(np.mean([s[m] for s in scores])) for m in SHIFT_METRICS}
                    rows.append({"sampler": name, "shift": kind, "level": level, "predictor": predictor,
                                 "examples": len(labels)} | mean)
                    for m in SHIFT_METRICS:
                        x, y = curves.setdefault(kind, {}).setdefault(m, {}).setdefault(f"{name} | {predictor}", ([], []))
                        x.append(level)
                        y.append(mean[m])
    columns = ["sampler", "shift", "level", "predictor", "examples", *SHIFT_METRICS]
    _write_table(pd.DataFrame(rows, columns=columns), table)
    if curves:
        plots.shift_curves(curves, colors, figure, dpi=dpi)
    else:
        plots.unavailable("No shifted test sets: shift.rotations and shift.noise are empty.", figure, dpi=dpi)


OOD_COLUMNS = ("sampler", "score", "predictor", "auroc", "in_examples", "ood_examples", "in_mean", "ood_mean")


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
    rows, scores, aurocs = [], {}, {}
    for name, (arrays, _) in loaded.items():
        per_set = {}
        for set_name in ("test", "ood"):
            data = arrays[set_name]
            pooled, pooled_h = analysis.pool_chains(data["probs"]), analysis.pool_chains(data["mean_entropy"])
            per_set[set_name] = {
                "predictive entropy": analysis.entropy(pooled),
                "mutual information": analysis.mutual_information(pooled, pooled_h),
                "last-sample entropy": analysis.entropy(data["last_probs"][0]),
            }
        scores[name], aurocs[name] = {}, {}
        for score in ("predictive entropy", "mutual information", "last-sample entropy"):
            inside, outside = per_set["test"][score], per_set["ood"][score]
            value = analysis.auroc(inside, outside)
            rows.append({"sampler": name, "score": score,
                         "predictor": "last sample (chain 0)" if score.startswith("last") else "ensemble",
                         "auroc": value, "in_examples": len(inside), "ood_examples": len(outside),
                         "in_mean": float(inside.mean()), "ood_mean": float(outside.mean())})
            if not score.startswith("last"):
                scores[name][score], aurocs[name][score] = (inside, outside), value
    _write_table(pd.DataFrame(rows, columns=list(OOD_COLUMNS)), table)
    plots.ood_histograms(scores, aurocs, figure, dpi=dpi)


def decision_rows(
    name: str, arrays: Mapping[str, Any], costs: Any, reject: float | None, threshold: float,
    pairs: Sequence[tuple[int, int]],
) -> list[dict[str, Any]]:
    """Each decision rule's expected and realised cost on the test set, and its counts of the ``pairs`` confusions."""
    labels = arrays["test"]["labels"].astype(np.int64)
    pooled = analysis.pool_chains(arrays["test"]["probs"])
    k = pooled.shape[1]
    c = analysis.check_costs(costs, k, reject)
    last = arrays["test"]["last_probs"][0]
    rules = {
        "bayes (posterior)": analysis.bayes_decisions(pooled, c, reject),
        "bayes (last sample)": analysis.bayes_decisions(last, c, reject),
        "argmax": pooled.argmax(axis=1),
        f"threshold {threshold:g}": analysis.threshold_decisions(pooled, threshold),
    }
    rows = []
    for rule, actions in rules.items():
        result = analysis.evaluate_decisions(actions, pooled, labels, c, reject)
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


def decisions(
    *, predictive: Mapping[str, str], costs: Any, reject: float | None, threshold: float, table: str, figure: str,
    dpi: int,
) -> None:
    """Rule decisions: least posterior expected cost against arg-max and the notebook's threshold rule."""
    loaded = _load(predictive)
    # The same confusions for every sampler: chosen on the first one.
    arrays = next(iter(loaded.values()))[0]
    labels, pooled = arrays["test"]["labels"].astype(np.int64), analysis.pool_chains(arrays["test"]["probs"])
    pairs = costly_pairs(analysis.check_costs(costs, pooled.shape[1], reject), pooled.argmax(axis=1), labels)
    rows = [row for name, (arrays, _) in loaded.items()
            for row in decision_rows(name, arrays, costs, reject, threshold, pairs)]
    _write_table(pd.DataFrame(rows), table)
    plots.decision_costs(rows, plots.sampler_colors(list(loaded)), figure, dpi=dpi)
