"""Hamiltonian Monte Carlo on the full training set: BlackJAX's ``hmc``, with its dual-averaging step size.

The exact-gradient, Metropolis-adjusted kernel that the reference posterior
needs (Izmailov, Vikram, Hoffman and Wilson 2021): every step integrates
``num_integration_steps`` leapfrog steps of the full-data log posterior with
an identity mass matrix and accepts or rejects the end point, so its
stationary distribution is the posterior itself, with no step-size bias.
Every step takes the whole training set: ``sampling.batch_size`` and
``batching`` do not apply to it.

The step size adapts during warmup, per chain, by BlackJAX's dual averaging
(Hoffman and Gelman 2014) towards ``target_acceptance``, starting from the
sampler's ``step_size``; sampling uses the averaged step size warmup ended
with, fixed. The state carries the adaptation and, of the last transition,
the step size, the acceptance probability, whether it diverged (energy error
over ``divergence_threshold``) and the energy at its start (potential plus
the drawn momentum's kinetic energy, for E-BFMI), so a resumed chain is the
same chain and the programs can trace them.

The programs compute its matrix products at ``matmul_precision`` (``float32`` by default: on a GPU,
JAX's default rounds each product's operands to TF32, an error of 0.6 to 1 in each change of log density
on MNIST, which its Metropolis test would take as part of the energy error; docs/benchmarks-history.md).

A step spends ``num_integration_steps + 1`` full-data gradients: one at the
start (the state does not keep the gradient, so that a state stays valid
when the data change, as between shards of another size), one per leapfrog step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from bnn_sgmcmc.errors import ConfigError
from bnn_sgmcmc.kernels import Kernel

if TYPE_CHECKING:
    import jax
    from blackjax.adaptation.step_size import DualAveragingAdaptationState

#: The ``matmul_precision`` values: ``jax.default_matmul_precision``'s, and ``default`` for JAX's default.
MATMUL_PRECISIONS = ["float32", "default", "BF16_BF16_F32_X3", "BF16_BF16_F32_X6", "TF32_TF32_F32_X3"]

SETTINGS: dict[str, Any] = {
    "num_integration_steps": {
        "type": "integer", "minimum": 1, "default": 50,
        "description": "Leapfrog steps per HMC step, each one gradient on the whole training set (the trajectory "
                       "is this times the step size).",
    },
    "target_acceptance": {
        "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.8,
        "description": "Acceptance probability that the step size adapts to during warmup (BlackJAX's dual "
                       "averaging, per chain); step_size is where it starts.",
    },
    "divergence_threshold": {
        "type": "number", "exclusiveMinimum": 0, "default": 1000,
        "description": "Energy error above which a transition counts as divergent (BlackJAX's default).",
    },
    "matmul_precision": {
        "enum": MATMUL_PRECISIONS, "default": "float32",
        "description": "How the programs compute float32 matrix products (JAX's default_matmul_precision). "
                       "float32: in float32 on every device. default: JAX's default, which on NVIDIA A100, H100 and "
                       "H200 GPUs rounds the operands to TF32 (10 mantissa bits): on MNIST that changes a "
                       "trajectory's change of log density by about 0.7, noise in the Metropolis test "
                       "(emulated on a CPU, 2026-11-27: docs/benchmarks-history.md). BF16_BF16_F32_X3 and _X6: three or six bfloat16 products on a "
                       "GPU's tensor cores (about 0.01 on MNIST for X3); TF32_TF32_F32_X3: three TF32 products "
                       "(NVIDIA Ampere and newer). A CPU computes all five in float32.",
    },
}

#: Every step takes the whole training set.
FULL_BATCH = True



class HMCState(NamedTuple):
    """The weights, the step-size adaptation, and the last transition's statistics."""

    position: Any
    adaptation: DualAveragingAdaptationState
    step_size: jax.Array
    acceptance_rate: jax.Array
    divergent: jax.Array
    energy: jax.Array


#: The statistics a step leaves in the state, traced by the programs.
STATS = ("step_size", "acceptance_rate", "divergent", "energy")


