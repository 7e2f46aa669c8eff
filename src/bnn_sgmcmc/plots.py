"""Report figures, drawn with matplotlib from arrays that ``analysis`` computed.

Every function takes arrays and plain values and writes one figure to ``path``
(the format follows the suffix: png, svg or pdf). Figures share one style: the
reference notebook's clean axes (no top or right spines), labelled axes with
units, titles that name the sampler, and one colour per sampler everywhere,
given by the sampler's position in the config (:func:`sampler_colors`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes

import matplotlib.lines  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.ticker  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox, OffsetImage  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bnn_sgmcmc import shift  # noqa: E402
from bnn_sgmcmc.analysis import (  # noqa: E402
    ENSEMBLE,
    REFERENCE_MEASURES,
    Reliability,
    RejectionCurve,
    ThresholdCurve,
)

STYLE = {
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "font.size": 10,
}


def sampler_colors(samplers: Sequence[str]) -> dict[str, str]:
    """The same colour for the same sampler in every figure: tab10 by config order."""
    cycle = plt.get_cmap("tab10").colors
    return {name: matplotlib.colors.to_hex(cycle[i % len(cycle)]) for i, name in enumerate(samplers)}


#: Inches a legend beside the panels takes (:func:`legend_beside`), added to a figure's width.
LEGEND_WIDTH = 2.2


def legend_beside(ax: Any, handles: Sequence[Any]) -> None:
    """The legend of ``handles`` to the right of ``ax``, outside it (in a smaller font, to fit
    :data:`LEGEND_WIDTH`): a legend inside a panel of several runs covers some run's curve or bars wherever it
    goes."""
    ax.legend(handles=list(handles), loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)


@contextlib.contextmanager
def figure(path: str | Path, ncols: int = 1, width: float = 5.0, height: float = 3.6, dpi: int = 150) -> Iterator:
    """A styled figure with ``ncols`` panels in one row, saved to ``path`` when the block ends."""
    with grid(path, 1, ncols, width=width, height=height, dpi=dpi) as (fig, axes):
        yield fig, axes[0]


def _chain_lines(ax, x: np.ndarray, y: np.ndarray, color: str, label: str) -> None:
    """Each chain thin, their mean bold, one legend entry per sampler."""
    y = np.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    x = np.asarray(x)
    if x.ndim == 2:  # per-chain x (wall seconds)
        for c in range(y.shape[1]):
            ax.plot(x[:, c], y[:, c], color=color, lw=0.8, alpha=0.35 if y.shape[1] > 1 else 1.0)
        x = x.mean(axis=1)
    elif y.shape[1] > 1:
        ax.plot(x, y, color=color, lw=0.8, alpha=0.35)
    # One kept sample (a baseline's one draw per chain) is a point: a line through it alone draws nothing.
    marker = {"marker": "o", "ms": 5} if len(x) == 1 else {}
    mean_label = label if y.shape[1] == 1 else f"{label} (mean of {y.shape[1]} chains)"
    ax.plot(x, y.mean(axis=1), color=color, lw=1.8, label=mean_label, **marker)


def warmup(
    traces: Mapping[str, tuple[np.ndarray, np.ndarray]], colors: Mapping[str, str], path: str | Path, dpi: int = 150,
    step_sizes: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> None:
    """Pointwise test accuracy against warmup step: ``traces[sampler] = (step [E], accuracy [E, C])``; with
    ``step_sizes[sampler] = {"warmup": [W], "sampling": [S]}``, a second panel of the step size at every step."""
    with figure(path, ncols=2 if step_sizes else 1, width=5.0, dpi=dpi) as (fig, axes):
        ax = axes[0]
        for name, (step, acc) in traces.items():
            _chain_lines(ax, step, acc, colors[name], name)
        ax.set_xlabel("warmup step")
        ax.set_ylabel("test accuracy (single sample)")
        ax.set_title("Warmup: test accuracy of the current weights")
        ax.legend(loc="lower right")
        if step_sizes:
            ax = axes[1]
            for name, sizes in step_sizes.items():
                joined = np.concatenate([sizes["warmup"], sizes["sampling"]])
                ax.plot(np.arange(1, len(joined) + 1), joined, color=colors[name], lw=1.2, label=name)
            end = len(next(iter(step_sizes.values()))["warmup"])
            ax.axvline(end, color="grey", lw=0.8, ls=":")
            ax.text(end, 1.0, " sampling", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="grey")
            ax.set_yscale("log")
            ax.set_xlabel("step (warmup, then sampling)")
            ax.set_ylabel("step size")
            ax.set_title("Step size of each sampler's schedule")


def comparison(
    traces: Mapping[str, Mapping[str, np.ndarray]], colors: Mapping[str, str], path: str | Path, dpi: int = 150
) -> None:
    """Running-ensemble accuracy against sampling steps, gradient evaluations and seconds.

    ``traces[sampler]`` has ``sample_step`` [S], ``grad_evals`` [S],
    ``wall_seconds`` [S, C] and ``ensemble_accuracy`` [S, C].
    """
    axes_spec = [
        ("sample_step", "sampling step"),
        ("grad_evals", "gradient evaluations"),
        ("wall_seconds", "sampling time (s, compile excluded)"),
    ]
    # The legend beside the panels: inside one it covers some run's curve.
    with figure(path, ncols=3, width=4.4 + LEGEND_WIDTH / 3, dpi=dpi) as (fig, axes):
        for ax, (key, label) in zip(axes, axes_spec):
            for name, trace in traces.items():
                _chain_lines(ax, trace[key], trace["ensemble_accuracy"], colors[name], name)
            ax.set_xlabel(label)
            ax.set_ylabel("ensemble test accuracy")
        axes[0].set_title("per step")
        axes[1].set_title("per unit of compute")
        axes[2].set_title("per second")
        legend_beside(axes[-1], axes[0].get_legend_handles_labels()[0])
        fig.suptitle("Running posterior-ensemble accuracy while sampling", fontsize=11)


def ranking(
    table: Any, criteria: Mapping[str, str], colors: Mapping[str, str], path: str | Path, dpi: int = 150
) -> None:
    """One panel per criterion (a column of ``table``, mapped to the column of its ranks, 1 = best), a
    labelled dot per sampler in its colour, best first.

    Dots rather than bars: the samplers' accuracies differ in the third decimal, which an axis from
    zero would hide, and a bar that does not start at zero misleads.
    """
    import pandas as pd

    with figure(path, ncols=len(criteria), width=3.4, height=0.45 * len(table) + 1.6, dpi=dpi) as (fig, axes):
        for ax, (column, rank) in zip(axes, criteria.items()):
            ordered = table.sort_values(rank, na_position="last")
            # A cell in words (a baseline's "not a Markov chain" R-hat) has no value: the words stand in its row.
            values = pd.to_numeric(ordered[column], errors="coerce").to_numpy(dtype=float)
            names = ordered["sampler"].tolist()
            rows = np.arange(len(names))
            ax.scatter(values, rows, s=40, color=[colors[n] for n in names], zorder=3)
            for value, cell, row in zip(values, ordered[column], rows):
                if np.isfinite(value):
                    ax.annotate(f"{value:.4g}", (value, row), xytext=(0, 6), textcoords="offset points",
                                ha="center", fontsize=7)
                elif isinstance(cell, str):
                    ax.annotate(cell, (0.5, row), xycoords=ax.get_yaxis_transform(), ha="center", va="center",
                                fontsize=7, color="0.4")
            ax.set_yticks(rows, names)  # each panel in its own order
            ax.set_ylim(len(names) - 0.5, -0.7)  # best at the top, room for the top label
            ax.margins(x=0.15)
            ax.set_title(column.replace("_", " "), fontsize=9)
        fig.suptitle("Samplers ranked on each criterion (best at the top)", fontsize=11)


def uncertain_images(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    sampler: str,
    path: str | Path,
    dpi: int = 150,
) -> None:
    """A grid of test images titled true label, predicted label and top probability."""
    n = len(images)
    cols = min(5, max(n, 1))
    rows = max(1, int(np.ceil(n / cols)))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
        try:
            for ax in axes.flat:
                ax.axis("off")
            for ax, img, y, p, c in zip(axes.flat, images, labels, predicted, confidence):
                ax.imshow(img, cmap="gray_r", vmin=0, vmax=255)
                ax.set_title(f"true {y}, pred {p}\np = {c:.2f}", fontsize=9, color="black" if y == p else "crimson")
            fig.suptitle(f"{sampler}: the {n} least confident test predictions", fontsize=11)
            fig.tight_layout()
            save(fig, path, dpi)
        finally:
            plt.close(fig)


def uncertain_per_class(counts: np.ndarray, threshold: float, sampler: str, color: str, path: str | Path, dpi: int = 150) -> None:
    """Bar chart: uncertain predictions (top probability <= threshold) per true class."""
    with figure(path, dpi=dpi) as (fig, (ax,)):
        classes = np.arange(len(counts))
        ax.bar(classes, counts, color=color)
        ax.set_xticks(classes)
        ax.set_xlabel("true digit")
        ax.set_ylabel(f"uncertain predictions (p \u2264 {threshold:g})")
        ax.set_title(f"{sampler}: uncertain predictions per digit")


def threshold(curves: Mapping[str, ThresholdCurve], colors: Mapping[str, str], path: str | Path, dpi: int = 150) -> None:
    """Accuracy on the kept examples and share dropped, against the confidence threshold; the legend beside the
    panels, where it covers no curve (inside, it covered the least accurate run's)."""
    with figure(path, ncols=2, width=4.6 + LEGEND_WIDTH / 2, dpi=dpi) as (fig, (left, right)):
        for name, curve in curves.items():
            left.plot(curve.thresholds, curve.accuracy_kept, color=colors[name], label=name)
            right.plot(curve.thresholds, 100 * curve.dropped_share, color=colors[name], label=name)
        left.set_xlabel("confidence threshold")
        left.set_ylabel("accuracy on kept examples")
        left.set_title("Accuracy when predicting only above the threshold")
        right.set_xlabel("confidence threshold")
        right.set_ylabel("examples dropped (%)")
        right.set_title("Share of examples left to a human")
        legend_beside(right, left.get_legend_handles_labels()[0])


def rejection(curves: Mapping[str, RejectionCurve], colors: Mapping[str, str], path: str | Path, dpi: int = 150) -> None:
    """Accuracy of the most confident examples against the share kept, with each sampler's AURC."""
    with figure(path, dpi=dpi) as (fig, (ax,)):
        for name, curve in curves.items():
            ax.plot(100 * curve.coverage, curve.accuracy, color=colors[name], label=f"{name} (AURC {curve.aurc:.4f})")
        ax.set_xlabel("examples kept, most confident first (%)")
        ax.set_ylabel("accuracy on kept examples")
        ax.set_title("Accuracy-rejection curve")
        ax.legend(loc="lower left")


def reliability(
    diagrams: Mapping[str, Reliability], sampler: str, color: str, path: str | Path, dpi: int = 150
) -> None:
    """Reliability diagram: accuracy against mean confidence per bin, one line per predictor.

    All lines take the sampler's colour (other colours mean other samplers
    elsewhere in the report); predictors differ by line style.
    """
    styles = ["-", "--", ":", "-."]
    with figure(path, dpi=dpi, width=4.4, height=4.0) as (fig, (ax,)):
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=(0, (1, 3)), label="perfect calibration")
        for i, (label, rel) in enumerate(diagrams.items()):
            keep = rel.counts > 0
            ax.plot(rel.confidence[keep], rel.accuracy[keep], marker="o", ms=3, color=color,
                    ls=styles[i % len(styles)], label=f"{label} (ECE {rel.ece:.4f})")
        ax.set_xlabel("mean confidence in bin")
        ax.set_ylabel("accuracy in bin")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{sampler}: reliability")
        ax.legend(loc="upper left")


