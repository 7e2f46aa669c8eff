"""MCMC kernels as plug-ins: one module each, found by looking in this package.

Every module ``bnn_sgmcmc.kernels.<name>`` (but those whose name starts with
``_``) is a kernel, named ``<name>`` in a sampler's ``kernel`` key, and
declares everything about itself:

``SETTINGS``
    Its own config keys besides those every sampler takes (``step_size``,
    ``temperature``, ``schedule``, ``shards``), as JSON Schema properties:
    type, bounds, ``default`` and ``description``. :func:`schema_blocks` turns
    them into the config schema's ``kernel`` enum and ``if``/``then`` blocks
    (:func:`bnn_sgmcmc.schema.load_schema`), so that a key of another kernel is
    refused, and the defaults live here only.
``EXAMPLE`` (where the default config runs no sampler of it)
    The settings the sampler zoo runs it with on the notebook's MNIST protocol
    (``python -m bnn_sgmcmc.kernels zoo``), with a comment on how they were
    chosen. Kernels of the default config's samplers join the zoo with those
    settings; a full-batch kernel has no place there.
``FULL_BATCH`` (optional, False)
    Every step takes the whole training set.
``MARKOV_CHAIN`` (optional, True)
    Its chains are Markov chains, whose draws R-hat and ESS diagnose. False for
    the baselines, whose chains are independently trained members.
``grad_evals_per_step(settings) -> int``
    Gradient evaluations one step spends; its docstring says how.
``check(settings, sampling, where)`` (optional)
    Raises :class:`~bnn_sgmcmc.errors.ConfigError`, its message starting with
    ``where`` (``samplers.<name>``), for settings that pass the schema but
    cannot work (with the run's ``sampling`` block at hand).
``hot_momentum_advice(settings) -> (friction, advice)`` (optional)
    For kernels that carry a momentum: what cools it, for the warning of
    :func:`bnn_sgmcmc.experiment.check_momentum_temperature`.
``ENTRY_DEFAULTS`` (optional)
    Defaults of keys every sampler takes, where this kernel's differ from the
    schema's: an optimiser's learning-rate ``schedule``. The schema's
    validation fills them in before its own (:func:`entry_defaults`).
``sampling_steps(settings) -> int`` (optional)
    The sampling phase's steps, whatever ``sampling.sampling_steps`` says,
    each one kept (``thinning`` 1): the baselines' draws per member.
``warmup_steps(settings, n_train, batch_size) -> int`` (optional)
    The warmup phase's steps, whatever ``sampling.warmup_steps`` says, from
    the training set's size: an optimiser's epochs.
``state_copies(settings, phase) -> int`` (optional, 1)
    Weight-sized arrays its state carries in ``phase`` (``warmup`` or
    ``sampling``): the weights, and a momentum, a preconditioner or an
    optimiser's moments; what :mod:`bnn_sgmcmc.memory` estimates a job by.
``batches_per_step(settings) -> int`` (optional, 1)
    Minibatches a step takes (``Kernel.batches_per_step``), declared for the
    memory estimate, which has no JAX to build the kernel with.
``covariance_values(settings, widths) -> int`` (optional, 0)
    Values of the covariance matrices each chain holds at once while
    sampling starts (a Laplace approximation's precision, its factor and
    their work), for the layers' ``widths``.
``NETWORK`` (optional, False)
    ``build`` takes a third argument, the :class:`Network`: the model's last
    layer as a linear map of features (a last-layer Laplace approximation).
``build(logdensity_fn, settings) -> Kernel``
    The kernel on ``logdensity_fn(position, minibatch)``, the minibatch
    estimate of the log posterior (the SG-MCMC kernels take its gradient;
    ``hmc`` also its value, on the full training set), for the sampler's
    ``settings``: its config entry with every default filled in.

The declarations are plain Python: the Snakefile reads them before any job,
in Snakemake's own environment, where JAX need not be installed. A kernel
module therefore imports JAX and BlackJAX inside the functions that build the
kernel (importing both takes about 1.3 s, which every Snakemake job would pay
in parsing the Snakefile).

The :class:`Kernel` that ``build`` returns follows BlackJAX's state API:
``init`` makes the kernel's state (a pytree: the weights alone for SGLD, the
weights and momentum for the persistent SGHMC, the weights, momentum and
thermostat for SGNHT), ``step`` is a pure function of a key, a state, a
minibatch, a step size and a temperature, and ``position`` reads the weights
back. The compiled programs, the checkpoints and the warmup files carry the
whole state, so a resumed or continued chain is the same chain.

Adding a kernel: write its module here and its tests in
``tests/kernels/test_<name>.py`` (at least its recovery of a known Gaussian
posterior). The config schema, its checks, the kill-and-resume tests, the
sampler zoo and docs/kernels.md (``make docs``) find it by themselves.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, NamedTuple


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
    #: ``(state, whole) -> state``, run once per chain when sampling starts from the warmup's state (not when a
    #: sampling job resumes from its checkpoint), with ``whole`` the whole training set as one batch ``(x, y)``:
    #: what a kernel takes from all the data before it samples, such as control variates' centre and the
    #: full-data gradient there. Counted as one full-data gradient. None: nothing.
    start_sampling: Callable[[Any, Any], Any] | None = None
    #: Gradient evaluations a warmup step spends, where they differ from a sampling step's (a kernel whose
    #: ``warmup_step`` does other work, such as optimise); None: ``grad_evals_per_step``.
    warmup_grad_evals_per_step: int | None = None


class Network(NamedTuple):
    """The model's last layer as a linear map, for kernels that need more than the log density (``NETWORK``).

    The outputs are ``features(params, x) @ last(params)``: features [B, D] (a
    column of ones where the layer has a bias) and the layer's weights as one
    matrix [D, K] (the bias its last row). ``output_hessian(outputs) -> [B, K,
    K]`` is the Hessian of the negative log-likelihood of each example with
    respect to its outputs (for a softmax likelihood ``diag(p) - p p^T``), and
    ``prior_precision`` the prior's precision on each weight of the layer. The
    generalised Gauss-Newton matrix of the layer's weights is then exact: the
    outputs are linear in them.
    """

    features: Callable[[Any, Any], Any]
    last: Callable[[Any], Any]
    with_last: Callable[[Any, Any], Any]
    output_hessian: Callable[[Any], Any]
    prior_precision: float


@functools.cache
def names() -> tuple[str, ...]:
    """The registered kernels, in alphabetical order: the modules of this package."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


