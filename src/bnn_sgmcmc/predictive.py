"""Posterior-predictive accumulators, folded in one sample at a time on the device.

For every evaluation set, each kept weight sample's predictive probabilities
are added to a running mean (``mean += (p - mean) / count``, so the ensemble is
divided by exactly the number of samples in it) together with the running mean
of each sample's predictive entropy, which later splits the total uncertainty
into its aleatoric and epistemic parts. Weight samples themselves are never kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class EvalSet(NamedTuple):
    """Inputs ``x`` [n, D] (float, scaled) and, for labelled sets, ``labels`` [n].

    ``watch`` (optional, labelled sets only) indexes a few examples whose
    probability of the true class each sample reports, for chain diagnostics.
    """

    x: jax.Array
    labels: jax.Array | None
    watch: jax.Array | None = None


class Accumulator(NamedTuple):
    """Per chain: mean predictive probabilities [C, n, K], mean per-sample entropy [C, n]
    and the latest sample's own probabilities [C, n, K] (the single-sample baseline)."""

    probs: jax.Array
    mean_entropy: jax.Array
    last_probs: jax.Array


def init(eval_sets: Mapping[str, EvalSet], chains: int, num_classes: int) -> dict[str, Accumulator]:
    return {
        name: Accumulator(
            probs=jnp.zeros((chains, s.x.shape[0], num_classes), jnp.float32),
            mean_entropy=jnp.zeros((chains, s.x.shape[0]), jnp.float32),
            last_probs=jnp.zeros((chains, s.x.shape[0], num_classes), jnp.float32),
        )
        for name, s in eval_sets.items()
    }


def entropy(log_probs: jax.Array) -> jax.Array:
    """Entropy in nats of each row of log-probabilities (0 log 0 counted as 0)."""
    probs = jnp.exp(log_probs)
    return -jnp.sum(jnp.where(probs > 0, probs * log_probs, 0.0), axis=-1)


def accuracy(probs_or_log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    """Share of rows whose arg-max equals the label (works on probabilities or their logs)."""
    return jnp.mean(jnp.argmax(probs_or_log_probs, axis=-1) == labels)


def fold(
    acc: Mapping[str, Accumulator],
    params: Any,
    count: jax.Array,
    eval_sets: Mapping[str, EvalSet],
    predict: Callable[[Any, jax.Array], jax.Array],
) -> tuple[dict[str, Accumulator], dict[str, dict[str, jax.Array]]]:
    """Fold the sample ``params`` (leading chain axis) in as the ``count``-th sample.

    Returns the new accumulators and, for labelled sets, per-chain metrics of
    this step: ``ensemble_accuracy`` (of the running mean), ``pointwise_accuracy``
    and ``mean_log_likelihood`` (of this sample alone).
    """
    new: dict[str, Accumulator] = {}
    metrics: dict[str, dict[str, jax.Array]] = {}
    weight = 1.0 / count.astype(jnp.float32)
    for name, data in eval_sets.items():
        log_probs = jax.vmap(predict, in_axes=(0, None))(params, data.x)  # [C, n, K]
        old = acc[name]
        sample_probs = jnp.exp(log_probs)
        probs = old.probs + (sample_probs - old.probs) * weight
        mean_entropy = old.mean_entropy + (entropy(log_probs) - old.mean_entropy) * weight
        new[name] = Accumulator(probs, mean_entropy, sample_probs)
        if data.labels is not None:
            labels = data.labels.astype(jnp.int32)
            picked = jnp.take_along_axis(log_probs, labels[None, :, None], axis=2)[..., 0]
            metrics[name] = {
                "ensemble_accuracy": jax.vmap(accuracy, in_axes=(0, None))(probs, labels),
                "pointwise_accuracy": jax.vmap(accuracy, in_axes=(0, None))(log_probs, labels),
                "mean_log_likelihood": picked.mean(axis=1),
            }
            if data.watch is not None:
                metrics[name]["watched_probs"] = jnp.exp(picked[:, data.watch])  # [C, m]
    return new, metrics


METRICS = ("ensemble_accuracy", "pointwise_accuracy", "mean_log_likelihood")


def metric_names(data: EvalSet) -> tuple[str, ...]:
    """The per-sample trace metrics of an evaluation set: none unlabelled, ``METRICS`` (+ watched_probs)."""
    if data.labels is None:
        return ()
    return METRICS + (("watched_probs",) if data.watch is not None else ())


def metric_shape(data: EvalSet, name: str, chains: int) -> tuple[int, ...]:
    """Shape of one kept sample's value of a trace metric."""
    return (chains, data.watch.shape[0]) if name == "watched_probs" else (chains,)
