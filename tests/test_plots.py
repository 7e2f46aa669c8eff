"""Figures: each plot function writes a non-empty image of the expected size (bnn_sgmcmc.plots)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bnn_sgmcmc import analysis, diagnostics, plots

DPI = 100


def size(path) -> tuple[int, int]:
    assert path.stat().st_size > 1000
    with Image.open(path) as img:
        return img.size


@pytest.fixture
def curves():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10) * 0.3, size=200)
    labels = rng.integers(0, 10, 200)
    return probs, labels


def test_sampler_colours_are_stable_and_distinct():
    a = plots.sampler_colors(["sgld", "sghmc", "sgld_small"])
    b = plots.sampler_colors(["sgld", "sghmc", "sgld_small"])
    assert a == b and len(set(a.values())) == 3 and a["sgld"].startswith("#")


def test_warmup_figure(tmp_path):
    path = tmp_path / "warmup.png"
    step = np.arange(100, 1001, 100)
    plots.warmup({"sgld": (step, np.linspace(0.5, 0.95, 10)[:, None] + np.zeros((1, 3)))},
                 {"sgld": "#1f77b4"}, path, dpi=DPI)
    assert size(path) == (500, 360)


def test_comparison_figure(tmp_path):
    path = tmp_path / "comparison.png"
    s = np.arange(1, 51)
    trace = {"sample_step": s, "grad_evals": 10 * s, "wall_seconds": np.stack([0.1 * s, 0.11 * s], 1),
             "ensemble_accuracy": np.stack([0.9 + 0.001 * s, 0.9 + 0.0011 * s], 1)}
    plots.comparison({"sghmc": trace}, {"sghmc": "#ff7f0e"}, path, dpi=DPI)
    assert size(path) == (1540, 360)


def test_uncertainty_figures(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (15, 28, 28), dtype=np.uint8)
    grid = tmp_path / "grid.png"
    plots.uncertain_images(images, np.arange(15) % 10, np.arange(15) % 7, np.linspace(0.3, 0.6, 15), "sgld", grid, dpi=DPI)
    assert size(grid) == (950, 630)
    bars = tmp_path / "bars.png"
    plots.uncertain_per_class(np.arange(10), 0.95, "sgld", "#1f77b4", bars, dpi=DPI)
    assert size(bars) == (500, 360)


def test_threshold_and_rejection_figures(tmp_path, curves):
    probs, labels = curves
    thr = tmp_path / "threshold.png"
    plots.threshold({"sgld": analysis.threshold_curve(probs, labels, analysis.default_thresholds())},
                    {"sgld": "#1f77b4"}, thr, dpi=DPI)
    assert size(thr) == (1140, 360)
    rej = tmp_path / "rejection.svg"  # other formats follow the suffix
    plots.rejection({"sgld": analysis.rejection_curve(probs, labels)}, {"sgld": "#1f77b4"}, rej, dpi=DPI)
    assert rej.read_text().lstrip().startswith("<?xml") and "AURC" in rej.read_text()


def test_reliability_figure(tmp_path, curves):
    probs, labels = curves
    path = tmp_path / "reliability.pdf"
    plots.reliability({"ensemble": analysis.reliability(probs, labels, 15)}, "sgld", "#1f77b4", path, dpi=DPI)
    assert path.read_bytes()[:4] == b"%PDF"


def _share_of_color(path, color, box=(0, 1)) -> float:
    """The share of the image's pixels (in the horizontal span ``box``, fractions of its width) of ``color``."""
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    left, right = (int(f * pixels.shape[1]) for f in box)
    target = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return float(np.mean(np.all(np.abs(pixels[:, left:right].astype(int) - target) < 8, axis=-1)))


def test_comparison_draws_a_run_of_one_kept_sample_per_chain(tmp_path):
    """A baseline keeps one draw per chain and spends no sampling gradient: its one point is drawn (a marker;
    a line through one point draws nothing) in the first panel, which has no legend to colour it."""
    path = tmp_path / "comparison.png"
    one = {"sample_step": np.array([1]), "grad_evals": np.array([0]), "wall_seconds": np.zeros((1, 3)),
           "ensemble_accuracy": np.full((1, 3), 0.95)}
    plots.comparison({"map": one}, {"map": "#ff7f0e"}, path, dpi=DPI)
    assert size(path) == (1540, 360)
    assert _share_of_color(path, "#ff7f0e", box=(0, 0.3)) > 0


