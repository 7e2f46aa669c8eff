"""The workflow's plan: the chain runs it makes and the settings of each, derived from the checked config.

A run is a sampler or, with a ``reference`` block, the reference posterior
(:data:`REFERENCE`), which the rules run as one more sampler: its kernel
settings (:func:`kernel_settings`, :func:`reference_sampler`), its ``sampling``
block (:func:`sampler_sampling`, :func:`reference_sampling`), its shards'
chains (:func:`shard_chains`), what its warmup depends on
(:func:`warmup_sampler`) and, for the reference, whose warmup it starts from
(:func:`reference_init`). All decided before any job runs; ``bnn_sgmcmc.runs``
reads what a finished run did from its files. The Snakefile imports this module, in whatever
environment Snakemake itself runs in: it imports the standard library, and
PyYAML and jsonschema through ``bnn_sgmcmc.schema``, never JAX.
"""

from __future__ import annotations

from typing import Any

from bnn_sgmcmc import kernels
from bnn_sgmcmc.schema import sampler_settings


#: The reference posterior's name in every path and table where a sampler's name would be.
REFERENCE = "reference"


def reference_init(config: dict[str, Any]) -> str | None:
    """The sampler whose warmup the reference's chains start from (None: a draw from the prior)."""
    init = config["reference"]["init"]
    if init == "prior":
        return None
    return next(iter(config["samplers"])) if init == "warmup" else init


def reference_sampler(config: dict[str, Any]) -> dict[str, Any]:
    """The reference posterior as a sampler entry: the ``hmc`` kernel with the reference block's settings,
    and the kernel's own defaults (the schema's samplers block) for those it leaves out."""
    ref = config["reference"]
    keys = ("step_size", *kernels.module("hmc").SETTINGS)  # the block's hmc keys (bnn_sgmcmc.schema.with_kernels)
    return sampler_settings({"kernel": "hmc", **{k: ref[k] for k in keys if k in ref}})


def reference_sampling(config: dict[str, Any]) -> dict[str, Any]:
    """The reference's ``sampling`` block: its own steps, thinning and chunks; batch_size stays the samplers'
    (HMC takes the whole training set; batch_size only sets the unit its gradients are counted in)."""
    ref = config["reference"]
    own = ("warmup_steps", "sampling_steps", "thinning", "eval_every", "chains", "shards")
    return dict(config["sampling"]) | {k: ref[k] for k in own} | {"save_weights_every": 0}


def sampler_sampling(sampling: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A sampler's ``sampling`` block: the config's, with the sampler's own ``chains`` and ``shards`` where it sets
    them, and the
    draws its kernel fixes itself (a baseline's: ``kernels.phase_steps``; its warmup, counted in epochs, is
    set by the job, which knows the training set's size)."""
    own = kernels.phase_steps(entry["kernel"], entry, sampling)
    return dict(sampling) | own | {key: entry[key] for key in ("chains", "shards") if key in entry}


def kernel_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """A sampler's entry without what only places its jobs (``shards``) or counts them (``chains``, which the
    ``sampling`` block carries): what its kernel and a chain's results depend on."""
    return {k: v for k, v in entry.items() if k not in ("chains", "shards")}


def warmup_sampler(entry: dict[str, Any]) -> dict[str, Any]:
    """The part of a sampler's settings that warmup depends on: all but a schedule that spans sampling alone.

    The warmup rule's params and the warmup file's fingerprint use it, so that
    trying another sampling schedule reruns sampling and not warmup.
    """
    schedule = entry.get("schedule") or {}
    if "warmup" in schedule.get("phases", ()):
        return dict(entry)
    return dict(entry) | {"schedule": {"kind": "constant", "phases": []}}  # warmup keeps step_size


def shard_chains(chains: int, shards: int) -> list[list[int]]:
    """Global chain indices of each shard: contiguous, sizes differing by at most one."""
    base, extra = divmod(chains, shards)
    out, start = [], 0
    for s in range(shards):
        size = base + (s < extra)
        out.append(list(range(start, start + size)))
        start += size
    return out