def save(fig: Any, path: str | Path, dpi: int) -> None:
    """Save ``fig`` to ``path`` atomically (its format from the suffix): a report job killed while it draws
    leaves no half-written figure under the name (bnn_sgmcmc.h5io.atomic_path)."""
    from bnn_sgmcmc.h5io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or None)


@contextlib.contextmanager
def grid(path: str | Path, nrows: int, ncols: int, width: float = 4.2, height: float = 3.2, dpi: int = 150) -> Iterator:
    """A styled figure with ``nrows`` x ``ncols`` panels (a 2-D array of axes), saved to ``path`` when the block ends."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
        try:
            yield fig, axes
            fig.tight_layout()
            save(fig, path, dpi)
        finally:
            plt.close(fig)


def chain_traces(
    series: Mapping[str, tuple[str, np.ndarray, np.ndarray]],
    rhats: Mapping[str, float],
    threshold: float,
    sampler: str,
    color: str,
    path: str | Path,
    dpi: int = 150,
) -> None:
    """Trace plot: one panel per diagnosed quantity, ``series[label] = (y-axis label, steps [S], values
    [S, C])``, one line per chain, titled with its rank-normalised split R-hat."""
    styles = ["-", "--", ":", "-."]
    with grid(path, len(series), 1, width=7.0, height=2.6, dpi=dpi) as (fig, axes):
        for ax, (label, (ylabel, steps, values)) in zip(axes[:, 0], series.items()):
            values = np.asarray(values)
            for c in range(values.shape[1]):
                ax.plot(steps, values[:, c], color=color, lw=0.9, alpha=0.9 if values.shape[1] == 1 else 0.7,
                        ls=styles[c % len(styles)], label=f"chain {c}")
            rhat = rhats[label]
            flag = "  NOT CONVERGED" if rhat > threshold else ""
            ax.set_title(f"{sampler}: {label}\nR-hat {rhat:.3f}{flag}", color="firebrick" if flag else "black")
            ax.set_ylabel(ylabel)
        axes[-1, 0].set_xlabel("sampling step")
        if np.asarray(next(iter(series.values()))[2]).shape[1] <= 8:
            axes[0, 0].legend(loc="lower right", ncols=4)


def rhat_histogram(
    rhat: np.ndarray, threshold: float, sampler: str, color: str, chains: int, path: str | Path, dpi: int = 150
) -> None:
    """Histogram of the R-hat of every test example on a log scale of R-hat - 1, with the thresholds marked."""
    known = rhat[np.isfinite(rhat)]
    settled = len(rhat) - len(known)
    excess = np.clip(known - 1, 1e-5, None)
    top = max(float(excess.max()) if len(excess) else 0.2, 0.2)
    with figure(path, dpi=dpi, width=6.5, height=3.6) as (fig, (ax,)):
        ax.hist(excess, bins=np.geomspace(1e-5, top * 1.01, 60), histtype="stepfilled", color=color, alpha=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{1 + x:g}"))
        for value, style in ((threshold, "--"), (1.1, ":")):
            share = float(np.mean(~(rhat > value))) if len(rhat) else float("nan")
            ax.axvline(value - 1, color="black", ls=style, lw=1,
                       label=f"R-hat <= {value:g}: {100 * share:.1f}% of examples")
        ax.set_xlabel("R-hat of the true-class probability (log scale of R-hat - 1; the first bin holds all\n"
                      "R-hats up to 1.00001)")
        ax.set_ylabel("test examples")
        one = "one chain, halves only" if chains == 1 else f"{chains} chains"
        # Two lines: on one, a long sampler name ran past the figure's right edge.
        ax.set_title(f"{sampler}: function-space R-hat\nof {len(rhat):,} test examples ({one})"
                     + (f"; {settled:,} with every draw equal not shown" if settled else ""), fontsize=9)
        ax.legend(loc="upper right")


def _image_panels(
    images: np.ndarray, draw: Any, suptitle: str, path: str | Path, dpi: int = 150,
) -> None:
    """Test examples, four a row: each image beside an axes of probabilities in [0, 1] that ``draw(ax, i)``
    fills for example ``i``, returning the axes' title."""
    k = len(images)
    cols = min(4, max(k, 1))
    rows = max(1, int(np.ceil(k / cols)))
    with plt.rc_context(STYLE):
        height = 1.9 * rows + 0.4
        fig = plt.figure(figsize=(4.4 * cols, height))
        try:
            # One axes per example, the image an artist to its left: half the axes, and the margins set
            # here rather than by bbox_inches="tight", which draws every axes twice (together 40 % less time).
            axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=dict(
                wspace=0.62, hspace=0.75, left=1.9 / (4.4 * cols), right=0.99,
                bottom=0.3 / height, top=1 - 0.75 / height))
            side = 0.95 * 72 / max(images.shape[1:3])  # each image 0.95 inch on its longer side
            for i, ax in enumerate(axes.flat):
                if i >= k:
                    ax.set_visible(False)
                    continue
                image = OffsetImage(images[i], cmap="gray_r", norm=Normalize(0, 255), zoom=side)
                ax.add_artist(AnnotationBbox(image, (-0.1 if i % cols else -0.3, 0.5), xycoords="axes fraction",
                                             box_alignment=(1, 0.5), frameon=False))
                title = draw(ax, i)
                ax.set_ylim(-0.03, 1.03)
                # Few ticks: every tick is an artist to lay out and draw, 20 axes' worth (a third of the figure's time).
                ax.set_yticks([0, 0.5, 1])
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4, integer=True))
                ax.set_title(title, fontsize=8)
                ax.tick_params(labelsize=7)
                if i % cols:
                    ax.set_yticklabels([])
            fig.suptitle(suptitle, fontsize=10, y=1 - 0.15 / height)
            save(fig, path, dpi)
        finally:
            plt.close(fig)


