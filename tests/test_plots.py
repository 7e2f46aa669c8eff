"""Figures: each plot function writes a non-empty image of the expected size (bnn_sgmcmc.plots)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bnn_sgmcmc import analysis, plots

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
    assert size(path) == (1320, 360)


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
    assert size(thr) == (920, 360)
    rej = tmp_path / "rejection.svg"  # other formats follow the suffix
    plots.rejection({"sgld": analysis.rejection_curve(probs, labels)}, {"sgld": "#1f77b4"}, rej, dpi=DPI)
    assert rej.read_text().lstrip().startswith("<?xml") and "AURC" in rej.read_text()


def test_reliability_figure(tmp_path, curves):
    probs, labels = curves
    path = tmp_path / "reliability.pdf"
    plots.reliability({"ensemble": analysis.reliability(probs, labels, 15)}, "sgld", "#1f77b4", path, dpi=DPI)
    assert path.read_bytes()[:4] == b"%PDF"
