"""Chain diagnostics on what the model predicts: split R-hat and effective sample size.

The weights of an MLP are permutation-symmetric (swapping hidden units leaves
the function unchanged), so chains that agree about the predictions can sit in
different weight modes: diagnosing weights would flag them for nothing. We
diagnose predicted quantities instead, traced per kept sample during sampling:
each sample's mean test log-likelihood, and its probability of the true class
for a fixed subset of test examples.

Both statistics come from BlackJAX (``blackjax.diagnostics``) on split chains:
each chain's draws are cut into halves, which then count as separate chains,
so a chain that drifts shows up as disagreeing halves (the split R-hat of
Gelman et al., Bayesian Data Analysis, 3rd ed., and of Stan). One chain thus
still gets an R-hat; it can only see drift, not chains stuck in different places.
"""

from __future__ import annotations

import os

import numpy as np

# Diagnostics are tiny: keep them off an accelerator that a sampling job may be using.
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def split_chains(draws: np.ndarray) -> np.ndarray:
    """[C, S, ...] -> [2C, S // 2, ...]: each chain's first and second halves (a middle odd draw dropped)."""
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"draws must be [chains, samples, ...], got shape {x.shape}")
    half = x.shape[1] // 2
    if half < 2:
        raise ValueError(f"need at least 4 draws per chain for split diagnostics, got {x.shape[1]}")
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def split_rhat(draws: np.ndarray) -> np.ndarray:
    """Split potential scale reduction of [C, S, ...] draws; one value per trailing index."""
    import blackjax.diagnostics

    return np.asarray(blackjax.diagnostics.potential_scale_reduction(split_chains(draws), chain_axis=0, sample_axis=1))


def ess(draws: np.ndarray) -> np.ndarray:
    """Effective sample size of [C, S, ...] draws (all chains together, split as for R-hat)."""
    import blackjax.diagnostics

    return np.asarray(blackjax.diagnostics.effective_sample_size(split_chains(draws), chain_axis=0, sample_axis=1))
