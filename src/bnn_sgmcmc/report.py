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
    images, _ = h5io.read_data_h5(data)
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
    "aurc", "chains", "samples_per_chain", "grad_evals", "sampling_seconds", "device",
)


def summary(*, predictive: Mapping[str, str], threshold: float, bins: int, table: str) -> None:
    """One row per sampler: accuracies, scores, certain share, compute and device."""
    rows = []
    for name, (arrays, attrs) in _load(predictive).items():
        labels = arrays["test"]["labels"].astype(np.int64)
        scores = analysis.summary(_ensemble(arrays), labels, threshold=threshold, bins=bins)
        scores.pop("accuracy")  # the same number as the facts' ensemble_accuracy
        device = attrs.get("device") or {}
        rows.append(_run_facts(name, arrays, attrs) | scores | {"device": device.get("device_kind", "")})
    _write_table(pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)), table)
