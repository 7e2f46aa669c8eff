"""SGLD with control variates (Baker, Fearnhead, Fox and Nemeth, Statistics and Computing 2019): BlackJAX's
``sgld`` step on the control-variate gradient estimate of ``blackjax.sgmcmc.gradients.control_variates``.

The gradient at the weights ``theta`` is the full-data gradient at a centre
``theta_hat`` (the posterior mode) plus the minibatch difference between the
two, both on the step's minibatch:

    g(theta) = grad log p(theta_hat | all data)
               + grad log p~(theta; batch) - grad log p~(theta_hat; batch)

where ``log p~`` is the minibatch estimate of the log posterior. It is
unbiased, like the plain minibatch gradient, but its noise grows with the
distance from the centre instead of being fixed: near the mode, where SGLD's
minibatch noise dominates the injected noise and widens what it samples, it
nearly vanishes.

Warmup finds the centre: its steps are SGLD steps at temperature 0, that is
stochastic gradient ascent on the log posterior at the sampler's step size (and
schedule). When sampling starts, the centre is where warmup ended and the
kernel takes the full-data gradient there once (``Kernel.start_sampling``);
every sampling step then spends two minibatch gradients, at ``theta`` and at
the centre. The state carries the weights, the centre and its full-data
gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from bnn_sgmcmc.errors import ConfigError
from bnn_sgmcmc.kernels import Kernel

SETTINGS: dict[str, Any] = {}

#: sgld's step size: the control variates change the gradient's noise, not its scale, so that SGLD's stable step
#: is SGLD-CV's (not tuned on its own).
EXAMPLE = {"step_size": 4.5e-5}


class SGLDCVState(NamedTuple):
    """The weights, the control variates' centre and the full-data gradient of the log posterior there."""

    position: Any
    centre: Any
    centre_grad: Any


def state_copies(settings: Mapping[str, Any], phase: str) -> int:
    """The weights, the centre and the full-data gradient there."""
    return 3


def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """Two minibatch gradients a sampling step (at the weights and at the centre), one a warmup step, and one
    full-data gradient when sampling starts."""
    return 2


def check(settings: Mapping[str, Any], sampling: Mapping[str, Any], where: str) -> None:
    if sampling["warmup_steps"] == 0:
        raise ConfigError(
            f"{where}: kernel sgld_cv finds its centre, the posterior mode, during warmup, and sampling.warmup_steps "
            "is 0: centred on the initial weights, its gradient noise would exceed plain SGLD's. Give warmup steps "
            "(the default is 2340), or use kernel sgld."
        )


def build(logdensity_fn: Callable, settings: Mapping[str, Any]) -> Kernel:
    import blackjax
    import jax
    import jax.numpy as jnp

    grad_fn = jax.grad(logdensity_fn)
    sgld = blackjax.sgmcmc.sgld.build_kernel()

    def init(position: Any, key: Any) -> SGLDCVState:
        return SGLDCVState(position, position, jax.tree.map(jnp.zeros_like, position))

    def warmup_step(key, state: SGLDCVState, minibatch, step_size, temperature) -> SGLDCVState:
        # Temperature 0: no noise, a gradient step towards the mode.
        return state._replace(position=sgld(key, state.position, grad_fn, minibatch, step_size, 0.0))

    def start_sampling(state: SGLDCVState, whole: Any) -> SGLDCVState:
        return SGLDCVState(state.position, state.position, grad_fn(state.position, whole))

    def step(key, state: SGLDCVState, minibatch, step_size, temperature) -> SGLDCVState:
        def control_variates(position, batch):  # blackjax.sgmcmc.gradients.control_variates' estimate
            return jax.tree.map(lambda here, there, full: full + here - there,
                                grad_fn(position, batch), grad_fn(state.centre, batch), state.centre_grad)

        return state._replace(position=sgld(key, state.position, control_variates, minibatch, step_size, temperature))

    return Kernel(init=init, step=step, position=lambda state: state.position,
                  grad_evals_per_step=grad_evals_per_step(settings), warmup_step=warmup_step,
                  start_sampling=start_sampling, warmup_grad_evals_per_step=1)