def least_converged(
    images: np.ndarray,
    labels: np.ndarray,
    rhat: np.ndarray,
    steps: np.ndarray,
    probs: np.ndarray,
    sampler: str,
    color: str,
    path: str | Path,
    dpi: int = 150,
) -> None:
    """The least converged test examples: each image beside the trace of its true-class probability
    (``probs`` [D, C, k] over the draws' ``steps``), one line per chain."""
    styles = ["-", "--", ":", "-."]

    def draw(ax: Any, i: int) -> str:
        for c in range(probs.shape[1]):
            ax.plot(steps, probs[:, c, i], color=color, lw=0.7, ls=styles[c % len(styles)],
                    alpha=0.9 if probs.shape[1] == 1 else 0.7)
        return f"#{i + 1}: label {labels[i]}, R-hat {rhat[i]:.2f}"

    _image_panels(images, draw, f"{sampler}: the {len(images)} least converged test examples "
                  "(true-class probability against sampling step, one line per chain)", path, dpi=dpi)


def least_agreeing(
    images: np.ndarray,
    labels: np.ndarray,
    spread: np.ndarray,
    probs: np.ndarray,
    ensemble: np.ndarray,
    sampler: str,
    color: str,
    path: str | Path,
    dpi: int = 150,
) -> None:
    """The test examples on which a baseline's members disagree most, as :func:`least_converged` draws the
    least converged: each image beside its true-class probability under every member (``probs`` [C, k], a dot
    per member) and under the ensemble (``ensemble`` [k], dashed), titled with the members' ``spread``."""

    def draw(ax: Any, i: int) -> str:
        ax.scatter(np.arange(probs.shape[0]), probs[:, i], s=14, color=color, zorder=3)
        ax.set_xlim(-0.5, probs.shape[0] - 0.5)  # the first and last member off the axes' edges
        ax.axhline(ensemble[i], color="0.3", ls="--", lw=0.8)
        return f"#{i + 1}: label {labels[i]}, spread {spread[i]:.2f}"

    _image_panels(images, draw, f"{sampler}: the {len(images)} test examples its members disagree on most "
                  "(true-class probability against member, dashed: the ensemble's)", path, dpi=dpi)


