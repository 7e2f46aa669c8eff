"""Preconditioned SGLD (Li, Chen, Carlson and Carin, AAAI 2016), in BlackJAX's kernel style.

RMSprop's diagonal preconditioner applied to Langevin dynamics: a running
average ``v`` of the squared gradient sets a per-weight step
``G = 1 / (epsilon + sqrt(v))``, large where the posterior is flat and small
where it is steep, so one step size serves weights of very different scales.
Algorithm 1 of the paper, without the correction term Gamma (which the paper
drops in practice, as does SGMCMCJax's ``psgld``):

    v     <- decay v + (1 - decay) g * g
    G     <- 1 / (epsilon + sqrt(v))
    theta <- theta + step_size G g + sqrt(2 step_size G temperature) noise

``step_size`` is BlackJAX's parametrisation of SGLD (the paper's and
SGMCMCJax's step size is twice it); ``decay`` (0.99) and ``epsilon`` (1e-5)
are the paper's defaults. The state carries ``v`` from step to step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from bnn_sgmcmc.kernels import Kernel

SETTINGS: dict[str, Any] = {
    "decay": {
        "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.99,
        "description": "Decay of the running average of squared gradients (alpha in Li et al. 2016).",
    },
    "epsilon": {
        "type": "number", "exclusiveMinimum": 0, "default": 1.0e-5,
        "description": "Added to the root of that average (lambda in Li et al. 2016); bounds the preconditioner.",
    },
}

#: The sampler zoo's pSGLD: the paper's decay and epsilon, the largest step size that neither diverged nor
#: collapsed the ensemble's test accuracy on one chain of the notebook's protocol.
EXAMPLE = {"step_size": 2.5e-4}


class PSGLDState(NamedTuple):
    """The weights and the running average of the squared gradient, per weight."""

    position: Any
    square_avg: Any


def init(position: Any) -> PSGLDState:
    import jax
    import jax.numpy as jnp

    return PSGLDState(position, jax.tree.map(jnp.zeros_like, position))


def build_kernel(decay: float, epsilon: float) -> Callable:
    """``kernel(rng_key, state, grad_estimator, minibatch, step_size, temperature) -> state``."""
    import jax
    import jax.numpy as jnp
    from blackjax.util import generate_gaussian_noise

    def kernel(rng_key, state: PSGLDState, grad_estimator: Callable, minibatch: Any, step_size: Any,
               temperature: Any = 1.0) -> PSGLDState:
        grad = grad_estimator(state.position, minibatch)
        square_avg = jax.tree.map(lambda v, g: decay * v + (1.0 - decay) * g * g, state.square_avg, grad)
        noise = generate_gaussian_noise(rng_key, state.position)

        def move(x, g, v, n):
            scale = 1.0 / (epsilon + jnp.sqrt(v))
            return x + step_size * scale * g + jnp.sqrt(2.0 * step_size * scale * temperature) * n

        position = jax.tree.map(move, state.position, grad, square_avg, noise)
        return PSGLDState(position, square_avg)

    return kernel


def state_copies(settings: Mapping[str, Any], phase: str) -> int:
    """The weights and the preconditioner's running average of squared gradients."""
    return 2


def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """One minibatch gradient a step."""
    return 1


def build(logdensity_fn: Callable, settings: Mapping[str, Any]) -> Kernel:
    import jax

    grad_fn = jax.grad(logdensity_fn)
    kernel = build_kernel(settings["decay"], settings["epsilon"])

    def step(key, state, minibatch, step_size, temperature):
        return kernel(key, state, grad_fn, minibatch, step_size, temperature)

    return Kernel(init=lambda position, key: init(position), step=step, position=lambda state: state.position,
                  grad_evals_per_step=grad_evals_per_step(settings))
