"""Stochastic gradient Nosé-Hoover thermostat (Ding, Fang, Babbush, Chen, Skeel and Neven, NeurIPS 2014):
BlackJAX's ``sgnht``.

The state carries the weights, a momentum and a scalar thermostat ``xi`` from
step to step. The thermostat is a friction that adapts until the mean kinetic
energy per dimension equals the temperature, which absorbs the unknown
gradient noise. ``alpha`` is the injected noise (and the thermostat's initial
value), in BlackJAX's scaling: ``step_size`` and ``alpha`` as for ``sghmc``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import blackjax
import jax
import jax.numpy as jnp

from bnn_sgmcmc.kernels import Kernel, kinetic_temperatures


def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    return 1


def build(logdensity_fn: Callable, settings: Mapping[str, Any]) -> Kernel:
    grad_fn = jax.grad(logdensity_fn)
    algorithm = blackjax.sgnht(grad_fn, alpha=settings["alpha"], beta=settings["beta"])

    def init(position, key):
        state = algorithm.init(position, key)
        return state._replace(xi=jnp.asarray(state.xi, jnp.float32))  # an array, so chains can be vmapped

    def step(key, state, minibatch, step_size, temperature):
        return algorithm.step(key, state, minibatch, step_size, temperature)

    return Kernel(init=init, step=step, position=lambda state: state.position, grad_evals_per_step=grad_evals_per_step(settings),
                  stats=lambda state: kinetic_temperatures(state.momentum))