def member_disagreement(diversity: Any, sampler: str, path: str | Path, dpi: int = 150) -> None:
    """Heatmaps of a baseline's members' pairwise disagreement (share of test examples on which two members
    predict different classes) and total variation, from a :class:`bnn_sgmcmc.diagnostics.MemberDiversity`,
    each titled with its mean over pairs of members; the diagonal, a member against itself, is 0."""
    members = len(diversity.disagreement)
    side = min(2.6 + 0.3 * members, 7.0)
    panels = (("disagreement", diversity.disagreement, diversity.mean_disagreement),
              ("total variation", diversity.total_variation, diversity.mean_total_variation))
    with figure(path, ncols=2, width=side + 1.0, height=side + 0.6, dpi=dpi) as (fig, axes):
        for ax, (label, matrix, mean) in zip(axes, panels):
            shown = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(float(matrix.max()), 1e-12))
            # An inset rather than stolen room: the figure's tight layout then places it with its axes.
            fig.colorbar(shown, cax=ax.inset_axes([1.04, 0.0, 0.05, 1.0]))
            ax.grid(False)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(10, integer=True))
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(10, integer=True))
            if members <= 10:  # the numbers fit in their cells
                for (i, j), value in np.ndenumerate(matrix):
                    ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7,
                            color="white" if value < 0.6 * matrix.max() else "black")
            ax.set_xlabel("member (chain)")
            ax.set_ylabel("member (chain)")
            ax.set_title(f"pairwise {label}\n(mean over pairs {mean:.4f})")
        fig.suptitle(f"{sampler}: how much its {members} members disagree on the test set", fontsize=11)