def test_ranking_leaves_cells_in_words_out(tmp_path):
    """A baseline's R-hat cell says it is not a Markov chain: no dot, no failure, the words in its row."""
    table = pd.DataFrame({"sampler": ["sgld", "map"], "rhat": [1.2, diagnostics.NOT_A_MARKOV_CHAIN],
                          "rank_rhat": pd.array([1, None], "Int64"), "nll": [0.3, 0.2], "rank_nll": [2, 1]})
    colors = {"sgld": "#1f77b4", "map": "#ff7f0e"}
    path = tmp_path / "ranking.png"
    plots.ranking(table, {"rhat": "rank_rhat", "nll": "rank_nll"}, colors, path, dpi=DPI)
    assert size(path) == (680, 250)
    assert _share_of_color(path, "#ff7f0e", box=(0, 0.5)) == 0 < _share_of_color(path, "#ff7f0e", box=(0.5, 1))


def test_agreement_figure_against_seconds_and_gradient_evaluations(tmp_path):
    """Two rows of panels, one per cost; a run whose gradient count is unknown (an older file) is left out of
    the second row only."""
    table = pd.DataFrame({
        "sampler": ["reference", "sgld", "map"], "agreement": [0.97, 0.9, 0.93], "total_variation": [0.05, 0.1, 0.08],
        "device_seconds": [500.0, 20.0, 30.0], "total_grad_evals": [2e6, np.nan, 4e4],
    })
    path = tmp_path / "agreement.png"
    plots.agreement(table, {"agreement": 0.97, "total_variation": 0.05}, {"sgld": "#1f77b4", "map": "#ff7f0e"},
                    path, dpi=DPI)
    assert size(path) == (1140, 780)
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    blue = np.all(np.abs(pixels.astype(int) - [0x1F, 0x77, 0xB4]) < 8, axis=-1)
    assert blue[:390].any() and not blue[390:].any()  # sgld: against seconds, not against gradients


def test_members_figures(tmp_path):
    rng = np.random.default_rng(0)
    found = diagnostics.member_diversity(np.log(rng.dirichlet(np.ones(10), size=(4, 50))), rng.integers(0, 10, 50))
    heatmap, histogram, least = tmp_path / "heatmap.png", tmp_path / "histogram.png", tmp_path / "least.png"
    plots.member_disagreement(found, "map", heatmap, dpi=DPI)
    assert size(heatmap) == (960, 440)  # 2.6 + 0.3 inches a member, square panels
    plots.member_spread_histogram(found.spread, "map", "#ff7f0e", 4, histogram, dpi=DPI)
    assert size(histogram) == (650, 360)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    plots.least_agreeing(images, np.arange(6), found.spread[:6], rng.uniform(size=(4, 6)), rng.uniform(size=6), "map",
                         "#ff7f0e", least, dpi=DPI)
    assert size(least) == (1760, 420)


def test_every_saved_figure_is_checked_for_text_past_its_edges(tmp_path):
    """conftest's autouse check (every test's figures): a title wider than its figure is found and named, and so
    are two panels' axis labels that print over each other; the same panels with short ones pass."""
    with pytest.raises(AssertionError, match="past the figure's edge.*'a title far too long"):
        with plots.grid(tmp_path / "cut.png", 1, 1, width=2.0) as (_, axes):
            axes[0, 0].set_title("a title far too long for a panel two inches wide, cut at the right edge")
    with plots.grid(tmp_path / "fits.png", 1, 1, width=2.0) as (_, axes):
        axes[0, 0].set_title("short")
    assert size(tmp_path / "fits.png") == (300, 480)
    long = "gradient evaluations of warmup and sampling over all chains, in minibatch gradients"
    with pytest.raises(AssertionError, match=f"Text '{long}' overlaps Text '{long}'"):
        with plots.grid(tmp_path / "labels.png", 1, 2, width=3.0) as (_, axes):
            for ax in axes[0]:
                ax.set_xlabel(long)
    with plots.grid(tmp_path / "labels.png", 1, 2, width=3.0) as (_, axes):
        for ax in axes[0]:
            ax.set_xlabel("gradient evaluations")


def test_the_agreement_figure_names_points_close_together_once(tmp_path):
    """Two runs at nearly the same cost and total variation: the second's name would print over the first's, so
    it is hidden (the legend's colour names it); a run far from both keeps its name."""
    table = pd.DataFrame({
        "sampler": ["reference", "laplace", "laplace_marglik", "sgld"], "agreement": [0.99, 0.952, 0.9521, 0.90],
        "total_variation": [0.01, 0.0703, 0.0702, 0.2], "device_seconds": [500.0, 16.7, 16.9, 120.0],
        "total_grad_evals": [2e6, 2432.0, 2432.0, 26720.0],
    })
    colors = plots.sampler_colors(["laplace", "laplace_marglik", "sgld"])
    with plots.grid(tmp_path / "panel.png", 1, 1) as (fig, axes):
        names = plots._against_cost(axes[0, 0], table, colors, 0.01, "total_variation", "device_seconds")
        fig.tight_layout()
        plots.hide_overlapping(names)
    assert [t.get_text() for t in names if t.get_visible()] == ["laplace", "sgld"]