def module(name: str) -> ModuleType:
    """The module of the kernel ``name``; a ValueError lists the registered ones otherwise."""
    if name not in names():
        raise ValueError(f"unknown kernel {name!r}; the registered kernels are {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name}")


def build(name: str, logdensity_fn: Callable[[Any, Any], Any], settings: Mapping[str, Any],
          network: Network | None = None) -> Kernel:
    """The kernel ``name`` for the log-posterior estimate ``logdensity_fn`` and the sampler's ``settings``; a
    kernel that declares ``NETWORK`` also gets ``network`` (a ValueError where there is none)."""
    mod = module(name)
    if not getattr(mod, "NETWORK", False):
        return mod.build(logdensity_fn, settings)
    if network is None:
        raise ValueError(f"kernel {name} needs the model's last layer (a kernels.Network), and none was given")
    return mod.build(logdensity_fn, settings, network)


def state_copies(name: str, settings: Mapping[str, Any], phase: str) -> int:
    """Weight-sized arrays kernel ``name``'s state carries in ``phase`` (1: the weights alone)."""
    own = getattr(module(name), "state_copies", None)
    return int(own(settings, phase)) if own is not None else 1


def batches_per_step(name: str, settings: Mapping[str, Any]) -> int:
    """Minibatches a step of kernel ``name`` takes, as its module declares (1 by default)."""
    own = getattr(module(name), "batches_per_step", None)
    return int(own(settings)) if own is not None else 1


def covariance_values(name: str, settings: Mapping[str, Any], widths: list[int]) -> int:
    """Values of the covariance matrices a chain of kernel ``name`` holds at once while sampling starts (0: none)."""
    own = getattr(module(name), "covariance_values", None)
    return int(own(settings, widths)) if own is not None else 0


