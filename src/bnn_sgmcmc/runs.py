"""What a sampling run did, as its predictive file records it: settings, chains, samples and compute.

Every function takes a predictive file's arrays and attributes, as
``h5io.read_predictive`` returns them, and returns plain values. A gathered
file lists its shards' runs (``shard_runs``), which may have run side by side:
their device seconds add up. Nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bnn_sgmcmc import analysis, kernels, schedules


def shard_runs(attrs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A predictive file's shard runs (a gathered file's ``shard_runs``; a shard's file is its own one)."""
    return attrs.get("shard_runs") or [attrs]


def shard_seconds(attrs: Mapping[str, Any], *phases: str) -> float:
    """Device seconds of the given timing attributes, compile excluded, summed over shards (they may run side
    by side): ``run_seconds`` is sampling's, ``warmup_run_seconds`` warmup's."""
    return float(sum(float(r.get(phase) or 0.0) for r in shard_runs(attrs) for phase in phases))


def sampling_seconds(attrs: Mapping[str, Any]) -> float:
    """Device seconds spent sampling: the sum over shards."""
    return shard_seconds(attrs, "run_seconds")


def ran_on_gpu(attrs: Mapping[str, Any]) -> bool:
    """Whether any shard of the run sampled on a GPU."""
    return any((run.get("device") or {}).get("backend") == "gpu" for run in shard_runs(attrs))


def markov_chain(attrs: Mapping[str, Any]) -> bool:
    """Whether the run's chains are Markov chains, whose draws R-hat and ESS diagnose: False for a baseline's
    independently trained members (its kernel declares it, :func:`bnn_sgmcmc.kernels.markov_chain`)."""
    return kernels.markov_chain(attrs["sampler"]["kernel"])


def total_grad_evals(arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> float:
    """Gradient evaluations of warmup and sampling over all chains, in minibatch gradients: a baseline's whole
    cost is its training (warmup). Every shard records the per-chain ``warmup_grad_evals`` of the same plan, so
    a gathered file's (its first shard's) holds for all; NaN for a file from before the attribute."""
    warmup = attrs.get("warmup_grad_evals")
    if warmup is None:
        return float("nan")
    sampling = arrays["trace"]["grad_evals"]
    return int(attrs["chains"]) * (int(warmup) + (int(sampling[-1]) if len(sampling) else 0))


def facts(name: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What every per-sampler table reports: accuracies, chains, samples and compute."""
    trace = arrays["trace"]
    return {
        "sampler": name,
        "kernel": attrs["sampler"]["kernel"],
        "schedule": attrs["sampler"]["schedule"]["kind"],
        "ensemble_accuracy": analysis.accuracy(
            analysis.ensemble_probs(arrays["test"]["log_probs"]), arrays["test"]["labels"].astype(np.int64)
        ),
        # The last kept sample of each chain alone, averaged over chains.
        "pointwise_accuracy": float(np.mean(trace["test"]["pointwise_accuracy"][-1])),
        "chains": int(attrs["chains"]),
        "samples_per_chain": int(attrs["num_samples"]),
        "grad_evals": int(trace["grad_evals"][-1]),
        "sampling_seconds": float(np.max(trace["wall_seconds"][-1])),
    }


def hottest_kinetic_temperature(arrays: Mapping[str, Any]) -> float:
    """The traced hottest kinetic temperature, averaged over samples and chains; NaN for a kernel without one.

    Kernels that carry a momentum trace its kinetic temperature: near the
    temperature, or heated by the gradient noise
    (bnn_sgmcmc.experiment.check_momentum_temperature).
    """
    hottest = arrays.get("kernel_trace", {}).get("hottest_kinetic_temperature")
    return float(np.mean(hottest)) if hottest is not None and np.size(hottest) else np.nan


def step_sizes(arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The step size at every step of warmup and of sampling: as traced (the mean over chains) for a kernel
    that adapts it (HMC), else as the sampler's schedule sets it."""
    sampler, run = attrs["sampler"], attrs["schedule"]
    lengths = {"warmup": int(run["warmup_steps"]), "sampling": int(run["sampling_steps"])}
    traced = {"warmup": arrays["warmup"].get("kernel_trace", {}), "sampling": arrays.get("kernel_trace", {})}
    if all("step_size" in t for t in traced.values()):
        return {phase: np.asarray(t["step_size"], np.float64).mean(axis=1) for phase, t in traced.items()}
    return schedules.step_sizes(sampler["schedule"], float(sampler["step_size"]), lengths)


def ood_split(attrs: Mapping[str, Any]) -> str | None:
    """The split of the training data set whose images the out-of-distribution set is (the sampling jobs
    record the digests of both), or None when it is another set."""
    fingerprint = attrs.get("fingerprint") or {}
    ood_digest = (fingerprint.get("evaluation") or {}).get("ood")
    for split in ("test", "train"):
        if ood_digest and ((fingerprint.get("data") or {}).get(split) or {}).get("images_sha256") == ood_digest:
            return split
    return None
