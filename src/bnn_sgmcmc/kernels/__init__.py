"""SG-MCMC kernels as plug-ins: one small module each, found through one registry.

A kernel module ``bnn_sgmcmc.kernels.<name>`` has two functions,
``grad_evals_per_step(settings) -> int`` and ``build(grad_fn, settings) -> Kernel``: ``grad_fn(position, minibatch)`` is the
minibatch estimate of the log-posterior gradient, and ``settings`` the
sampler's config entry with every default filled in by the config schema
(``workflow/schemas/config.schema.yaml``, which also says which keys each
kernel takes). The :class:`Kernel` it returns follows BlackJAX's state API:
``init`` makes the kernel's state (a pytree: the weights alone for SGLD, the
weights, momentum and thermostat for SGNHT), ``step`` is a pure function of a
key, a state, a minibatch, a step size and a temperature, and ``position``
reads the weights back. The compiled programs, the checkpoints and the warmup
files carry the whole state, so a resumed or continued chain is the same chain.

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
NAMES = ("sgld", "sghmc", "sgnht", "psgld")


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


def module(name: str) -> ModuleType:
    """The module of the kernel ``name``; a ValueError lists the registered ones otherwise."""
    if name not in NAMES:
        raise ValueError(f"unknown kernel {name!r}; the registered kernels are {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}")


def build(name: str, grad_fn: Callable[[Any, Any], Any], settings: Mapping[str, Any]) -> Kernel:
    """The kernel ``name`` for the gradient estimate ``grad_fn`` and the sampler's ``settings``."""
    return module(name).build(grad_fn, settings)


def grad_evals_per_step(name: str, settings: Mapping[str, Any]) -> int:
    """Gradient evaluations one step of kernel ``name`` spends under ``settings``."""
    return module(name).grad_evals_per_step(settings)