def member_spread_histogram(spread: np.ndarray, sampler: str, color: str, members: int, path: str | Path,
                            dpi: int = 150) -> None:
    """Histogram over test examples of the spread of a baseline's members' true-class probabilities (the
    largest minus the smallest), on a log count scale: most examples sit at 0, where every member is sure."""
    with figure(path, dpi=dpi, width=6.5, height=3.6) as (_, (ax,)):
        ax.hist(spread, bins=np.linspace(0, 1, 51), histtype="stepfilled", color=color, alpha=0.8, log=True)
        mean, wide = float(np.mean(spread)), float(np.mean(spread > 0.5))
        ax.axvline(mean, color="black", ls="--", lw=1, label=f"mean spread {mean:.3f}")
        ax.axvline(0.5, color="black", ls=":", lw=1, label=f"spread > 0.5: {100 * wide:.1f}% of examples")
        ax.set_xlim(0, 1)
        ax.set_xlabel("spread of the members' true-class probabilities (largest - smallest)")
        ax.set_ylabel("test examples")
        ax.set_title(f"{sampler}: how far its {members} members' true-class probabilities spread\n"
                     f"over {len(spread):,} test examples")
        ax.legend(loc="upper right")


def shift_curves(
    curves: Mapping[str, Mapping[str, Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]]]],
    colors: Mapping[str, str],
    path: str | Path,
    dpi: int = 150,
) -> None:
    """Metrics against shift: ``curves[kind][metric][(sampler, predictor)] = (levels, values)``.

    Rows are metrics, columns kinds of shift; the sampler's colour, solid for
    the ensemble and dashed for the last single sample.
    """
    kinds = list(curves)
    metrics = list(next(iter(curves.values())))
    xlabels = {shift.ROTATION: "rotation (degrees)", shift.NOISE: "noise standard deviation (pixels in [0, 1])"}
    # The legend beside the panels: a sampler per colour, a predictor per line style (one entry per pair would
    # be twice as long, and in a panel it covers curves).
    width = 4.4 + LEGEND_WIDTH / len(kinds)
    with grid(path, len(metrics), len(kinds), width=width, height=2.7, dpi=dpi) as (fig, axes):
        drawn: dict[str, None] = {}
        for j, kind in enumerate(kinds):
            for i, metric in enumerate(metrics):
                ax = axes[i, j]
                for (sampler, predictor), (x, y) in curves[kind][metric].items():
                    ax.plot(x, y, marker="o", ms=3, color=colors[sampler], ls="-" if predictor == ENSEMBLE else "--")
                    drawn[sampler] = None
                ax.set_ylabel(metric)
                if i == 0:
                    ax.set_title(f"against {kind}")
                if i == len(metrics) - 1:
                    ax.set_xlabel(xlabels.get(kind, kind))
        handles = [matplotlib.lines.Line2D([], [], color=colors[s], marker="o", ms=3, label=s) for s in drawn]
        handles += [matplotlib.lines.Line2D([], [], color="0.3", ls=style, label=label)
                    for style, label in (("-", "ensemble (all chains)"), ("--", "last sample"))]
        legend_beside(axes[0, -1], handles)


