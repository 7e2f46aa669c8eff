"""The workflow's jobs, one function per rule: read inputs, compute, write outputs.

Scripts in ``scripts/`` are thin wrappers that pass the ``snakemake`` object's
fields to these functions, which keeps every rule callable from Python and tests.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bnn_sgmcmc import data as data_mod
from bnn_sgmcmc import compilation, h5io, logs, provenance

T = TypeVar("T")
log = logging.getLogger(__name__)


def download(*, data_config: dict[str, Any], seed: int, dataset: str, raw: str, record: str) -> None:
    """Fetch ``dataset`` from ``data_config['source']``; write raw arrays and a provenance record."""
    start = time.perf_counter()
    log.info("dataset %s: loading from %s", dataset, data_config["source"])
    images, details = data_mod.load_source(data_config, seed)
    for split, summary in details["splits"].items():
        log.info("%s: %d rows, class counts %s", split, summary["rows"], summary["class_counts"])
    if "published_mnist" in details:
        log.info(
            "the IDX files %s the published MNIST MD5 sums",
            "match" if details["published_mnist"] else "do not all match",
        )
    h5io.write_raw(raw, images)
    h5io.write_json(
        record,
        provenance.record(
            dataset=dataset,
            seed=seed,
            data_config=data_config,
            seconds=round(time.perf_counter() - start, 3),
            **details,
        ),
    )
    log.info("wrote %s and %s in %.1f s", raw, record, time.perf_counter() - start)


def preprocess(*, raw: str, record: str, data_config: dict[str, Any], seed: int, dataset: str, h5: str) -> None:
    """Validate the raw arrays and write the data HDF5 file (docs/schema.md)."""
    start = time.perf_counter()
    images = h5io.read_raw(raw)
    num_classes = int(data_config["num_classes"])
    image_shape = tuple(data_config["image_shape"])
    data_mod.validate(images, image_shape, num_classes, where=raw)  # type: ignore[arg-type]
    images = data_mod.as_uint8_labels(images)
    images, subset = data_mod.take_subset(images, data_config["subset"], seed, where=raw)
    if subset:
        log.info("kept a random subset: %s", ", ".join(
            f"{drawn['kept']} of {drawn['of']} {split} images" for split, drawn in subset.items() if split != "seed"))
    fetched = h5io.read_json(record)
    summary = data_mod.summarise(images, num_classes)
    h5io.write_data_h5(
        h5,
        images,
        num_classes=num_classes,
        attrs=provenance.record(
            dataset=dataset,
            source=data_config["source"],
            source_form=fetched["form"],
            seed=seed,
            data_config=data_config,
            source_files=fetched["files"],
            subset=subset,
            fetched=fetched["created"],
            seconds=round(time.perf_counter() - start, 3),
        ),
        split_attrs={
            split: {k: v for k, v in s.items() if k != "rows"} for split, s in summary.items()
        },
    )
    log.info("wrote %s: train %s, test %s", h5, images.train.images.shape, images.test.images.shape)


# --------------------------------------------------------------------------- sampling jobs


def _digested(attrs: dict[str, Any]) -> dict[str, Any]:
    """The attributes a checkpoint's digest covers: those that resuming reads."""
    return {k: attrs[k] for k in ("step", "num_samples", "run_seconds", "fingerprint") if k in attrs}


class _Checkpointer:
    """Writes a resumable checkpoint beside the declared outputs at most every ``every`` seconds."""

    def __init__(self, path: str, every: float) -> None:
        self.path, self.every, self.last = path, float(every), time.perf_counter()

    def due(self) -> bool:
        return time.perf_counter() - self.last >= self.every

    def write(self, arrays: dict[str, Any], attrs: dict[str, Any]) -> None:
        attrs = attrs | {"digest": h5io.digest(arrays, _digested(attrs))}
        h5io.write_arrays(self.path, arrays, attrs)
        self.last = time.perf_counter()
        log.info("checkpoint at step %s: %s", attrs["step"], self.path)

    def load(self, fingerprint: dict[str, Any], restore: Callable[[dict, dict], T]) -> T | None:
        """``restore(arrays, attrs)`` of the checkpoint, if one exists, was made by this very run's config and
        passes every check; a checkpoint that fails one is moved aside (``.rejected``) and the job starts over."""
        path = Path(self.path)
        if not path.is_file():
            return None
        try:
            arrays, attrs = h5io.read_arrays(path)
        except data_mod.DataError as err:
            return self._reject(f"it cannot be read ({err})")
        if attrs.get("fingerprint") != fingerprint:
            return self._reject("it was made with another config")
        if attrs.get("digest") != h5io.digest(arrays, _digested(attrs)):
            return self._reject("its contents do not match the digest written with it (changed or damaged)")
        try:
            restored = restore(arrays, attrs)
        except (KeyError, ValueError, TypeError, IndexError) as err:
            return self._reject(f"it does not fit this run: {err}")
        log.info("resuming from checkpoint %s at step %s", self.path, attrs["step"])
        return restored

    def _reject(self, why: str) -> None:
        aside = Path(f"{self.path}.rejected")
        os.replace(self.path, aside)
        log.warning("checkpoint %s not used: %s. Starting this job over; the file is now %s", self.path, why, aside)
        return None

    def remove(self) -> None:
        path = Path(self.path)
        path.unlink(missing_ok=True)
        # results/checkpoints/{sampler}/shard{n}, then the sampler's folder and results/checkpoints once
        # nothing else is in them. Other jobs run at the same time: rmdir is atomic, and fails on a folder
        # that is not empty or already gone.
        for folder in path.parents[:3]:
            try:
                folder.rmdir()
            except OSError:
                break


