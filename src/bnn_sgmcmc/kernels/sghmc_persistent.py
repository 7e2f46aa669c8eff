"""SGHMC as Chen, Fox and Guestrin (ICML 2014) wrote it: the momentum persists from step to step.

BlackJAX's ``sghmc`` redraws the momentum at every kernel step and spends the
last of its ``num_integration_steps`` (K) gradients on a momentum it then
throws away: the position takes K noise-carrying moves but only K - 1
gradient kicks, and the small-step limit of its stationary variance is
K/(K-1) times the target's (11 % at K = 10; tests/test_kernels.py computes
the exact value for a Gaussian and measures it). This kernel keeps the
momentum in its state, never redraws it (the friction ``alpha`` mixes it;
redrawing a discretised chain's momentum adds a bias of its own), and moves
in the order of the paper's Algorithm 2, each gradient kick before the move
that uses it (semi-implicit Euler):

    g        <- grad log p(position; minibatch)
    momentum <- (1 - alpha step_size) momentum + step_size g
                + sqrt(step_size temperature (2 alpha - step_size temperature beta)) noise
    position <- position + step_size momentum

On a Gaussian of variance sigma^2 its stationary variance is about
sigma^2 (1 + step_size^2 / (4 sigma^2)): no first-order bias. BlackJAX's solver
``blackjax.sgmcmc.diffusions.sghmc`` moves the position with the old momentum
and kicks with the gradient at the old position (explicit Euler); with a
persistent momentum that order has a first-order bias, about
1 + step_size / alpha on a unit Gaussian (11 % at step 0.05, alpha 0.5), so
the update is written here instead, on BlackJAX's noise and state conventions.

The parametrisation is BlackJAX's (Ma, Chen and Fox 2015): ``step_size`` is
the time step h (the paper's epsilon; its learning rate eta = h^2),
``alpha`` the friction per unit time (the paper's C, and its momentum decay
alpha_SGD = h alpha), ``beta`` the estimate of the gradient noise (the
paper's B-hat, 0 by default as is usual), the momentum has unit mass and
stationary variance ``temperature``. At equal ``step_size``, ``alpha``,
``beta`` and ``num_integration_steps``, a kernel step of this and of
``sghmc`` follow the same dynamics over the same time and spend the same K
gradients. They differ in the momentum, carried here and redrawn there, and
in the data: each gradient here takes a fresh minibatch, as in the paper,
where ``sghmc`` takes the step's one minibatch K times.

A carried momentum is also heated by the minibatch gradient noise (the
paper's B = step_size x gradient variance / 2, against the friction alpha),
which the redraws of ``sghmc`` discard. One minibatch reused for K gradients
would heat it about K times more (its noise adds up coherently; measured on
the tests' regression: 9.2 against 1.7 at K = 10), hence the fresh ones. The
kernel traces the momentum's kinetic temperature, and a job warns when it
runs well above the temperature (see
:func:`bnn_sgmcmc.experiment.check_momentum_temperature`; :func:`hot_momentum_advice` says what cools it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from bnn_sgmcmc.kernels import Kernel, check_friction, kinetic_temperatures

SETTINGS: dict[str, Any] = {
    "alpha": {
        "type": "number", "exclusiveMinimum": 0, "default": 0.01,
        "description": "Friction (BlackJAX's parametrisation, as sghmc's; alpha x step_size must stay below 1).",
    },
    "beta": {
        "type": "number", "minimum": 0, "default": 0,
        "description": "Estimate of the gradient noise (the paper's B-hat).",
    },
    "num_integration_steps": {
        "type": "integer", "minimum": 1, "default": 10,
        "description": "Integration steps per kernel step, each one gradient evaluation on a fresh minibatch "
                       "(sghmc reuses one); the momentum is carried over, never redrawn.",
    },
}



class SGHMCState(NamedTuple):
    """The weights and their momentum, carried from step to step."""

    position: Any
    momentum: Any


def init(position: Any, rng_key: Any) -> SGHMCState:
    """The momentum starts as a standard normal draw (unit mass, temperature 1), as BlackJAX's ``sghmc``'s."""
    from blackjax.util import generate_gaussian_noise

    return SGHMCState(position, generate_gaussian_noise(rng_key, position))


def integrator(alpha: float, beta: float) -> Callable:
    """One kick-then-move step of the friction-damped dynamics, in the style of ``blackjax.sgmcmc.diffusions``."""
    import jax
    import jax.numpy as jnp
    from blackjax.util import generate_gaussian_noise

    def one_step(rng_key, position, momentum, logdensity_grad, step_size, temperature=1.0):
        noise = generate_gaussian_noise(rng_key, position)
        scale = jnp.sqrt(step_size * temperature * (2 * alpha - step_size * temperature * beta))
        momentum = jax.tree.map(lambda p, g, n: (1.0 - alpha * step_size) * p + step_size * g + scale * n,
                                momentum, logdensity_grad, noise)
        position = jax.tree.map(lambda x, p: x + step_size * p, position, momentum)
        return position, momentum

    return one_step


def build_kernel(alpha: float, beta: float) -> Callable:
    """``kernel(rng_key, state, grad_estimator, minibatches, step_size, temperature) -> state``: one step of
    :func:`integrator` per minibatch of ``minibatches`` (stacked on a leading axis), one gradient each."""
    import jax
    one_step = integrator(alpha, beta)

    def kernel(rng_key, state: SGHMCState, grad_estimator: Callable, minibatches: Any, step_size: Any,
               temperature: Any = 1.0) -> SGHMCState:
        def body(carry, inputs):
            (position, momentum), (key, minibatch) = carry, inputs
            return one_step(key, position, momentum, grad_estimator(position, minibatch), step_size, temperature), None

        count = jax.tree.leaves(minibatches)[0].shape[0]
        (position, momentum), _ = jax.lax.scan(
            body, (state.position, state.momentum), (jax.random.split(rng_key, count), minibatches))
        return SGHMCState(position, momentum)

    return kernel


def state_copies(settings: Mapping[str, Any], phase: str) -> int:
    """The weights and the momentum."""
    return 2


def batches_per_step(settings: Mapping[str, Any]) -> int:
    """A fresh minibatch per integration step."""
    return int(settings["num_integration_steps"])


def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """One minibatch gradient per integration step, each on a fresh minibatch."""
    return int(settings["num_integration_steps"])


def check(settings: Mapping[str, Any], sampling: Mapping[str, Any], where: str) -> None:
    check_friction(settings, where)


def hot_momentum_advice(settings: Mapping[str, Any]) -> tuple[str, str]:
    """Its friction is ``alpha``: raise it (or lower the step size)."""
    return f"the friction alpha = {settings['alpha']:g}", "raise alpha, lower step_size"


def build(logdensity_fn: Callable, settings: Mapping[str, Any]) -> Kernel:
    import jax

    grad_fn = jax.grad(logdensity_fn)
    kernel = build_kernel(settings["alpha"], settings["beta"])
    steps = grad_evals_per_step(settings)

    def step(key, state, minibatches, step_size, temperature):
        if steps == 1:  # the sampler core passes one minibatch unstacked
            minibatches = jax.tree.map(lambda a: a[None], minibatches)
        return kernel(key, state, grad_fn, minibatches, step_size, temperature)

    return Kernel(init=init, step=step, position=lambda state: state.position, grad_evals_per_step=steps,
                  stats=lambda state: kinetic_temperatures(state.momentum), batches_per_step=steps)
