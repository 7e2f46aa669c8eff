"""MCMC kernels as plug-ins: one small module each, found through one registry.

A kernel module ``bnn_sgmcmc.kernels.<name>`` has two functions,
``grad_evals_per_step(settings) -> int`` and ``build(logdensity_fn, settings)
-> Kernel``: ``logdensity_fn(position, minibatch)`` is the minibatch estimate
of the log posterior (the SG-MCMC kernels take its gradient; ``hmc`` also
its value, on the full training set), and ``settings`` the
sampler's config entry with every default filled in by the config schema
(``workflow/schemas/config.schema.yaml``, which also says which keys each
kernel takes). The :class:`Kernel` it returns follows BlackJAX's state API:
``init`` makes the kernel's state (a pytree: the weights alone for SGLD, the
weights and momentum for the persistent SGHMC, the weights, momentum and
thermostat for SGNHT), ``step`` is a pure function of a
key, a state, a minibatch, a step size and a temperature, and ``position``
reads the weights back. A kernel that tunes itself during warmup (HMC's step
size) gives a ``warmup_step`` too, and one with per-step statistics to trace
(HMC's acceptance rate; a momentum's :func:`kinetic_temperatures`) a ``stats``. The compiled programs, the checkpoints
and the warmup files carry the whole state, so a resumed or continued chain
is the same chain.

Adding a kernel: write its module here, add its name to :data:`NAMES`, add an
``if``/``then`` block for its keys to the schema's ``samplers`` entry, and test
it on the known Gaussian posterior (tests/test_kernels.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, NamedTuple

#: The registered kernels, by the name a sampler's ``kernel`` key gives.
NAMES = ("sgld", "sghmc", "sghmc_persistent", "sgnht", "psgld", "hmc")


class Kernel(NamedTuple):
    """What the sampler core needs of a kernel."""

    #: ``(position, key) -> state``: the kernel's state at the given weights.
    init: Callable[[Any, Any], Any]
    #: ``(key, state, minibatch, step_size, temperature) -> state``: one kernel step.
    step: Callable[[Any, Any, Any, Any, Any], Any]
    #: ``state -> position``: the weights the state holds.
    position: Callable[[Any], Any]
    #: Gradient evaluations one step spends (SGHMC: one per integration step).
    grad_evals_per_step: int
    #: Like ``step``, for warmup steps, where the kernel also adapts its own parameters; None: ``step``.
    warmup_step: Callable[[Any, Any, Any, Any, Any], Any] | None = None
    #: ``state -> {name: per-chain scalar}``: statistics of the last step, traced; None: none.
    stats: Callable[[Any], dict[str, Any]] | None = None
    #: Every step takes the whole training set (exact gradients, a Metropolis test), whatever
    #: ``sampling.batch_size`` and ``batching`` say.
    full_batch: bool = False
    #: Minibatches a step takes, one per gradient evaluation. 1: ``step`` gets one minibatch ``(x, y)``;
    #: K > 1: K fresh minibatches stacked on a leading axis (``x`` [K, batch_size, ...]), drawn as K
    #: consecutive ones (with ``batching: epochs``, an epoch is then n // (K batch_size) steps).
    batches_per_step: int = 1
    #: How the compiled programs compute float32 matrix products, a ``jax.default_matmul_precision`` value
    #: (``float32``: in float32 on every device); None: JAX's default, which rounds the operands to TF32 on
    #: NVIDIA A100, H100 and H200 GPUs. The whole program, the evaluation passes included, uses it.
    matmul_precision: str | None = None


def kinetic_temperatures(momentum: Any) -> dict[str, Any]:
    """Statistics of a unit-mass momentum: its kinetic temperature (the mean squared momentum per weight, which
    equals the sampling temperature once the momentum is in equilibrium) over all weights, and over the weights
    of the hottest array (a layer's kernel or bias), where minibatch gradient noise shows first."""
    import jax.numpy as jnp
    from jax import tree

    leaves = tree.leaves(momentum)
    sums = [jnp.sum(jnp.square(leaf)) for leaf in leaves]
    per_leaf = jnp.stack([total / leaf.size for total, leaf in zip(sums, leaves)])
    return {"kinetic_temperature": sum(sums) / sum(leaf.size for leaf in leaves),
            "hottest_kinetic_temperature": jnp.max(per_leaf)}


def module(name: str) -> ModuleType:
    """The module of the kernel ``name``; a ValueError lists the registered ones otherwise."""
    if name not in NAMES:
        raise ValueError(f"unknown kernel {name!r}; the registered kernels are {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}")


def build(name: str, logdensity_fn: Callable[[Any, Any], Any], settings: Mapping[str, Any]) -> Kernel:
    """The kernel ``name`` for the log-posterior estimate ``logdensity_fn`` and the sampler's ``settings``."""
    return module(name).build(logdensity_fn, settings)


def grad_evals_per_step(name: str, settings: Mapping[str, Any]) -> int:
    """Gradient evaluations one step of kernel ``name`` spends under ``settings``."""
    return module(name).grad_evals_per_step(settings)