def ood_histograms(
    scores: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    aurocs: Mapping[str, Mapping[str, float]],
    path: str | Path,
    dpi: int = 150,
) -> None:
    """Histograms of each score, in-distribution against OOD: ``scores[sampler][score] = (in, out)``."""
    samplers = list(scores)
    names = list(next(iter(scores.values())))
    with grid(path, len(samplers), len(names), width=4.0, height=2.8, dpi=dpi) as (fig, axes):
        for i, sampler in enumerate(samplers):
            for j, name in enumerate(names):
                ax = axes[i, j]
                inside, outside = scores[sampler][name]
                top = max(float(np.max(inside)), float(np.max(outside)), 1e-6)
                bins = np.linspace(0, top, 40)
                ax.hist(inside, bins=bins, density=True, histtype="stepfilled", alpha=0.55, color="tab:blue",
                        label="test (in distribution)")
                ax.hist(outside, bins=bins, density=True, histtype="stepfilled", alpha=0.55, color="tab:orange",
                        label="OOD")
                ax.set_title(f"{sampler}: {name} (AUROC {aurocs[sampler][name]:.3f})")
                ax.set_xlabel(f"{name} (nats)")
                ax.set_ylabel("density")
        axes[0, 0].legend(loc="upper right")


def unavailable(message: str, path: str | Path, dpi: int = 150) -> None:
    """A figure that says why a step produced nothing to draw."""
    with figure(path, dpi=dpi, width=6.0, height=1.6) as (fig, (ax,)):
        ax.axis("off")
        ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)


