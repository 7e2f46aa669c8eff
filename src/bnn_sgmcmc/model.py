"""The Bayesian MLP: a Flax module, its prior, its likelihood and its initial weights.

As in BlackJAX's MLP classifier example: dense layers with ReLU, a
log-softmax output, and an independent Normal(0, prior_scale^2) prior on every
weight and bias. Sizes come from the config and the data file, never from code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.scipy.stats import norm

Params = Any  # a pytree of arrays


class MLP(nn.Module):
    """Dense layers of widths ``hidden`` with ReLU, then ``num_classes`` log-probabilities."""

    hidden: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.log_softmax(nn.Dense(self.num_classes)(x))


def build(hidden: Sequence[int], num_classes: int) -> MLP:
    return MLP(hidden=tuple(int(h) for h in hidden), num_classes=int(num_classes))


def init_params(
    key: jax.Array, model: MLP, input_dim: int, method: str = "flax", prior_scale: float = 1.0
) -> Params:
    """Initial weights: Flax's default initialisers (as the notebook) or a draw from the prior."""
    shapes_key, prior_key = jax.random.split(key)
    params = model.init(shapes_key, jnp.zeros((1, input_dim)))["params"]
    if method == "flax":
        return params
    if method == "prior":
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(prior_key, len(leaves))
        return jax.tree.unflatten(
            treedef,
            # The barrier keeps XLA from folding the scale into the draw's own arithmetic, so that a jitted
            # init rounds as an op-by-op one does.
            [prior_scale * jax.lax.optimization_barrier(jax.random.normal(k, leaf.shape, leaf.dtype))
             for k, leaf in zip(keys, leaves)],
        )
    raise ValueError(f"model.init must be 'flax' or 'prior', got {method!r}")


def log_prior(params: Params, prior_scale: float = 1.0) -> jax.Array:
    """Sum of Normal(0, prior_scale^2) log-densities over every weight and bias."""
    return sum(jnp.sum(norm.logpdf(leaf, 0.0, prior_scale)) for leaf in jax.tree.leaves(params))


def log_likelihood_fn(model: MLP) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """``(params, x [B, D], y [B]) -> sum of log p(y | x)``: the whole batch in one application."""

    def log_likelihood(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
        log_probs = model.apply({"params": params}, x)
        return jnp.take_along_axis(log_probs, y[:, None].astype(jnp.int32), axis=1).sum()

    return log_likelihood


def predict_fn(model: MLP) -> Callable[[Params, jax.Array], jax.Array]:
    """``(params, x [n, D]) -> log-probabilities [n, K]``."""

    def predict(params: Params, x: jax.Array) -> jax.Array:
        return model.apply({"params": params}, x)

    return predict


def num_params(params: Params) -> int:
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))
