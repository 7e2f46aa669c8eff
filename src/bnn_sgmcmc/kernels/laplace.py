"""A last-layer Laplace approximation around each MAP member (MacKay 1992; Daxberger, Kristiadi, Immer et al.,
"Laplace Redux", NeurIPS 2021): a Gaussian per member, a "Laplace ensemble" with several chains.

Warmup trains each chain to the posterior's mode exactly as the ``map``
kernel does (the same settings and defaults). When sampling starts, the kernel
takes the whole training set once and forms the posterior precision of the
output layer's weights and bias at the mode, the rest of the network fixed
there: the generalised Gauss-Newton matrix of the likelihood plus the prior's
precision,

    P = G + delta I,   G = sum_n (phi_n phi_n^T) kron H_n,

with ``phi_n`` the output layer's inputs for example n (and a 1 for its bias)
and ``H_n = diag(p_n) - p_n p_n^T`` the softmax likelihood's Hessian in the
logits, and ``delta`` the prior's precision on the layer: by default
(``prior_precision: model``) the model's, ``1 / prior_scale^2``, so that the
approximation is of the same posterior as every other method's. With
``prior_precision: marglik``, as Laplace Redux recommends, ``delta`` is
chosen per member to maximise the Laplace approximation's marginal
likelihood of the training data (MacKay 1992; Immer, Bauer, Fortuin, Rätsch
and Khan, ICML 2021):

    log Z(delta) = log p(D | m) + (P/2) log delta - (delta/2) |m|^2
                   - (1/2) sum_i log(lambda_i + delta) + const,

for the layer's mode ``m`` with P entries and the eigenvalues ``lambda_i`` of
``G``: the maximum on a grid of 0.025 decades from 1e-4 to 1e6, refined by
MacKay's fixed point ``delta = gamma / |m|^2``, ``gamma = sum_i lambda_i /
(lambda_i + delta)``. The eigenvalues of the default 5,010 x 5,010 ``G`` took
6.3 s, beside about 35 s to form it from MNIST, on a 2-core Intel Xeon VM
(2026-12-07), and hold one more copy of it. The members were trained under the model's prior either way (the
tuning is post hoc, as in Laplace Redux), and the tuned approximation is of
another posterior than the reference's: its prior on the output layer is
the one the data favour. The precision each member
used is traced (``kernel_trace/prior_precision``) and the verdict's note
gives it. Every sampling step is then an independent draw of the layer from
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
    "prior_precision": {
        "enum": ["model", "marglik"], "default": "model",
        "description": "The output layer's prior precision in the Laplace approximation. model: the model's, 1 / "
                       "model.prior_scale^2, the same posterior as every other method's; marglik: per member, the "
                       "one that maximises the approximation's marginal likelihood of the training data (Immer et "
                       "al. 2021, as Laplace Redux recommends), post hoc.",
    },
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
    """The current draw's weights, the output layer's mode as a matrix [D, K], the lower Cholesky factor of
    its posterior precision [D K, D K] (row-major vec of the matrix) and the prior precision in it."""

    position: Any
    mode: Any
    factor: Any
    prior_precision: Any


def state_copies(settings: Mapping[str, Any], phase: str) -> int:
    """Training: as map's; sampling: the current draw's weights (the mode's layer and the factor aside)."""
    return map_kernel.state_copies(settings, phase) if phase == "warmup" else 1


def covariance_values(settings: Mapping[str, Any], widths: list[int]) -> int:
    """Matrices of ((H + 1) K)^2 values (H the last hidden width, K the classes) held at once when sampling
    starts: the output layer's precision and its Cholesky factor, and with ``prior_precision: marglik`` the
    copy of the GGN its eigenvalue decomposition works on."""
    matrices = 3 if settings["prior_precision"] == "marglik" else 2
    return matrices * ((widths[-2] + 1) * widths[-1]) ** 2


def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """None a sampling step (a Gaussian draw); one minibatch gradient a training step, and one full-data pass
    (counted as a gradient) to form the precision when sampling starts."""
    return 0


def sampling_steps(settings: Mapping[str, Any]) -> int:
    """``samples`` independent draws per member."""
    return int(settings["samples"])


#: Training as map's (a temperature is no reason to refuse here: it scales the covariance).
warmup_steps = map_kernel.warmup_steps


def ggn(network: Network, params: Any, x: Any, chunk_values: int = CHUNK_VALUES) -> Any:
    """The generalised Gauss-Newton matrix of the likelihood in the output layer at ``params`` on the inputs
    ``x`` [N, ...], ``sum_n (phi_n phi_n^T) kron H_n`` (see the module's docstring), [D K, D K]. Summed over
    chunks of examples, each padded one with zero features (which add nothing)."""
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

    total, _ = jax.lax.scan(add, jnp.zeros((d * k, d * k), matrix.dtype), (padded, valid))
    return total


def precision(network: Network, params: Any, x: Any, chunk_values: int = CHUNK_VALUES) -> Any:
    """The output layer's posterior precision under the model's prior: :func:`ggn` plus the prior's precision."""
    return with_prior(ggn(network, params, x, chunk_values), network.prior_precision)


def with_prior(g: Any, delta: Any) -> Any:
    """The posterior precision of a layer whose likelihood's GGN is ``g``, under a prior of precision ``delta``
    on each weight: ``g + delta I``."""
    import jax.numpy as jnp

    return g + delta * jnp.eye(g.shape[0], dtype=g.dtype)


#: The grid of prior precisions :func:`marglik_precision` searches (log10), before its fixed-point refinement.
MARGLIK_GRID = (-4.0, 6.0, 401)


def log_evidence(eigenvalues: Any, mode_norm2: Any, size: int, delta: Any) -> Any:
    """The terms of the Laplace approximation's log marginal likelihood that depend on the prior precision
    ``delta`` (broadcast): ``(P/2) log delta - (delta/2) |m|^2 - (1/2) sum_i log(lambda_i + delta)``."""
    import jax.numpy as jnp

    delta = jnp.asarray(delta)
    return (0.5 * size * jnp.log(delta) - 0.5 * delta * mode_norm2
            - 0.5 * jnp.sum(jnp.log(eigenvalues + delta[..., None]), axis=-1))


def marglik_precision(g: Any, mode: Any, iterations: int = 50) -> Any:
    """The prior precision of the output layer that maximises the Laplace approximation's marginal likelihood,
    for its GGN ``g`` [P, P] and mode ``mode`` (P entries): the best of a log grid (:data:`MARGLIK_GRID`),
    then MacKay's fixed point ``delta = gamma / |m|^2`` from there, whose fixed points are the objective's
    stationary points; the grid's best if the iteration leaves its bracket."""
    import jax
    import jax.numpy as jnp

    eigenvalues = jnp.clip(jnp.linalg.eigvalsh(g), 0.0)  # a PSD matrix's rounding can give tiny negatives
    norm2 = jnp.sum(jnp.square(mode))
    low, high, count = MARGLIK_GRID
    grid = jnp.logspace(low, high, count, dtype=g.dtype)
    scores = log_evidence(eigenvalues, norm2, mode.size, grid)
    best = grid[jnp.argmax(scores)]

    def mackay(delta, _):
        gamma = jnp.sum(eigenvalues / (eigenvalues + delta))
        return jnp.clip(gamma / jnp.maximum(norm2, jnp.finfo(g.dtype).tiny), 10.0 ** low, 10.0 ** high), None

    refined, _ = jax.lax.scan(mackay, best, None, length=iterations)
    step = 10.0 ** ((high - low) / (count - 1))
    inside = (refined >= best / step) & (refined <= best * step)
    better = log_evidence(eigenvalues, norm2, mode.size, refined) >= jnp.max(scores)
    return jnp.where(inside & better, refined, best)


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
    tuned = settings["prior_precision"] == "marglik"

    def warmup_step(key, state, minibatch, step_size, temperature):
        return train(state, minibatch, step_size)

    def start_sampling(state: map_kernel.MAPState, whole: Any) -> LaplaceState:
        x, _ = whole
        g, mode = ggn(network, state.position, x), network.last(state.position)
        delta = marglik_precision(g, mode) if tuned else jnp.asarray(network.prior_precision, g.dtype)
        factor = jnp.linalg.cholesky(with_prior(g, delta))
        return LaplaceState(state.position, mode, factor, delta)

    def step(key, state: LaplaceState, minibatch, step_size, temperature) -> LaplaceState:
        layer = draw(key, state.mode, state.factor, temperature)
        return state._replace(position=network.with_last(state.position, layer))

    def stats(state) -> dict[str, Any]:
        """Sampling: the prior precision the member's approximation uses; training traces nothing."""
        return {"prior_precision": state.prior_precision} if isinstance(state, LaplaceState) else {}

    return Kernel(init=lambda position, key: init(position), step=step, position=lambda state: state.position,
                  grad_evals_per_step=grad_evals_per_step(settings), warmup_step=warmup_step,
                  start_sampling=start_sampling, warmup_grad_evals_per_step=1, stats=stats)