def decision_costs(
    rows: Sequence[Mapping[str, object]], colors: Mapping[str, str], path: str | Path, dpi: int = 150
) -> None:
    """Grouped bars per rule: realised cost (solid) and posterior expected cost (hatched), per sampler; the legend
    beside the bars, a sampler per colour and the two costs by fill."""
    rules = list(dict.fromkeys(str(r["rule"]) for r in rows))
    samplers = list(dict.fromkeys(str(r["sampler"]) for r in rows))
    width = 0.8 / (2 * len(samplers))
    with figure(path, dpi=dpi, width=max(5.0, 2.2 * len(rules)) + LEGEND_WIDTH, height=3.6) as (fig, (ax,)):
        for s, sampler in enumerate(samplers):
            for r, rule in enumerate(rules):
                row = next(x for x in rows if x["sampler"] == sampler and x["rule"] == rule)
                x0 = r - 0.4 + (2 * s) * width
                ax.bar(x0, row["realised_cost"], width, color=colors[sampler])
                ax.bar(x0 + width, row["expected_cost"], width, color="white", edgecolor=colors[sampler], hatch="///")
        ax.set_xticks(range(len(rules)), rules)
        ax.set_ylabel("mean cost per test example")
        ax.set_title("decisions: realised against posterior expected cost")
        handles = [matplotlib.patches.Patch(color=colors[s], label=s) for s in samplers]
        handles += [matplotlib.patches.Patch(facecolor="0.3", label="realised"),
                    matplotlib.patches.Patch(facecolor="white", edgecolor="0.3", hatch="///", label="expected")]
        legend_beside(ax, handles)