def _job_attrs(setup: Any, phase: str, job: Any, **extra: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return provenance.record(
        phase=phase,
        sampler=setup.spec.record(),
        grad_evals_per_step=setup.warmup_grad_evals_per_step if phase == "warmup" else setup.grad_evals_per_step,
        # The step plan keeps its attribute name "schedule" in the files: the files already written, and the
        # readers of them (diagnostics, runs), know it by that name.
        schedule=asdict(setup.plan),
        model=setup.model_config,
        seed=job.seed,
        chains=len(setup.chains),
        shard=job.shard,
        shards=job.shards,
        num_classes=setup.num_classes,
        fingerprint=setup.fingerprint,
        device=provenance.device(),
        gpu_autotuning=job.sampling_config["gpu_autotuning"],
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        **extra,
    )


def _start_jax(sampling_config: Any) -> None:
    """JAX as a sampling job's config asks: its CPU threads and GPU autotuning, set before anything starts
    JAX's backends, and its persistent compilation cache."""
    compilation.use_gpu_autotuning(sampling_config["gpu_autotuning"])
    # Absent where the config leaves it null: the rules leave it out of their params then (common.smk).
    compilation.use_cpu_threads(sampling_config.get("cpu_threads"))
    compilation.enable_compilation_cache(sampling_config["compilation_cache"])


def warmup(job: Any) -> None:
    """Warm up one shard of chains from their initial weights; write the warmup HDF5 file.

    ``job`` is an :class:`bnn_sgmcmc.experiment.SamplerJob`.
    """
    from bnn_sgmcmc import experiment, sampling, states
    from bnn_sgmcmc.errors import DivergenceError

    _start_jax(job.sampling_config)
    setup = experiment.setup(job)
    ckpt = _Checkpointer(job.checkpoint, job.sampling_config["checkpoint_every"])
    resumed = ckpt.load(setup.fingerprint, lambda arrays, attrs: states.warmup_state_from_arrays(arrays, attrs, setup))
    if resumed is not None:
        state = resumed
    elif job.init_from:
        log.info("chains start where the warmup of %s ended", ", ".join(job.init_from))
        state = sampling.WarmupState(setup.initial_state(states.warmup_positions(job.init_from, setup)), 0)
    else:
        state = sampling.WarmupState(setup.initial_state(), 0)

    def attrs(state: Any, compile_seconds: float) -> dict[str, Any]:
        return _job_attrs(
            setup, "warmup", job, schema_version=h5io.WARMUP_SCHEMA_VERSION,
            step=state.step, run_seconds=state.seconds, compile_seconds=compile_seconds,
        )

    def on_chunk(state: Any) -> None:
        if state.step < setup.plan.warmup_steps and ckpt.due():
            ckpt.write(states.warmup_arrays(state, setup), attrs(state, float("nan")))
        logs.stop_if_interrupted()

    try:
        state, compile_seconds = sampling.run_warmup(
            setup.spec, setup.dynamics, setup.train, setup.plan, setup.keys, state,
            setup.eval_sets["test"], setup.predict, setup.chains, on_chunk,
        )
    except DivergenceError:
        ckpt.remove()
        raise
    h5io.write_arrays(job.out, states.warmup_arrays(state, setup), attrs(state, compile_seconds))
    ckpt.remove()
    log.info("wrote %s: %d steps in %.2f s (+%.2f s compile)", job.out, state.step, state.seconds, compile_seconds)
    experiment.check_momentum_temperature(setup.spec, state.kernel_trace, "warmup")


def sample(job: Any) -> None:
    """Sample one shard of chains from its warmup state; write the predictive HDF5 file.

    ``job`` is an :class:`bnn_sgmcmc.experiment.SamplerJob` with ``warmup`` set.
    """
    from bnn_sgmcmc import experiment, sampling, states
    from bnn_sgmcmc.errors import DivergenceError

    _start_jax(job.sampling_config)
    setup = experiment.setup(job)
    warm_arrays, warm_attrs = h5io.read_arrays(job.warmup, required=("trace/step", "chain"))
    experiment.check_warmup_matches(job.warmup, warm_attrs, setup)
    plan, fingerprint = setup.plan, _sampling_fingerprint(setup, job.sampling_config)
    warmup_traces = {k: warm_arrays[k] for k in ("trace", "kernel_trace") if k in warm_arrays}
    ckpt = _Checkpointer(job.checkpoint, job.sampling_config["checkpoint_every"])
    resumed = ckpt.load(fingerprint, lambda arrays, attrs: states.sampling_state_from_arrays(arrays, attrs, setup))
    if resumed is not None:
        state, weights = resumed
    else:
        state, weights = _start_sampling(setup, warm_arrays["state"]), {"step": [], "params": []}

    def attrs(state: Any, **extra: Any) -> dict[str, Any]:
        return _job_attrs(
            setup, "sampling", job,
            schema_version=h5io.PREDICTIVE_SCHEMA_VERSION,
            step=state.step, num_samples=state.count, run_seconds=state.seconds,
            warmup_steps=plan.warmup_steps,
            warmup_grad_evals=int(setup.grad_evals(plan.warmup_steps, "warmup")),
            warmup_run_seconds=warm_attrs["run_seconds"],
            warmup_compile_seconds=warm_attrs["compile_seconds"],
            **extra,
        ) | {"fingerprint": fingerprint}

    def on_chunk(state: Any) -> None:
        _keep_weights(weights, state, setup, int(job.sampling_config["save_weights_every"]))
        if state.step < plan.sampling_steps and ckpt.due():
            ckpt.write(states.sampling_arrays(state, setup, warmup_traces, weights, with_state=True), attrs(state))
        logs.stop_if_interrupted()

    try:
        state, compile_seconds = sampling.run_sampling(
            setup.spec, setup.dynamics, setup.train, plan, setup.keys, state,
            setup.eval_sets, setup.predict, setup.chains, on_chunk, every=setup.draws_every,
        )
    except DivergenceError:
        ckpt.remove()
        raise
    arrays = states.sampling_arrays(state, setup, warmup_traces, weights, with_state=False)
    h5io.write_arrays(job.out, arrays, attrs(state, compile_seconds=compile_seconds))
    ckpt.remove()
    accuracy = arrays["trace"]["test"]["ensemble_accuracy"][-1] if state.count else []
    log.info(
        "wrote %s: %d samples in %.2f s (+%.2f s compile); ensemble test accuracy per chain %s",
        job.out, state.count, state.seconds, compile_seconds, [round(float(a), 4) for a in accuracy],
    )
    experiment.check_momentum_temperature(setup.spec, state.kernel_trace, "sampling")


def _sampling_fingerprint(setup: Any, sampling_config: Any) -> dict[str, Any]:
    """A sampling job's fingerprint: its warmup's, and the sampling phase's settings and step-size schedule."""
    return setup.fingerprint | {
        "sampling": {
            k: sampling_config[k] for k in ("sampling_steps", "thinning", "eval_every", "save_weights_every")
        },
        "schedule": dict(setup.spec.schedule),
    }


def _start_sampling(setup: Any, warm_state: Any) -> Any:
    """A fresh sampling state from the warmup file's kernel state ``warm_state``."""
    from bnn_sgmcmc import sampling, states

    # Sampling continues each chain's kernel state (momentum, preconditioner) where warmup left it, prepared
    # by the kernel on the whole training set where it asks to be (control variates' centre).
    kernel_state = states.state_from_tree(states.state_template(setup), warm_state)
    kernel_state, seconds = sampling.timed_start_sampling(setup.dynamics, setup.train, kernel_state)
    begun = sampling.new_sampling_state(kernel_state, setup.eval_sets, setup.num_classes)
    begun.seconds = seconds  # the sampling phase's device time includes it
    return begun


def _keep_weights(weights: dict[str, list], state: Any, setup: Any, every: int) -> None:
    """Append the chains' weights to ``weights`` at every ``every``-th sampling step (0: never)."""
    import jax

    if every and state.step % every == 0:
        weights["step"].append(state.step)
        weights["params"].append(jax.device_get(setup.kernel.position(state.state)))


def gather(*, shards: list[str], out: str) -> None:
    """Join the shards' predictive files along the chain axis into one file per sampler."""
    h5io.gather_predictive(shards, out)
    log.info("gathered %d shard(s) into %s", len(shards), out)
