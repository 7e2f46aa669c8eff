"""Stochastic gradient Nosé-Hoover thermostat (Ding, Fang, Babbush, Chen, Skeel and Neven, NeurIPS 2014):
BlackJAX's ``sgnht``.

The state carries the weights, a momentum and a scalar thermostat ``xi`` from
step to step. The thermostat is a friction that adapts until the mean kinetic
energy per dimension equals the temperature, which absorbs the unknown
gradient noise. ``alpha`` is the injected noise (and the thermostat's initial
value), in BlackJAX's scaling: ``step_size`` and ``alpha`` as for ``sghmc``.
The momentum's kinetic temperature is traced (``kernel_trace``), as
``sghmc_persistent``'s, and a job warns when it runs hot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bnn_sgmcmc.kernels import Kernel, check_friction, kinetic_temperatures

SETTINGS: dict[str, Any] = {
    "alpha": {
        "type": "number", "exclusiveMinimum": 0, "default": 0.01,
        "description": "Injected noise, and the thermostat's initial friction (BlackJAX's parametrisation).",
    },
    "beta": {"type": "number", "minimum": 0, "default": 0, "description": "Estimate of the gradient noise."},
}

#: The sampler zoo's SGNHT: the largest step size that neither diverged nor collapsed the ensemble's test
#: accuracy on one chain of the notebook's protocol; alpha as SGHMC's.
EXAMPLE = {"step_size": 1.0e-3, "alpha": 4.71}


def state_copies(settings: Mapping[str, Any], phase: str) -> int:
    """The weights and the momentum (and the thermostat, a scalar)."""
    return 2


def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """One minibatch gradient a step."""
    return 1


def check(settings: Mapping[str, Any], sampling: Mapping[str, Any], where: str) -> None:
    check_friction(settings, where)


def build(logdensity_fn: Callable, settings: Mapping[str, Any]) -> Kernel:
    import blackjax
    import jax
    import jax.numpy as jnp

    algorithm = blackjax.sgnht(jax.grad(logdensity_fn), alpha=settings["alpha"], beta=settings["beta"])

    def init(position, key):
        state = algorithm.init(position, key)
        return state._replace(xi=jnp.asarray(state.xi, jnp.float32))  # an array, so chains can be vmapped

    def step(key, state, minibatch, step_size, temperature):
        return algorithm.step(key, state, minibatch, step_size, temperature)

    return Kernel(init=init, step=step, position=lambda state: state.position, grad_evals_per_step=grad_evals_per_step(settings),
                  stats=lambda state: kinetic_temperatures(state.momentum))
