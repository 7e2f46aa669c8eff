"""The posterior's mode (MAP) by an optax optimiser, one network per chain: a deep ensemble's members
(Lakshminarayanan, Pritzel and Blundell, NeurIPS 2017) under the model's prior.

A baseline, not a sampler. Warmup trains: every step is an optimiser step on
the minibatch estimate of the log posterior, the same function the samplers
take the gradient of (the likelihood of the training set and the model's
Normal(0, prior_scale^2) prior, which acts as weight decay), so that training
converges to the posterior's mode. The optimiser is optax's Adam (default) or
SGD with heavy-ball momentum; its learning rate is the sampler's ``step_size``
under its step-size schedule, by default one cosine decay over warmup
(Loshchilov and Hutter 2017, the usual schedule for an ensemble's members).
Training lasts ``epochs`` passes over the training set (``epochs x n //
batch_size`` steps, whatever ``sampling.warmup_steps`` says), each chain from
its own initial weights and on its own minibatches: chains are members.

Sampling keeps one draw per chain, the trained weights, and spends nothing:
the ensemble's predictive is the mean of its members', and a single member's
(``chains: 1``) is the MAP network's. The members are not Markov chains: the
reports show how much they disagree instead of R-hat and ESS.

Adam's step is scale-free (about ``step_size`` per weight); SGD's is in the
samplers' units, ``step_size`` times the gradient of the log posterior summed
over the training set (``sgld``'s drift without its noise). The temperature
does not move a mode: a value other than 1 is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from bnn_sgmcmc.errors import ConfigError
from bnn_sgmcmc.kernels import Kernel

SETTINGS: dict[str, Any] = {
    "optimiser": {
        "enum": ["adam", "sgd"], "default": "adam",
        "description": "adam (optax.scale_by_adam, its default moments) or sgd (heavy-ball momentum, "
                       "optax.trace), on the log posterior; step_size is the learning rate.",
    },
    "epochs": {
        "type": "integer", "minimum": 1, "default": 20,
        "description": "Training passes over the training set, n // batch_size steps each; they replace "
                       "sampling.warmup_steps. 20: a 784-500-10 member on MNIST is no better after 40 (test NLL "
                       "0.053 and 0.054 on a 2-core Intel Xeon VM, 2026-12-06: docs/baselines.md); a smaller training set needs more.",
    },
    "momentum": {
        "type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.9,
        "description": "sgd's momentum (optax.trace's decay); adam's moments are optax's defaults.",
    },
}

#: Adam's learning rate, cosine-decayed over the training: of 3e-4, 1e-3, 3e-3 and 1e-2 over 20 epochs, 3e-3 gave
#: a 784-500-10 member the lowest test NLL on MNIST (0.053; docs/baselines.md).
ENTRY_DEFAULTS = {"step_size": 3e-3, "schedule": {"kind": "cosine", "phases": ["warmup"]}}

#: The members are trained independently: R-hat and ESS do not apply.
MARKOV_CHAIN = False


class MAPState(NamedTuple):
    """The weights and the optimiser's state (Adam's moments and step count, or SGD's momentum)."""

    position: Any
    optimiser: Any


def state_copies(settings: Mapping[str, Any], phase: str) -> int:
    """The weights and Adam's two moments (SGD's one momentum)."""
    return 3 if settings["optimiser"] == "adam" else 2


def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """One minibatch gradient a training (warmup) step; sampling keeps the trained weights and spends none."""
    return 0


def sampling_steps(settings: Mapping[str, Any]) -> int:
    """One draw per member: its trained weights."""
    return 1


def warmup_steps(settings: Mapping[str, Any], n_train: int, batch_size: int) -> int:
    """``epochs`` passes of ``n_train // batch_size`` minibatches (at least one a pass)."""
    return int(settings["epochs"]) * max(1, n_train // batch_size)


def check(settings: Mapping[str, Any], sampling: Mapping[str, Any], where: str) -> None:
    if settings["temperature"] != 1:
        raise ConfigError(
            f"{where}: temperature {settings['temperature']:g} does not move the posterior's mode, which "
            "a MAP member is trained to; remove temperature (or set it to 1)."
        )


def optimiser(settings: Mapping[str, Any]) -> Any:
    """The optax transformation whose updates, times the learning rate, are the training steps' moves."""
    import optax

    if settings["optimiser"] == "adam":
        return optax.scale_by_adam()
    return optax.trace(decay=float(settings["momentum"]))


def training_step(logdensity_fn: Callable, settings: Mapping[str, Any]) -> tuple[Callable, Callable]:
    """``(init, step)`` of the training: ``init(position) -> MAPState`` and ``step(state, minibatch, lr) ->
    MAPState``, one optimiser step down the negative log posterior's minibatch estimate."""
    import jax

    transform = optimiser(settings)
    grad_fn = jax.grad(lambda position, batch: -logdensity_fn(position, batch))

    def init(position: Any) -> MAPState:
        return MAPState(position, transform.init(position))

    def step(state: MAPState, minibatch: Any, learning_rate: Any) -> MAPState:
        direction, opt_state = transform.update(grad_fn(state.position, minibatch), state.optimiser, state.position)
        position = jax.tree.map(lambda w, d: w - learning_rate * d, state.position, direction)
        return MAPState(position, opt_state)

    return init, step


def build(logdensity_fn: Callable, settings: Mapping[str, Any]) -> Kernel:
    init, train = training_step(logdensity_fn, settings)

    def warmup_step(key, state: MAPState, minibatch, step_size, temperature) -> MAPState:
        return train(state, minibatch, step_size)

    def keep(key, state: MAPState, minibatch, step_size, temperature) -> MAPState:
        return state

    return Kernel(init=lambda position, key: init(position), step=keep, position=lambda state: state.position,
                  grad_evals_per_step=grad_evals_per_step(settings), warmup_step=warmup_step,
                  warmup_grad_evals_per_step=1)
