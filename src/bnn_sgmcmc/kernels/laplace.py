"""A last-layer Laplace approximation around each MAP member (MacKay 1992; Daxberger, Kristiadi, Immer et al.,
"Laplace Redux", NeurIPS 2021): a Gaussian per member, a "Laplace ensemble" with several chains.

Warmup trains each chain to the posterior's mode exactly as the ``map``
kernel does (the same settings and defaults). When sampling starts, the kernel
takes the whole training set once and forms the posterior precision of the
output layer's weights and bias at the mode, the rest of the network fixed
there: the generalised Gauss-Newton matrix of the likelihood plus the prior's
precision,

    P = sum_n (phi_n phi_n^T) kron H_n + I / prior_scale^2,

with ``phi_n`` the output layer's inputs for example n (and a 1 for its bias)
and ``H_n = diag(p_n) - p_n p_n^T`` the softmax likelihood's Hessian in the
logits. Every sampling step is then an independent draw of the layer from
N(mode, temperature P^-1) through the Cholesky factor of P, the rest of the
weights at the mode. The logits are linear in that layer, so these draws give
the linearised (GLM) predictive that Immer, Korzepa and Bauer (AISTATS 2021)
recommend, exactly, and the GGN is the exact Hessian of the log posterior in
the layer's weights.

The factor has ((H + 1) K)^2 entries per member (H the last hidden width, K
the classes): 100 MB for the default 500-unit network, held on the device
and in the sampling job's checkpoints (not in its output). Forming P costs
about (H + 1)^2 K^2 multiply-adds per training example (1.5 x 10^12 for the
default model on MNIST: about 54 s a member on a 2-core Intel Xeon VM,
2026-12-06; not yet measured on a GPU),
counted as one full-data gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from bnn_sgmcmc.kernels import Kernel, Network
from bnn_sgmcmc.kernels import map as map_kernel

SETTINGS: dict[str, Any] = map_kernel.SETTINGS | {
    "samples": {
        "type": "integer", "minimum": 1, "default": 100,
        "description": "Independent draws of the output layer per member, the sampling phase's steps (they "
                       "replace sampling.sampling_steps and thinning).",
    },
}
ENTRY_DEFAULTS = map_kernel.ENTRY_DEFAULTS
MARKOV_CHAIN = False
NETWORK = True

#: Values of the largest intermediate array while forming P, per chain ([examples, D, K, K]).
CHUNK_VALUES = 1 << 23


class LaplaceState(NamedTuple):
    """The current draw's weights, the output layer's mode as a matrix [D, K] and the lower Cholesky factor of
    its posterior precision [D K, D K] (row-major vec of the matrix)."""

    position: Any
    mode: Any
    factor: Any


def state_copies(settings: Mapping[str, Any], phase: str) -> int:
    """Training: as map's; sampling: the current draw's weights (the mode's layer and the factor aside)."""
    return map_kernel.state_copies(settings, phase) if phase == "warmup" else 1


def covariance_values(settings: Mapping[str, Any], widths: list[int]) -> int:
    """((H + 1) K)^2: the output layer's precision factor (H the last hidden width, K the classes)."""
    return ((widths[-2] + 1) * widths[-1]) ** 2


def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """None a sampling step (a Gaussian draw); one minibatch gradient a training step, and one full-data pass
    (counted as a gradient) to form the precision when sampling starts."""
    return 0


def sampling_steps(settings: Mapping[str, Any]) -> int:
    """``samples`` independent draws per member."""
    return int(settings["samples"])


#: Training as map's (a temperature is no reason to refuse here: it scales the covariance).
warmup_steps = map_kernel.warmup_steps


def precision(network: Network, params: Any, x: Any, chunk_values: int = CHUNK_VALUES) -> Any:
    """The output layer's posterior precision at ``params`` on the inputs ``x`` [N, ...]: the generalised
    Gauss-Newton matrix of the likelihood, ``sum_n (phi_n phi_n^T) kron H_n``, plus the prior's precision
    (see the module's docstring), [D K, D K]. Summed over chunks of examples, each padded one with zero
    features (which add nothing)."""
    import jax
    import jax.numpy as jnp

    matrix = network.last(params)
    d, k = matrix.shape
    n = x.shape[0]
    size = max(1, min(n, chunk_values // (d * k * k)))
    chunks = -(-n // size)
    padded = jnp.concatenate([x, jnp.zeros((chunks * size - n, *x.shape[1:]), x.dtype)]).reshape(chunks, size, *x.shape[1:])
    valid = (jnp.arange(chunks * size) < n).reshape(chunks, size)

    def add(total, chunk):
        inputs, keep = chunk
        phi = network.features(params, inputs) * keep[:, None].astype(matrix.dtype)
        hessians = network.output_hessian(phi @ matrix)
        return total + jnp.einsum("ni,nab,nj->iajb", phi, hessians, phi).reshape(d * k, d * k), None

    ggn, _ = jax.lax.scan(add, jnp.zeros((d * k, d * k), matrix.dtype), (padded, valid))
    return ggn + network.prior_precision * jnp.eye(d * k, dtype=matrix.dtype)


def draw(key: Any, mode: Any, factor: Any, temperature: Any) -> Any:
    """A draw of the layer's matrix from N(mode, temperature P^-1), P = factor factor^T: ``mode + sqrt(T)
    factor^-T z`` has covariance T (factor factor^T)^-1."""
    import jax
    import jax.numpy as jnp

    z = jax.random.normal(key, (mode.size,), mode.dtype)
    offset = jax.scipy.linalg.solve_triangular(factor, z, lower=True, trans="T")
    return mode + jnp.sqrt(temperature) * offset.reshape(mode.shape)


def build(logdensity_fn: Callable, settings: Mapping[str, Any], network: Network) -> Kernel:
    import jax.numpy as jnp

    init, train = map_kernel.training_step(logdensity_fn, settings)

    def warmup_step(key, state, minibatch, step_size, temperature):
        return train(state, minibatch, step_size)

    def start_sampling(state: map_kernel.MAPState, whole: Any) -> LaplaceState:
        x, _ = whole
        factor = jnp.linalg.cholesky(precision(network, state.position, x))
        return LaplaceState(state.position, network.last(state.position), factor)

    def step(key, state: LaplaceState, minibatch, step_size, temperature) -> LaplaceState:
        layer = draw(key, state.mode, state.factor, temperature)
        return state._replace(position=network.with_last(state.position, layer))

    return Kernel(init=lambda position, key: init(position), step=step, position=lambda state: state.position,
                  grad_evals_per_step=grad_evals_per_step(settings), warmup_step=warmup_step,
                  start_sampling=start_sampling, warmup_grad_evals_per_step=1)