#: The costs the agreement figure draws its runs against, one row of panels each: column, axis label.
AGREEMENT_COSTS = {
    "device_seconds": "device seconds (warmup and sampling)",
    "total_grad_evals": "gradient evaluations (warmup and sampling, all chains;\nin minibatch gradients)",
}


def _against_cost(
    ax: Any, table: Any, colors: Mapping[str, str], floor: float, column: str, cost: str,
) -> list[Any]:
    """One panel of :func:`agreement`: ``column`` of every sampler's row against its ``cost``, the noise
    ``floor`` dashed, the reference (the rows not in ``colors``) a star on it at its own cost; the points'
    names, returned."""
    samplers = table[table["sampler"].isin(list(colors))]
    reference = table[~table["sampler"].isin(list(colors))]
    names = []
    for _, row in samplers.iterrows():
        if not np.isfinite(row[cost]):  # a file from before the cost was recorded
            continue
        ax.scatter(row[cost], row[column], s=40, color=colors[row["sampler"]], zorder=3, label=row["sampler"])
        names.append(ax.annotate(row["sampler"], (row[cost], row[column]), xytext=(4, 4),
                                 textcoords="offset points", fontsize=7))
    ax.axhline(floor, color="0.3", linestyle="--", linewidth=1, label="noise floor (reference's two halves)")
    for _, row in reference.iterrows():
        if np.isfinite(row[cost]):
            ax.scatter(row[cost], floor, s=90, marker="*", color="black", zorder=3,
                       label=f"{row['sampler']} (its cost)")
    known = table[cost][np.isfinite(table[cost].astype(float))]
    if len(known) and (known > 0).all():  # costs span orders of magnitude
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide
    return names


def hide_overlapping(texts: list[Any]) -> None:
    """Hide each text that overlaps one before it in ``texts``, so that the names of points close together
    do not print over each other (the legend's colours still name every point)."""
    if not texts:
        return
    renderer = texts[0].figure.canvas.get_renderer()
    shown: list[Any] = []
    for text in texts:
        box = text.get_window_extent(renderer)
        if any(box.overlaps(other) for other in shown):
            text.set_visible(False)
        else:
            shown.append(box)


def agreement(
    table: Any, floor: Mapping[str, float], colors: Mapping[str, str], path: str | Path, dpi: int = 150,
    warning: str | None = None,
) -> None:
    """Agreement with the reference posterior and total variation from it (the columns), against each run's
    cost (the rows): device seconds, and gradient evaluations of warmup and sampling over all chains (a
    baseline's cost is its training); the reference's noise floor (its two halves against each other) as a
    dashed line, and the reference itself as a star at its own cost on it."""
    import textwrap

    labels = ("agreement with the reference", "total variation from the reference")
    with grid(path, len(AGREEMENT_COSTS), 2, width=4.6 + LEGEND_WIDTH / 2, height=3.9, dpi=dpi) as (fig, axes):
        panels = []
        for row, (cost, xlabel) in zip(axes, AGREEMENT_COSTS.items()):
            for ax, column, label in zip(row, REFERENCE_MEASURES, labels):
                panels.append(_against_cost(ax, table, colors, floor[column], column, cost))
                ax.set_xlabel(xlabel)
                ax.set_ylabel(label)
        # Beside the panels, not over their points (ten runs leave no empty corner in any panel).
        legend_beside(axes[0, -1], axes[0, 0].get_legend_handles_labels()[0])
        title = "Samplers against the reference posterior (full-batch HMC)"
        if warning:
            title += "\n" + textwrap.fill(f"WARNING: {warning}", 110)
        fig.suptitle(title, fontsize=9, color="crimson" if warning else "black")
        fig.tight_layout()  # the layout the figure is saved with (grid's is the same), where the names are measured
        for names in panels:
            hide_overlapping(names)
