"""Stochastic gradient Hamiltonian Monte Carlo (Chen, Fox and Guestrin, ICML 2014): BlackJAX's ``sghmc``.

BlackJAX's kernel draws a fresh momentum at every step and runs
``num_integration_steps`` updates of the friction-damped dynamics (parameters
scaled as Ma, Chen and Fox, NeurIPS 2015), one gradient evaluation each; its
state between steps is therefore the weights alone. Redrawing the momentum
inflates the stationary variance by about K/(K-1) for K integration steps in
the small-step limit (11 % at the default 10; see docs/samplers.md, "Known biases, measured").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bnn_sgmcmc.errors import ConfigError
from bnn_sgmcmc.kernels import Kernel, check_friction

SETTINGS: dict[str, Any] = {
    "alpha": {
        "type": "number", "exclusiveMinimum": 0, "default": 0.01,
        "description": "Friction (BlackJAX's parametrisation; alpha x step_size must stay below 1).",
    },
    "beta": {"type": "number", "minimum": 0, "default": 0, "description": "Estimate of the gradient noise."},
    "num_integration_steps": {
        "type": "integer", "minimum": 1, "default": 10,
        "description": "Integration steps per kernel step, each one gradient evaluation; the momentum is redrawn "
                       "between kernel steps.",
    },
}



def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """One minibatch gradient per integration step (the step's one minibatch, K times)."""
    return int(settings["num_integration_steps"])


def check(settings: Mapping[str, Any], sampling: Mapping[str, Any], where: str) -> None:
    check_friction(settings, where)
    if settings["num_integration_steps"] == 1:
        raise ConfigError(
            f"{where}: kernel sghmc with num_integration_steps 1 never moves the weights by a gradient: it redraws "
            "the momentum before each step, and the one gradient of a step only reaches the momentum it then throws "
            "away, so the weights take a random walk. Use num_integration_steps 2 or more, or kernel "
            "sghmc_persistent, which keeps its momentum."
        )


def build(logdensity_fn: Callable, settings: Mapping[str, Any]) -> Kernel:
    import blackjax
    import jax

    steps = grad_evals_per_step(settings)
    algorithm = blackjax.sghmc(jax.grad(logdensity_fn), num_integration_steps=steps, alpha=settings["alpha"],
                               beta=settings["beta"])

    def step(key, state, minibatch, step_size, temperature):
        return algorithm.step(key, state, minibatch, step_size, temperature)

    return Kernel(init=lambda position, key: algorithm.init(position), step=step, position=lambda state: state,
                  grad_evals_per_step=steps)
