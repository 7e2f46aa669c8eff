"""How much memory a warmup or sampling job needs, estimated from the config before any job runs.

A job holds, on its device (a CPU's memory or a GPU's), for the chains of one
shard: the training images (uint8) and the evaluation sets (float32); every
chain's kernel state (``kernels.state_copies`` weight-sized arrays: the
weights, a momentum, an optimiser's moments) and the work of a step (its
gradient and update, about three more); the activations of a step's
minibatches (the whole training set for a full-batch kernel) and of
evaluating a set; the predictive accumulators; the function-space draws it
keeps (float16, on the host); a Laplace approximation's covariance factor; and
the Python, JAX and XLA runtime itself (:data:`RUNTIME`). :func:`estimate`
adds them up, each part named with the config keys that set it, and
:func:`check` refuses, before any job, a run whose largest job would not fit
in the memory of the machine that runs it, naming the part that dominates.
Pure Python: the Snakefile calls it without JAX.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from bnn_sgmcmc.errors import ConfigError

#: A JAX process's own memory before any array: the interpreter, JAX, XLA's CPU runtime, Flax, BlackJAX and the
#: compiled programs (measured on a CPU, 2026-12-06: 362 and 412 MB of peak resident memory, VmHWM, for a warmup and
#: a sampling job of 2 chains of a 784-16-10 network on 512 images, whose arrays are a few MB; tests/test_memory.py).
RUNTIME = 450 * 2**20
#: Weight-sized arrays a step computes besides the state: its gradient, the update and a temporary.
STEP_WORK = 3
#: Values per activation the backward pass keeps (the pre-activation, the activation and its gradient).
ACTIVATION_COPIES = 3
#: Training and test images of the sources whose size is only known once downloaded (MNIST's, the default).
MNIST_SIZES = {"train": 60_000, "test": 10_000}


@dataclass
class Estimate:
    """A job's memory, in bytes, by part (a label saying what it holds); ``keys`` gives the config keys that set
    each part, the first the one to lower."""

    job: str
    parts: dict[str, float] = field(default_factory=dict)
    keys: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, label: str, size: float, *keys: str) -> None:
        self.parts[label], self.keys[label] = float(size), keys

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    def largest(self) -> str:
        return max(self.parts, key=self.parts.get)


def gigabytes(n: float) -> str:
    """``n`` bytes in MB or GB, three significant digits (thousands separated beyond)."""
    if n < 2**30:
        return f"{n / 2**20:.3g} MB"
    return f"{n / 2**30:.3g} GB" if n < 1000 * 2**30 else f"{n / 2**30:,.0f} GB"


def widths(config: dict[str, Any]) -> list[int]:
    """The layers' widths: the input's, the hidden layers', the classes'."""
    return [math.prod(config["data"]["image_shape"]), *config["model"]["hidden"], config["data"]["num_classes"]]


def num_weights(config: dict[str, Any]) -> int:
    sizes = widths(config)
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def _sizes(known: dict[str, int | None] | None) -> dict[str, int]:
    """The training and test images, where ``known`` (bnn_sgmcmc.config's sizes known before any job) does not
    say them, MNIST's."""
    return {split: (known or {}).get(split) or MNIST_SIZES[split] for split in ("train", "test")}


def estimate(config: dict[str, Any], name: str, entry: dict[str, Any], sampling: dict[str, Any],
             phase: str, sizes: dict[str, int | None] | None = None) -> Estimate:
    """The memory of the ``phase`` job (``warmup`` or ``sampling``) of run ``name`` (its kernel settings ``entry``
    and ``sampling`` block, as the plan gives them), for its largest shard, with ``sizes`` of the training and
    test sets (MNIST's where None)."""
    from bnn_sgmcmc import kernels

    sizes = _sizes(sizes)
    kernel, found = entry["kernel"], Estimate(f"{name}'s {phase} job")
    chains = -(-int(sampling["chains"]) // int(sampling["shards"]))
    layers, weights, d = widths(config), num_weights(config), math.prod(config["data"]["image_shape"])
    where = f"samplers.{name}" if name in config["samplers"] else name
    copies = kernels.state_copies(kernel, entry, phase) + STEP_WORK
    chain_key = f"{where}.chains" if "chains" in config["samplers"].get(name, {}) else "sampling.chains"
    found.add(f"weights, kernel state and step work ({copies} x {weights:,} weights x {chains} chains)",
              4.0 * copies * weights * chains, "model.hidden", chain_key)
    full = kernels.full_batch(kernel)
    batch = sizes["train"] if full else int(sampling["batch_size"]) * kernels.batches_per_step(kernel, entry)
    found.add(f"activations of a step ({batch:,} images x {sum(layers[1:]):,} units x {chains} chains)",
              4.0 * ACTIVATION_COPIES * batch * sum(layers[1:]) * chains,
              "model.hidden", "data.subset.train" if full else "sampling.batch_size", chain_key)
    found.add(f"training images ({sizes['train']:,})", (1.0 + 4.0 * full) * sizes["train"] * d, "data.subset.train")
    evaluated = {"test": sizes["test"]}
    if phase == "sampling":
        shift = config.get("shift") or {}
        levels = len(shift.get("rotations") or ()) + len(shift.get("noise") or ())
        evaluated["shift"] = min(int(shift.get("examples") or 0), sizes["test"]) * levels
        if (config.get("ood") or {}).get("source") is not None:
            evaluated["ood"] = int(config["ood"]["examples"])
    images = sum(evaluated.values())
    found.add(f"evaluation sets ({images:,} images)", 4.0 * images * d, "shift.examples", "ood.examples",
              "data.subset.test")
    found.add(f"evaluation activations and accumulators ({max(evaluated.values()):,} images x {max(layers[1:]):,} "
              f"units x {chains} chains)", 4.0 * chains * (max(evaluated.values()) * max(layers[1:])
                                                           + 3 * images * layers[-1]),
              "model.hidden", "shift.examples", chain_key)
    if phase == "sampling":
        draws = min(int(config["diagnostics"]["draws_per_chain"]), int(sampling["sampling_steps"]))
        found.add(f"function-space draws ({draws:,} per chain x {sizes['test']:,} test images x {chains} chains)",
                  2.0 * draws * sizes["test"] * chains, "diagnostics.draws_per_chain", chain_key)
        covariance = kernels.covariance_values(kernel, entry, layers)
        if covariance:
            found.add(f"covariance matrices ({covariance:,} values x {chains} members)", 4.0 * covariance * chains,
                      "model.hidden", chain_key)
    found.add("Python, JAX and XLA themselves", RUNTIME)
    return found


def machine_memory() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def largest_job(config: dict[str, Any], runs: dict[str, dict[str, Any]], sampling: dict[str, dict[str, Any]],
                sizes: dict[str, int | None] | None = None) -> Estimate:
    """The largest warmup or sampling job of the runs (name: kernel settings, with their ``sampling`` blocks)."""
    return max((estimate(config, name, runs[name], sampling[name], phase, sizes)
                for name in runs for phase in ("warmup", "sampling")), key=lambda e: e.total)


def plan_runs(config: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The config's runs (samplers, and the reference where it has one): their kernel settings and ``sampling``
    blocks, as the Snakefile plans them (bnn_sgmcmc.plan)."""
    from bnn_sgmcmc import plan

    runs = {name: plan.kernel_settings(entry) for name, entry in config["samplers"].items()}
    sampling = {name: plan.sampler_sampling(config["sampling"], entry) for name, entry in config["samplers"].items()}
    if config.get("reference") is not None:
        runs[plan.REFERENCE] = plan.reference_sampler(config)
        sampling[plan.REFERENCE] = plan.reference_sampling(config)
    return runs, sampling


def check(config: dict[str, Any], limit: int | None, sizes: dict[str, int | None] | None = None) -> Estimate:
    """Refuse a config whose largest job would need more than ``limit`` bytes (the memory of the machine that
    runs the jobs; None: no limit), naming the job, the estimate and the part that dominates, with its keys;
    ``sizes``: the training and test images where known before any job."""
    found = largest_job(config, *plan_runs(config), sizes)
    if limit is not None and found.total > limit:
        part = found.largest()
        keys = found.keys[part]
        raise ConfigError(
            f"{', '.join(keys)}: {found.job} would need about {gigabytes(found.total)} of memory, more than this "
            f"machine's {gigabytes(limit)}, {gigabytes(found.parts[part])} of it for the {part}. Lower one of "
            "these, or run on a machine with more memory."
        )
    return found
