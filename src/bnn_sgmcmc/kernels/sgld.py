"""Stochastic gradient Langevin dynamics (Welling and Teh, ICML 2011): BlackJAX's ``sgld``.

The state is the weights alone. A step moves them by ``step_size`` times the
gradient plus Gaussian noise of variance ``2 step_size temperature``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bnn_sgmcmc.kernels import Kernel

SETTINGS: dict[str, Any] = {}



def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """One minibatch gradient a step."""
    return 1


def build(logdensity_fn: Callable, settings: Mapping[str, Any]) -> Kernel:
    import blackjax
    import jax

    algorithm = blackjax.sgld(jax.grad(logdensity_fn))

    def step(key, state, minibatch, step_size, temperature):
        return algorithm.step(key, state, minibatch, step_size, temperature)

    return Kernel(init=lambda position, key: algorithm.init(position), step=step, position=lambda state: state,
                  grad_evals_per_step=grad_evals_per_step(settings))
