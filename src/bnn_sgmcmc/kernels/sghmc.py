"""Stochastic gradient Hamiltonian Monte Carlo (Chen, Fox and Guestrin, ICML 2014): BlackJAX's ``sghmc``.

BlackJAX's kernel draws a fresh momentum at every step and runs
``num_integration_steps`` updates of the friction-damped dynamics (parameters
scaled as Ma, Chen and Fox, NeurIPS 2015), one gradient evaluation each; its
state between steps is therefore the weights alone. Redrawing the momentum
inflates the stationary variance by about K/(K-1) for K integration steps in
the small-step limit (11 % at the default 10; see the README).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import blackjax
import jax

from bnn_sgmcmc.kernels import Kernel


def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """One gradient evaluation per integration step."""
    return int(settings["num_integration_steps"])


def build(logdensity_fn: Callable, settings: Mapping[str, Any]) -> Kernel:
    grad_fn = jax.grad(logdensity_fn)
    steps = grad_evals_per_step(settings)
    algorithm = blackjax.sghmc(grad_fn, num_integration_steps=steps, alpha=settings["alpha"], beta=settings["beta"])

    def step(key, state, minibatch, step_size, temperature):
        return algorithm.step(key, state, minibatch, step_size, temperature)

    return Kernel(init=lambda position, key: algorithm.init(position), step=step, position=lambda state: state,
                  grad_evals_per_step=steps)