def grad_evals_per_step(settings: Mapping[str, Any]) -> int:
    """num_integration_steps + 1 full-data gradients a step (each N / batch_size minibatch gradients' worth)."""
    return int(settings["num_integration_steps"]) + 1


def check(settings: Mapping[str, Any], sampling: Mapping[str, Any], where: str) -> None:
    kind = settings["schedule"]["kind"]
    if kind != "constant":
        raise ConfigError(
            f"{where}: kernel hmc adapts its own step size during warmup and needs its Metropolis test at "
            f"temperature 1; a {kind} schedule does not apply to it. Use schedule: {{kind: constant}}, or an "
            "SG-MCMC kernel for this schedule."
        )


def build(logdensity_fn: Callable, settings: Mapping[str, Any]) -> Kernel:
    import blackjax
    import jax
    import jax.numpy as jnp
    from blackjax.adaptation.step_size import dual_averaging_adaptation
    from jax.flatten_util import ravel_pytree

    da_init, da_update, da_final = dual_averaging_adaptation(float(settings["target_acceptance"]))
    hmc = blackjax.mcmc.hmc.build_kernel(divergence_threshold=float(settings["divergence_threshold"]))
    steps = int(settings["num_integration_steps"])

    def init(position: Any, key: Any) -> HMCState:
        adaptation = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), da_init(float(settings["step_size"])))
        adaptation = adaptation._replace(step=jnp.asarray(adaptation.step, jnp.int32))
        step_size = jnp.exp(adaptation.log_step_size)
        return HMCState(position, adaptation, step_size, jnp.float32(1.0), jnp.bool_(False), jnp.float32(jnp.nan))

    def transition(key, state: HMCState, batch, step_size, temperature) -> HMCState:
        def logdensity(position):
            return logdensity_fn(position, batch) / temperature

        flat, _ = ravel_pytree(state.position)
        start = blackjax.mcmc.hmc.init(state.position, logdensity)
        new, info = hmc(key, start, logdensity, step_size, jnp.ones_like(flat), steps)
        momentum, _ = ravel_pytree(info.momentum)
        energy = -start.logdensity + 0.5 * jnp.sum(momentum * momentum)
        rate = jnp.where(jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0)
        return HMCState(new.position, state.adaptation, jnp.asarray(step_size, jnp.float32), rate.astype(jnp.float32),
                        jnp.asarray(info.is_divergent), energy.astype(jnp.float32))

    def warmup_step(key, state: HMCState, batch, step_size, temperature) -> HMCState:
        # The schedule's step size scales the adapted one (1 with the default constant schedule).
        size = jnp.exp(state.adaptation.log_step_size) * step_size / settings["step_size"]
        new = transition(key, state, batch, size, temperature)
        adaptation = jax.tree.map(
            lambda a, b: b.astype(a.dtype), state.adaptation, da_update(state.adaptation, new.acceptance_rate)
        )
        return new._replace(adaptation=adaptation)

    def step(key, state: HMCState, batch, step_size, temperature) -> HMCState:
        size = da_final(state.adaptation) * step_size / settings["step_size"]
        return transition(key, state, batch, size, temperature)

    def stats(state: HMCState) -> dict[str, jax.Array]:
        return {name: getattr(state, name) for name in STATS}

    return Kernel(init=init, step=step, position=lambda state: state.position,
                  grad_evals_per_step=grad_evals_per_step(settings), warmup_step=warmup_step, stats=stats,
                  full_batch=FULL_BATCH, matmul_precision=precision(settings))


def precision(settings: Mapping[str, Any], platform: str | None = None) -> str | None:
    """The ``jax.default_matmul_precision`` value of the setting ``matmul_precision`` on ``platform`` (None:
    JAX's default backend's): None for ``default``. XLA's CPU compiler has no code for the bfloat16 and
    TF32 algorithms in every product of the programs, and a CPU computes float32 products in float32
    anyway, so on a CPU they are ``float32``: a config runs the same on a laptop and on a GPU node."""
    value = settings["matmul_precision"]
    if value == "default":
        return None
    if value.startswith(("BF16_", "TF32_")) and (platform or _default_backend()) == "cpu":
        return "float32"
    return value


def _default_backend() -> str:
    import jax

    return jax.default_backend()