def entry_defaults(name: str) -> dict[str, Any]:
    """Kernel ``name``'s own defaults of keys every sampler takes (a copy; empty for an unknown name)."""
    import copy

    if name not in names():
        return {}
    return copy.deepcopy(getattr(module(name), "ENTRY_DEFAULTS", {}))


def phase_steps(name: str, settings: Mapping[str, Any], sampling: Mapping[str, Any],
                n_train: int | None = None) -> dict[str, int]:
    """The ``sampling`` block's keys that kernel ``name`` sets itself under ``settings``: ``sampling_steps``
    and ``thinning`` where it fixes its draws, and, given the training set's size ``n_train``,
    ``warmup_steps`` where it counts warmup in epochs. Empty for the SG-MCMC kernels."""
    mod, out = module(name), {}
    if hasattr(mod, "sampling_steps"):
        out |= {"sampling_steps": int(mod.sampling_steps(settings)), "thinning": 1}
    if n_train is not None and hasattr(mod, "warmup_steps"):
        out["warmup_steps"] = int(mod.warmup_steps(settings, n_train, int(sampling["batch_size"])))
    return out


def grad_evals_per_step(name: str, settings: Mapping[str, Any]) -> int:
    """Gradient evaluations one step of kernel ``name`` spends under ``settings``."""
    return module(name).grad_evals_per_step(settings)


def full_batch(name: str) -> bool:
    """Whether every step of kernel ``name`` takes the whole training set."""
    return bool(getattr(module(name), "FULL_BATCH", False))


def markov_chain(name: str) -> bool:
    """Whether kernel ``name``'s draws form Markov chains, so that R-hat and ESS apply to them: False for the
    baselines (a MAP optimiser's one draw per member, a Laplace approximation's independent draws per member)."""
    return bool(getattr(module(name), "MARKOV_CHAIN", True))


def settings_schema(name: str) -> dict[str, Any]:
    """The JSON Schema properties of kernel ``name``'s own keys (a copy)."""
    import copy

    return copy.deepcopy(module(name).SETTINGS)


def schema_blocks() -> tuple[list[str], list[dict[str, Any]]]:
    """The config schema's part that the kernels declare: the ``kernel`` enum, and one ``if``/``then`` block per
    kernel giving its keys (see :func:`bnn_sgmcmc.schema.load_schema`)."""
    blocks = [
        {"if": {"properties": {"kernel": {"const": name}}, "required": ["kernel"]},
         "then": {"properties": settings_schema(name)}}
        for name in names()
    ]
    return list(names()), blocks


def check(name: str, settings: Mapping[str, Any], sampling: Mapping[str, Any], where: str) -> None:
    """Kernel ``name``'s own checks of a sampler's ``settings`` (raise ConfigError starting with ``where``)."""
    own = getattr(module(name), "check", None)
    if own is not None:
        own(settings, sampling, where)


def hot_momentum_advice(name: str, settings: Mapping[str, Any]) -> tuple[str, str]:
    """What cools kernel ``name``'s momentum, as ``(friction, advice)`` for the hot-momentum warning."""
    own = getattr(module(name), "hot_momentum_advice", None)
    return own(settings) if own is not None else ("its friction", "lower step_size")


def check_friction(settings: Mapping[str, Any], where: str) -> None:
    """The checks of a friction-damped momentum in BlackJAX's parametrisation (``sghmc``, ``sgnht`` and
    ``sghmc_persistent``): ``alpha x step_size`` below 1, and a non-negative injected noise variance."""
    from bnn_sgmcmc.errors import ConfigError

    friction = settings["alpha"] * settings["step_size"]
    if friction >= 1:
        raise ConfigError(
            f"{where}: alpha x step_size = {friction:g} must be below 1, or the momentum flips sign every step. "
            "Lower alpha or step_size."
        )
    if 2 * settings["alpha"] - settings["step_size"] * settings["temperature"] * settings["beta"] < 0:
        raise ConfigError(f"{where}: beta is too large for alpha (negative noise variance); lower beta.")


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
