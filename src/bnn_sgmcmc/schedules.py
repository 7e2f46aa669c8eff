"""Step-size schedules, independent of the kernel: constant, polynomial, cyclical and cosine.

A schedule spans the phases its config names (``phases``, by default the
sampling phase alone) as one sequence of steps ``t = 0, 1, ...`` (warmup steps
first when both are named); steps of a phase it does not span take the
sampler's ``step_size`` as it is. At each step it gives the step size, a factor
on the temperature and whether the step belongs to a sampling stage (where
kept samples may come from), with its cycle:

* ``constant``: ``step_size`` throughout.
* ``polynomial`` (Welling and Teh, ICML 2011): ``a (b + t)^-gamma``, written as
  ``step_size (1 + t / decay_steps)^-gamma`` so that ``step_size`` is the first
  step's; ``gamma`` in (0.5, 1] satisfies the Robbins-Monro conditions.
* ``cyclical`` (Zhang, Li, Zhang, Chen and Wilson, "Cyclical stochastic gradient
  MCMC for Bayesian deep learning", ICLR 2020): ``cycles`` cosine cycles of
  ``L = ceil(T / cycles)`` steps, ``step_size / 2 (cos(pi (t mod L) / L) + 1)``.
  The first ``exploration`` share of each cycle explores (large steps, the
  temperature set to 0: plain optimisation, as in the paper's Algorithm 1) and
  keeps no samples; the rest samples.
* ``cosine`` (Loshchilov and Hutter, "SGDR", ICLR 2017, with one cycle and no
  restart): ``step_size / 2 (cos(pi t / T) + 1)`` over the ``T`` spanned steps,
  from ``step_size`` to near 0; an optimiser's learning rate (the ``map`` and
  ``laplace`` kernels train their members with it over warmup).

The constant schedule returns Python numbers, so a program compiled with it is
the one compiled before schedules existed (bit for bit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

KINDS = ("constant", "polynomial", "cyclical", "cosine")
PHASES = ("warmup", "sampling")


class Step(NamedTuple):
    """What a schedule says about one step."""

    step_size: Any
    temperature: Any  # a factor on the sampler's temperature
    sampling: Any  # whether a kept sample may come from this step
    cycle: Any


def _span(config: Mapping[str, Any], lengths: Mapping[str, int], phase: str) -> tuple[int, int] | None:
    """``(offset, total)``: where ``phase`` starts in the schedule's sequence and how long that is; None if outside."""
    spanned = [p for p in PHASES if p in config["phases"]]
    if phase not in spanned:
        return None
    offset = sum(lengths[p] for p in spanned[: spanned.index(phase)])
    return offset, sum(lengths[p] for p in spanned)


def cycle_length(total: int, cycles: int) -> int:
    """Steps per cycle: ``ceil(T / cycles)``, as Zhang et al. (2020)."""
    return max(1, math.ceil(total / cycles))


def exploration_steps(length: int, exploration: float) -> int:
    """The first this-many steps of each cycle explore (counted in integers, the same on host and device)."""
    return math.ceil(exploration * length)


def _array_module(t: Any) -> Any:
    """jax.numpy for JAX arrays and tracers, numpy otherwise (host-side code imports no JAX)."""
    if type(t).__module__.startswith("jax"):
        import jax.numpy as jnp

        return jnp
    import numpy as np

    return np


def build(
    config: Mapping[str, Any], step_size: float, lengths: Mapping[str, int], phase: str
) -> Callable[[Any], Step]:
    """``t -> Step`` for the steps of ``phase`` (``t`` counted from the phase's start), under ``config``.

    ``config`` is a sampler's ``schedule`` block with the schema's defaults filled in (as files record it too);
    ``lengths`` gives the number of steps of each phase (``warmup``, ``sampling``).
    Works on Python integers and on traced JAX integers alike.
    """
    kind = config["kind"]
    span = _span(config, lengths, phase)
    if kind == "constant" or span is None:
        return lambda t: Step(step_size, 1.0, True, 0)
    offset, total = span
    if kind == "polynomial":
        decay, gamma = float(config["decay_steps"]), float(config["gamma"])

        def polynomial(t):
            return Step(step_size * (1.0 + (offset + t) / decay) ** (-gamma), 1.0, True, 0)

        return polynomial
    if kind == "cyclical":
        length = cycle_length(total, int(config["cycles"]))
        explore = exploration_steps(length, float(config["exploration"]))

        def cyclical(t):
            xp = _array_module(t)
            within = (offset + t) % length
            exploring = within < explore
            return Step(
                step_size / 2 * (xp.cos(xp.pi * within / length) + 1),
                xp.where(exploring, 0.0, 1.0),
                xp.logical_not(exploring),
                (offset + t) // length,
            )

        return cyclical
    if kind == "cosine":

        def cosine(t):
            xp = _array_module(t)
            return Step(step_size / 2 * (xp.cos(xp.pi * (offset + t) / total) + 1), 1.0, True, 0)

        return cosine
    raise ValueError(f"unknown step-size schedule {kind!r}; use one of {', '.join(KINDS)}")


def kept_steps(config: Mapping[str, Any], lengths: Mapping[str, int], thinning: int) -> Any:
    """0-based sampling steps whose sample is kept: every ``thinning``-th step of a sampling stage, by the
    same :func:`build` that the compiled programs run."""
    import numpy as np

    t = np.arange(lengths["sampling"])
    stage = np.broadcast_to(np.asarray(build(config, 1.0, lengths, "sampling")(t).sampling, dtype=bool), t.shape)
    return t[stage & ((t + 1) % thinning == 0)]


def kept_count(config: Mapping[str, Any], lengths: Mapping[str, int], thinning: int) -> int:
    """How many samples the sampling phase keeps (the Snakefile checks it before any job)."""
    return len(kept_steps(config, lengths, thinning))


def step_sizes(config: Mapping[str, Any], step_size: float, lengths: Mapping[str, int],
               phases: Sequence[str] = PHASES) -> dict[str, Any]:
    """The step size at every step of each of ``phases`` (numpy arrays), for the warmup figure."""
    import numpy as np

    out = {}
    for phase in phases:
        t = np.arange(lengths[phase])
        out[phase] = np.broadcast_to(np.asarray(build(config, step_size, lengths, phase)(t).step_size, float), t.shape)
    return out
