"""The Bayesian MLP: a Flax module, its prior, its likelihood and its initial weights.

As in BlackJAX's MLP classifier example: dense layers with ReLU, a
log-softmax output, and an independent Normal(0, prior_scale^2) prior on every
weight and bias. Sizes come from the config and the data file, never from code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.scipy.stats import norm

Params = Any  # a pytree of arrays


def flat_draw(sample: Callable[..., jax.Array], key: jax.Array, shape: Sequence[int], dtype: Any) -> jax.Array:
    """``sample(key, shape, dtype)`` (a ``jax.random`` sampler) drawn as a flat vector and reshaped.

    The same numbers, bit for bit: JAX's Threefry numbers the elements of a draw
    in row-major order. But XLA's CPU compiler spends seconds generating code
    for Threefry over many matrix shapes, the output layer's kernel among them:
    a 64 x 10 draw for 2 chains compiles in 2.5 s, its 640-vector in 0.3 s, a
    784 x 64 draw in 0.3 s (docs/benchmarks-history.md).
    """
    return sample(key, (math.prod(shape),), dtype).reshape(shape)


def lecun_normal(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Flax's default Dense kernel initialiser, bit for bit: JAX's ``variance_scaling(1, "fan_in",
    "truncated_normal")`` (LeCun normal) for a kernel ``[inputs, outputs]``, drawn flat (:func:`flat_draw`)."""
    variance = jnp.array(1.0 / shape[0], dtype=dtype)
    stddev = jnp.sqrt(variance) / jnp.array(0.87962566103423978, dtype)  # a standard normal's on (-2, 2)
    return flat_draw(lambda k, s, d: jax.random.truncated_normal(k, -2, 2, s, d), key, shape, dtype) * stddev


class MLP(nn.Module):
    """Dense layers of widths ``hidden`` with ReLU, then ``num_classes`` log-probabilities."""

    hidden: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width, kernel_init=lecun_normal)(x))
        return nn.log_softmax(nn.Dense(self.num_classes, kernel_init=lecun_normal)(x))


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
            [prior_scale * jax.lax.optimization_barrier(flat_draw(jax.random.normal, k, leaf.shape, leaf.dtype))
             for k, leaf in zip(keys, leaves)],
        )
    raise ValueError(f"model.init must be 'flax' or 'prior', got {method!r}")


def init_chains(keys: jax.Array, model: MLP, input_dim: int) -> Params:
    """Flax's default initial weights of one chain per key (a leading chain axis), as one jitted program:
    the same arrays as op by op, where Flax's initialisers compile a program per operation (3.0 s against
    1.2 s cold on a 2-core CPU for a 36-4-10 model)."""
    return jax.jit(jax.vmap(lambda k: init_params(k, model, input_dim)))(keys)


def log_prior(params: Params, prior_scale: float = 1.0) -> jax.Array:
    """Sum of Normal(0, prior_scale^2) log-densities over every weight and bias."""
    return sum(jnp.sum(norm.logpdf(leaf, 0.0, prior_scale)) for leaf in jax.tree.leaves(params))


def log_likelihood_fn(model: MLP) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """``(params, x [B, D], y [B]) -> sum of log p(y | x)``: the whole batch in one application."""

    def log_likelihood(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
        log_probs = model.apply({"params": params}, x)
        return jnp.take_along_axis(log_probs, y[:, None].astype(jnp.int32), axis=1).sum()

    return log_likelihood


def last_layer_name(model: MLP) -> str:
    """The parameter group of the output layer (Flax names the dense layers in order)."""
    return f"Dense_{len(model.hidden)}"


def features_fn(model: MLP) -> Callable[[Params, jax.Array], jax.Array]:
    """``(params, x [B, D]) -> [B, H + 1]``: the output layer's inputs (the last hidden layer's activations, or
    the images themselves without hidden layers) and a column of ones for its bias, so that the outputs before
    the softmax are ``features @ last_layer_matrix``."""

    def features(params: Params, x: jax.Array) -> jax.Array:
        for i in range(len(model.hidden)):
            layer = params[f"Dense_{i}"]
            x = nn.relu(x @ layer["kernel"] + layer["bias"])
        return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)

    return features


def softmax_hessian(logits: jax.Array) -> jax.Array:
    """``[B, K] -> [B, K, K]``: the Hessian of each example's negative log softmax likelihood with respect to its
    logits, ``diag(p) - p p^T`` (the same for every label)."""
    p = jax.nn.softmax(logits, axis=-1)
    return jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]


def last_layer(model: MLP, prior_scale: float) -> Any:
    """The output layer as a :class:`bnn_sgmcmc.kernels.Network`: its weights and bias as one matrix, the
    features that multiply it, the softmax likelihood's Hessian and the prior's precision."""
    from bnn_sgmcmc.kernels import Network

    name = last_layer_name(model)

    def last(params: Params) -> jax.Array:
        return jnp.concatenate([params[name]["kernel"], params[name]["bias"][None, :]], axis=0)

    def with_last(params: Params, matrix: jax.Array) -> Params:
        return {**params, name: {"kernel": matrix[:-1], "bias": matrix[-1]}}

    return Network(features_fn(model), last, with_last, softmax_hessian, 1.0 / prior_scale**2)


def predict_fn(model: MLP) -> Callable[[Params, jax.Array], jax.Array]:
    """``(params, x [n, D]) -> log-probabilities [n, K]``, jitted.

    Inside a sampling program this is a nested jit: JAX traces it once per
    shape of ``x`` instead of once per evaluation set and branch (20 times for
    the default config's test set and 9 shifted sets, each through Flax's
    ``apply``), and XLA inlines it, so the compiled program and every number
    are the same. With the persistent cache filled, the default config's SGLD
    sampling program then traces, lowers and loads in 0.99 to 1.14 s instead
    of 1.29 to 1.53 s on a 2-core CPU (docs/benchmarks-history.md).
    """

    def predict(params: Params, x: jax.Array) -> jax.Array:
        return model.apply({"params": params}, x)

    return jax.jit(predict)


def num_params(params: Params) -> int:
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))
