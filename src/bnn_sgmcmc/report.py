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

from bnn_sgmcmc import analysis, diagnostics, h5io, plots

log = logging.getLogger(__name__)


def _load(predictive: Mapping[str, str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    return {name: h5io.read_predictive(path) for name, path in predictive.items()}


def _write_table(frame: pd.DataFrame, path: str) -> None:
    with h5io.atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def _ensemble_log(group: Mapping[str, Any]) -> np.ndarray:
    """Log-probabilities of all chains pooled: each chain's posterior-predictive mean, averaged (equal sample
    counts), in log space so that the NLL stays exact."""
    return analysis.pool_log_chains(group["log_probs"])


def _ensemble(arrays: Mapping[str, Any]) -> np.ndarray:
    """Probabilities of all chains pooled, on the test set."""
    return np.exp(_ensemble_log(arrays["test"]))


def _predictors(group: Mapping[str, Any], chains: np.ndarray | None = None) -> dict[str, list[np.ndarray]]:
    """The predictors a set is scored by, as log-probabilities: the ensemble of all chains pooled, each
    chain's last sample (a list, to average over) and, given ``chains``, each chain's own ensemble."""
    log_probs = group["log_probs"]
    out = {"ensemble": [_ensemble_log(group)], "last sample": list(group["last_log_probs"])}
    if chains is not None and log_probs.shape[0] > 1:
        for c, chain in enumerate(chains):
            out[f"chain {int(chain)} ensemble"] = [log_probs[c]]
    return out


def _test_images(predictive: str, data: str, labels: np.ndarray) -> np.ndarray:
    """The test images of the data file ``data``, checked to be those the predictive file was made from."""
    images, _ = h5io.read_data_h5(data, splits=("test",))  # the training images are not needed
    if len(images.test.labels) != len(labels) or not np.array_equal(images.test.labels, labels):
        raise h5io.DataError(f"{predictive} was made from other test data than {data}; rerun sampling.")
    return images.test.images


def _run_facts(name: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What every per-sampler table reports: accuracies, chains, samples and compute."""
    trace = arrays["trace"]
    return {
        "sampler": name,
        "kernel": attrs["sampler"]["kernel"],
        "schedule": attrs["sampler"]["schedule"]["kind"],
        "ensemble_accuracy": analysis.accuracy(_ensemble(arrays), arrays["test"]["labels"].astype(np.int64)),
        # The last kept sample of each chain alone, averaged over chains.
        "pointwise_accuracy": float(np.mean(trace["test"]["pointwise_accuracy"][-1])),
        "chains": int(attrs["chains"]),
        "samples_per_chain": int(attrs["num_samples"]),
        "grad_evals": int(trace["grad_evals"][-1]),
        "sampling_seconds": float(np.max(trace["wall_seconds"][-1])),
    }


def warmup(*, predictive: Mapping[str, str], samplers: Sequence[str], figure: str, dpi: int) -> None:
    """Figure: pointwise test accuracy against warmup step, one line per chain; each sampler's step size
    over warmup and sampling, as its schedule sets it or, for a kernel that adapts it (HMC), as traced
    (the mean over chains)."""
    from bnn_sgmcmc import schedules

    loaded = _load(predictive)
    traces = {
        name: (arrays["warmup"]["trace"]["step"], arrays["warmup"]["trace"]["test_accuracy"])
        for name, (arrays, _) in loaded.items()
    }
    sizes = {}
    for name, (arrays, attrs) in loaded.items():
        sampler, run = attrs["sampler"], attrs["schedule"]
        lengths = {"warmup": int(run["warmup_steps"]), "sampling": int(run["sampling_steps"])}
        traced = {"warmup": arrays["warmup"].get("kernel_trace", {}), "sampling": arrays.get("kernel_trace", {})}
        if all("step_size" in t for t in traced.values()):
            sizes[name] = {phase: np.asarray(t["step_size"], np.float64).mean(axis=1) for phase, t in traced.items()}
        else:
            sizes[name] = schedules.step_sizes(sampler["schedule"], float(sampler["step_size"]), lengths)
    plots.warmup(traces, plots.sampler_colors(samplers), figure, dpi=dpi, step_sizes=sizes)


#: The criteria the comparison ranks samplers by: column, and whether larger is better.
RANKED = {
    "ensemble_accuracy": True, "nll": False, "rhat": False, "ess_bulk_per_second": True,
    "ess_bulk_per_1k_grad_evals": True,
}


def comparison(
    *, predictive: Mapping[str, str], samplers: Sequence[str], figure: str, table: str, dpi: int,
    verdicts: Mapping[str, str] | None = None, ranking_figure: str | None = None,
) -> None:
    """Figure: running-ensemble accuracy per step, gradient evaluation and second. Table: per sampler its
    accuracies, NLL and, from the diagnostics' ``verdicts``, convergence and ESS per second and per 1,000
    gradient evaluations, with its rank on each (1 = best), ordered by ESS per second: the sampler that
    comes closest to convergence per second of compute comes first. ``ranking_figure`` draws the ranks' numbers."""
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
        facts["nll"] = analysis.nll(_ensemble_log(arrays["test"]), arrays["test"]["labels"].astype(np.int64))
        # Kernels that carry a momentum trace its kinetic temperature: near the temperature, or heated by the
        # gradient noise (bnn_sgmcmc.experiment.check_momentum_temperature).
        hottest = arrays.get("kernel_trace", {}).get("hottest_kinetic_temperature")
        facts["hottest_kinetic_temperature"] = float(np.mean(hottest)) if hottest is not None and np.size(hottest) else np.nan
        if verdicts and name in verdicts:
            verdict = pd.read_csv(verdicts[name], sep="\t").iloc[0]
            facts |= {k: verdict[k] for k in ("converged", "rhat", "ess_bulk", "ess_bulk_per_second",
                                              "ess_bulk_per_1k_grad_evals")}
        rows.append(facts)
    colors = plots.sampler_colors(samplers)
    plots.comparison(traces, colors, figure, dpi=dpi)
    frame = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    for column, larger in RANKED.items():
        frame[f"rank_{column}"] = frame[column].rank(ascending=not larger, method="min").astype("Int64")
    frame = frame.sort_values(["rank_ess_bulk_per_second", "sampler"], na_position="last", kind="stable")
    _write_table(frame, table)
    if ranking_figure:
        plots.ranking(frame, list(RANKED), colors, ranking_figure, dpi=dpi)


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
    probs = _ensemble(arrays)
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


def calibration(
    *, predictive: str, sampler: str, samplers: Sequence[str], bins: int, figure: str, table: str, dpi: int
) -> None:
    """NLL, Brier, ECE and accuracy per predictor, and the reliability diagram."""
    arrays, _ = h5io.read_predictive(predictive)
    labels = arrays["test"]["labels"].astype(np.int64)
    rows, diagrams = [], {}
    for predictor, members in _predictors(arrays["test"], arrays["chain"]).items():
        scores = [
            {"accuracy": analysis.accuracy(np.exp(lp), labels), "nll": analysis.nll(lp, labels),
             "brier": analysis.brier(np.exp(lp), labels), "ece": analysis.ece(np.exp(lp), labels, bins)}
            for lp in members
        ]
        rows.append({"sampler": sampler, "predictor": predictor, "members": len(members)}
                    | {k: float(np.mean([s[k] for s in scores])) for k in scores[0]})
        if predictor in ("ensemble", "last sample"):
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
    "ood_auroc_entropy", "ood_auroc_mi", "decision_cost", "agreement", "total_variation", "chains",
    "samples_per_chain", "grad_evals", "sampling_seconds", "device",
)
#: What the summary takes from each sampler's diagnostics verdict table.
VERDICT_IN_SUMMARY = (
    "converged", "rhat", "ess_bulk", "ess_tail", "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals",
    "fs_share_rhat_ok", "fs_share_rhat_1.1", "more_samples_per_chain", "more_seconds",
)


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
    function-space shares, the ensemble's AUROCs, the realised cost of the
    posterior's Bayes decisions, agreement with and total variation from the
    reference posterior, when the config has one).
    """
    extra: dict[str, dict[str, Any]] = {}
    for name, path in (diagnostics or {}).items():
        row = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]).iloc[0]
        failures = row["failures"] if isinstance(row["failures"], str) else ""
        extra.setdefault(name, {}).update({k: row[k] for k in VERDICT_IN_SUMMARY})
        extra[name]["verdict"] = "converged" if row["converged"] else f"not converged: {failures}"
    if ood_table:
        frame = pd.read_csv(ood_table, sep="\t")
        for _, row in frame[frame["predictor"] == "ensemble"].iterrows():
            key = {"predictive entropy": "ood_auroc_entropy", "mutual information": "ood_auroc_mi"}[row["score"]]
            extra.setdefault(row["sampler"], {})[key] = row["auroc"]
    if decisions_table:
        frame = pd.read_csv(decisions_table, sep="\t")
        for _, row in frame[frame["rule"] == "bayes (posterior)"].iterrows():
            extra.setdefault(row["sampler"], {})["decision_cost"] = row["realised_cost"]
    if agreement_table:
        for _, row in pd.read_csv(agreement_table, sep="\t").iterrows():
            extra.setdefault(row["sampler"], {}).update({k: row[k] for k in ("agreement", "total_variation")})
    rows = []
    for name, (arrays, attrs) in _load(predictive).items():
        labels = arrays["test"]["labels"].astype(np.int64)
        scores = analysis.summary(_ensemble_log(arrays["test"]), labels, threshold=threshold, bins=bins)
        scores.pop("accuracy")  # the same number as the facts' ensemble_accuracy
        device = attrs.get("device") or {}
        rows.append(_run_facts(name, arrays, attrs) | scores | extra.get(name, {})
                    | {"device": device.get("device_kind", "")})
    _write_table(pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)), table)


# --------------------------------------------------------------------------- diagnostics, shift, OOD, decisions


def _shard_seconds(attrs: Mapping[str, Any], *phases: str) -> float:
    """Device seconds of the given timing attributes, compile excluded, summed over shards (they may run side
    by side): ``run_seconds`` is sampling's, ``warmup_run_seconds`` warmup's."""
    return float(sum(float(r.get(phase) or 0.0) for r in _shard_runs(attrs) for phase in phases))


def _shard_runs(attrs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A predictive file's shard runs (a gathered file's ``shard_runs``; a shard's file is its own one)."""
    return attrs.get("shard_runs") or [attrs]


def _sampling_seconds(attrs: Mapping[str, Any]) -> float:
    """Device seconds spent sampling: the sum over shards."""
    return _shard_seconds(attrs, "run_seconds")


#: The traced per-sample scalars that are diagnosed, by their trace name.
TRACED = {"mean_log_likelihood": "mean log-likelihood", "pointwise_accuracy": "accuracy"}
FUNCTION_SPACE = "true-class probability, every example"


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
        return name != "test", kind, float(level)
    except ValueError:
        return name != "test", name, 0.0


DIAGNOSTICS_COLUMNS = (
    "sampler", "set", "quantity", "values", "chains", "samples_per_chain", "rhat", "ess_bulk", "ess_tail",
    "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals", "share_rhat_ok", "share_rhat_1.1", "converged",
)
VERDICT_COLUMNS = (
    "sampler", "converged", "chains", "samples_per_chain", "rhat", "ess_bulk", "ess_tail", "ess_target",
    "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals", "fs_examples", "fs_share_rhat_ok", "fs_share_rhat_1.1",
    "more_samples_per_chain", "suggested_sampling_steps", "more_seconds", "failures", "criterion", "note",
)


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
    seconds = _sampling_seconds(attrs)
    rows = []
    traced = dict(sorted(_traced_draws(arrays["trace"]).items(), key=lambda kv: _set_order(kv[0][0])))
    samples = next(iter(traced.values())).shape[1] if traced else 0
    # Every traced quantity at once, as the trailing axis: one compiled program per statistic.
    found = diagnostics.diagnose(np.stack(list(traced.values()), axis=-1)) if traced else None
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
        row = {"sampler": name, "set": "test", "quantity": FUNCTION_SPACE, "values": len(known), "chains": chains,
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
    found = diagnostics.verdict(
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


def chain_diagnostics(
    *, predictive: str, data: str, sampler: str, samplers: Sequence[str], threshold: float, ess_per_chain: float,
    function_space_share: float, least: int, table: str, verdict_table: str, least_table: str, figure: str,
    histogram: str, least_figure: str, dpi: int, threads: int = 1,
) -> None:
    """Rule diagnostics: per-quantity and function-space convergence, the verdict, and their figures; the
    function-space R-hat ranks its blocks of test examples on ``threads`` threads."""
    arrays, attrs = h5io.read_predictive(predictive, draws=True)
    draws = h5io.lookup(arrays, h5io.FUNCTION_SPACE) if "draws" in arrays else None  # [D, C, n] float16
    function_space = diagnostics.function_space_rhat(draws, threads=threads) if draws is not None else None
    rows = diagnostics_rows(sampler, arrays, attrs, threshold, ess_per_chain, function_space, function_space_share)
    _write_table(pd.DataFrame(rows, columns=list(DIAGNOSTICS_COLUMNS)), table)
    found = run_verdict(sampler, rows, function_space, arrays, attrs, threshold, function_space_share, ess_per_chain)
    _write_table(pd.DataFrame([found], columns=list(VERDICT_COLUMNS)), verdict_table)

    color = plots.sampler_colors(samplers)[sampler]
    idx = least_converged(function_space, least) if function_space is not None else np.zeros(0, np.int64)
    series = {"mean test log-likelihood": (arrays["trace"]["sample_step"], arrays["trace"]["test"]["mean_log_likelihood"])}
    rhats = {"mean test log-likelihood": next(
        r["rhat"] for r in rows if (r["set"], r["quantity"]) == ("test", TRACED["mean_log_likelihood"]))}
    if len(idx):
        worst = f"true-class probability of test example {int(idx[0])} (largest R-hat in function space)"
        series[worst] = (arrays["draws"]["step"], np.exp(draws[:, :, idx[0]].astype(np.float64)))  # [D], [D, C]
        rhats[worst] = float(function_space[idx[0]])
    plots.chain_traces(series, rhats, threshold, sampler, color, figure, dpi=dpi)
    _write_table(least_converged_table(arrays, function_space, idx), least_table)

    if function_space is None:
        message = "No function-space draws: diagnostics.draws_per_chain is 0."
        plots.unavailable(message, histogram, dpi=dpi)
        plots.unavailable(message, least_figure, dpi=dpi)
        return
    if draws.shape[0] < 4:
        message = f"{draws.shape[0]} function-space draws per chain are too few for R-hat (at least 4)."
        plots.unavailable(message, histogram, dpi=dpi)
        plots.unavailable(message, least_figure, dpi=dpi)
        return
    plots.rhat_histogram(function_space, threshold, sampler, color, int(attrs["chains"]), histogram, dpi=dpi)
    if not len(idx):
        why = "diagnostics.least_converged is 0" if least == 0 else "every draw of every test example is the same"
        plots.unavailable(f"No least converged examples to show: {why}.", least_figure, dpi=dpi)
        return
    images = _test_images(predictive, data, arrays["test"]["labels"])
    plots.least_converged(
        images[idx], arrays["test"]["labels"][idx], function_space[idx], arrays["draws"]["step"],
        np.exp(draws[:, :, idx].astype(np.float64)), sampler, color, least_figure, dpi=dpi,
    )


def least_converged_table(arrays: Mapping[str, Any], function_space: np.ndarray | None, idx: np.ndarray) -> pd.DataFrame:
    """The examples ``idx``: label, R-hat, the ensemble's prediction and true-class probability, and the
    smallest and largest per-chain mean of that probability (far apart where the chains disagree)."""
    labels = arrays["test"]["labels"].astype(np.int64)[idx]
    pooled = _ensemble(arrays)[idx]
    chain_means = np.exp(arrays["test"]["log_probs"][:, idx, labels])  # [C, k]
    return pd.DataFrame({
        "test_index": idx, "label": labels, "rhat": function_space[idx] if len(idx) else np.zeros(0),
        "predicted": pooled.argmax(axis=1), "ensemble_true_class_prob": pooled[np.arange(len(idx)), labels],
        "chain_mean_min": chain_means.min(axis=0, initial=np.inf), "chain_mean_max": chain_means.max(axis=0, initial=-np.inf),
    })


SHIFT_METRICS = ("accuracy", "nll", "ece", "mean entropy")


def _shift_scores(log_probs: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, float]:
    probs = np.exp(log_probs)
    return {"accuracy": analysis.accuracy(probs, labels), "nll": analysis.nll(log_probs, labels),
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
                for predictor, members in _predictors(data).items():
                    scores = [_shift_scores(lp, labels, bins) for lp in members]
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


def _warn_if_ood_is_in_distribution(source: str, attrs: Mapping[str, Any]) -> None:
    """Warn when the out-of-distribution images are a split of the training data set itself (the sampling
    jobs record the digests of both), where every AUROC is about 0.5 and says nothing about the samplers."""
    fingerprint = attrs.get("fingerprint") or {}
    ood_digest = (fingerprint.get("evaluation") or {}).get("ood")
    for split in ("test", "train"):
        if ood_digest and ((fingerprint.get("data") or {}).get(split) or {}).get("images_sha256") == ood_digest:
            log.warning(
                "ood.source %s gives the same images as the %s split of data.source: in- and out-of-distribution "
                "are one set, so every AUROC is about 0.5 and says nothing. Set ood.source to another data set "
                "(for MNIST, e.g. fashion_mnist).", source, split,
            )
            return


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


# --------------------------------------------------------------------------- agreement with the reference posterior

#: The agreement table's columns; the reference's row holds its noise floor (its two halves of chains
#: against each other) and its own convergence.
AGREEMENT_COLUMNS = (
    "sampler", "kernel", "chains", "agreement", "total_variation", "within_noise_floor", "accuracy",
    "accuracy_diff", "nll", "nll_diff", "ece", "ece_diff", "device_seconds", "grad_evals", "converged", "rhat",
    "acceptance_rate", "divergent_share", "step_size", "e_bfmi",
)


def agreement(
    *, predictive: Mapping[str, str], reference: str, verdicts: Mapping[str, str], samplers: Sequence[str],
    table: str, figure: str, bins: int, dpi: int,
) -> None:
    """Every sampler's test predictive against the reference posterior's (Izmailov et al. 2021): agreement
    (same predicted class), total variation, and the differences in accuracy, NLL and ECE. The reference's
    row compares its two halves of chains, the noise floor below which differences are not real, and
    gives its convergence (``verdicts[reference]``), acceptance rate, divergences and adapted step size.
    A warning (logged, and in the figure's title) says when the reference has not converged."""
    from bnn_sgmcmc.config import REFERENCE

    def facts(name: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
        """The columns every row has, and the run's pooled test predictive."""
        log_pooled = analysis.pool_log_chains(arrays["test"]["log_probs"])
        scores = analysis.summary(log_pooled, labels, bins=bins)
        verdict = pd.read_csv(verdicts[name], sep="\t").iloc[0]
        return {
            "sampler": name, "kernel": attrs["sampler"]["kernel"], "chains": int(arrays["test"]["log_probs"].shape[0]),
            "accuracy": scores["accuracy"], "nll": scores["nll"], "ece": scores["ece"],
            "device_seconds": _shard_seconds(attrs, "run_seconds", "warmup_run_seconds"),
            "grad_evals": int(arrays["trace"]["grad_evals"][-1]),
            "converged": bool(verdict["converged"]), "rhat": float(verdict["rhat"]),
        }, np.exp(log_pooled)

    ref_arrays, ref_attrs = h5io.read_predictive(reference)
    labels = ref_arrays["test"]["labels"].astype(np.int64)
    ref_log = ref_arrays["test"]["log_probs"]
    chains = ref_log.shape[0]
    if chains < 2:
        raise ValueError(f"{reference}: the reference has {chains} chain; its noise floor needs 2 or more")
    ref_row, ref_pooled = facts(REFERENCE, ref_arrays, ref_attrs)
    half = chains // 2
    first, second = (np.exp(analysis.pool_log_chains(ref_log[s])) for s in (slice(0, half), slice(half, None)))
    floor = {"agreement": analysis.agreement(first, second), "total_variation": analysis.total_variation(first, second)}
    kernel = ref_arrays.get("kernel_trace", {})

    def mean(name: str) -> float:
        return float(np.mean(kernel[name])) if name in kernel else float("nan")

    rows = [ref_row | floor | {
        "within_noise_floor": True, "accuracy_diff": 0.0, "nll_diff": 0.0, "ece_diff": 0.0,
        "acceptance_rate": mean("acceptance_rate"), "divergent_share": mean("divergent"), "step_size": mean("step_size"),
        # The smallest over chains: one chain that explores its energy badly is enough to doubt it.
        "e_bfmi": float(np.min(diagnostics.e_bfmi(np.asarray(kernel["energy"]).T)))
        if "energy" in kernel and len(kernel["energy"]) > 1 else float("nan"),
    }]
    for name, path in predictive.items():
        row, probs = facts(name, *h5io.read_predictive(path))
        row["agreement"] = analysis.agreement(probs, ref_pooled)
        row["total_variation"] = analysis.total_variation(probs, ref_pooled)
        for metric in ("accuracy", "nll", "ece"):
            row[f"{metric}_diff"] = row[metric] - ref_row[metric]
        row["within_noise_floor"] = bool(
            row["agreement"] >= floor["agreement"] and row["total_variation"] <= floor["total_variation"]
        )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))
    _write_table(frame, table)
    warning = None
    if not rows[0]["converged"]:
        warning = (f"the reference posterior has not converged (worst R-hat {rows[0]['rhat']:.3f}; see "
                   f"tables/diagnostics/{REFERENCE}_verdict.tsv): agreement with it is agreement with its chains so far")
        log.warning("%s", warning)
    on_gpu = any((run.get("device") or {}).get("backend") == "gpu" for run in _shard_runs(ref_attrs))
    # Files from before the setting computed at JAX's default.
    if on_gpu and ref_attrs["sampler"].get("matmul_precision", "default") == "default":
        log.warning("the reference ran on a GPU at JAX's default matmul precision, which on NVIDIA A100, H100 and "
                    "H200 GPUs rounds every product's operands to TF32: on MNIST about 0.7 of error in each change "
                    "of log density its Metropolis test judges (docs/benchmarks.md). Set reference.matmul_precision "
                    "to float32 (or BF16_BF16_F32_X3) and rerun the reference.")
    if rows[0]["e_bfmi"] < diagnostics.E_BFMI_LOW:
        log.warning("the reference's E-BFMI is %.2f (< %.1f): its momentum resampling explores the energy poorly "
                    "(Betancourt 2016); longer trajectories or a tuned mass matrix may help",
                    rows[0]["e_bfmi"], diagnostics.E_BFMI_LOW)
    plots.agreement(frame, floor, plots.sampler_colors(list(samplers)), figure, dpi=dpi, warning=warning)
