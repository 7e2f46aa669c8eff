"""SG-MCMC with the registered kernels (bnn_sgmcmc.kernels), fused on the device.

Everything a step needs lives on the device: the training data, the minibatch
indices (drawn with ``jax.random``), every chain's kernel state (weights, and
momentum or preconditioner where the kernel has one), the step size of the
sampler's schedule (bnn_sgmcmc.schedules) and, while sampling, the
posterior-predictive accumulators. Steps run inside ``jax.lax.scan`` in chunks
of fixed length; the host sees the state between chunks only, to report
progress, check for divergence and write checkpoints. Chains are ``vmap``-ped.

Keys derive from (seed, sampler name, chain index, phase, step) only, so a chain
draws the same numbers alone or among others, and a run resumed at any chunk
boundary continues exactly as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from bnn_sgmcmc import kernels, predictive, schedules
from bnn_sgmcmc.errors import ConfigError, DivergenceError
from bnn_sgmcmc.kernels import Kernel
from bnn_sgmcmc.predictive import EvalSet

log = logging.getLogger(__name__)

PHASES = {"init": 0, "warmup": 1, "sampling": 2}


@dataclass(frozen=True)
class SamplerSpec:
    """One named entry of the config's ``samplers`` block, every default filled in by the schema."""

    name: str
    settings: Mapping[str, Any]

    @property
    def kernel(self) -> str:
        return self.settings["kernel"]

    @property
    def step_size(self) -> float:
        return float(self.settings["step_size"])

    @property
    def temperature(self) -> float:
        return float(self.settings["temperature"])

    @property
    def schedule(self) -> Mapping[str, Any]:
        return self.settings["schedule"]

    def record(self) -> dict[str, Any]:
        """The sampler as files record it: its name and settings."""
        return {"name": self.name, **self.settings}


@dataclass(frozen=True)
class StepPlan:
    """Steps, batching and chunking of a run (the config's ``sampling`` block); the step sizes over those
    steps are the sampler's step-size schedule (bnn_sgmcmc.schedules)."""

    batch_size: int
    batching: str
    warmup_steps: int
    sampling_steps: int
    eval_every: int
    thinning: int

    @property
    def lengths(self) -> dict[str, int]:
        """Steps per phase, as the step-size schedules take them."""
        return {"warmup": self.warmup_steps, "sampling": self.sampling_steps}


@struct.dataclass
class Data:
    """Training data on the device: raw inputs [N, D], labels [N] and the input scale.

    A pytree whose arrays are the compiled programs' arguments; ``scale`` is static, part of the program.
    """

    x: jax.Array
    y: jax.Array
    scale: float = struct.field(pytree_node=False, default=1.0)

    def whole(self) -> tuple[jax.Array, jax.Array]:
        """The whole set as one batch: the inputs in float32, scaled, and the labels."""
        return self.x.astype(jnp.float32) * self.scale, self.y


class Operands(NamedTuple):
    """What a compiled program reads besides its state, passed to it as arguments (never embedded).

    The training data, the chains' keys for the phase, and the sets it
    evaluates on. As arguments, the same program serves every shard and
    every data set of the same shapes, and stays small (see :func:`_compile`).
    """

    data: Data
    keys: jax.Array
    eval_sets: Mapping[str, EvalSet]


class Dynamics(NamedTuple):
    """What the compiled programs run for one sampler: its kernel and, per phase, its step sizes."""

    kernel: Kernel
    temperature: float
    warmup: Callable[[Any], schedules.Step]  # phase step -> step size, temperature factor, sampling stage, cycle
    sampling: Callable[[Any], schedules.Step]
    #: ``(position, minibatch) -> log posterior estimate``, the function the kernel differentiates.
    logdensity: Callable[[Any, Any], Any]


def dynamics(spec: SamplerSpec, logdensity_fn: Callable, plan: StepPlan,
             network: kernels.Network | None = None) -> Dynamics:
    """The kernel of ``spec`` on ``logdensity_fn`` (see :func:`log_density_estimator`) with the step sizes of its
    schedule over ``plan``'s phases; ``network``, the model's last layer, for a kernel that needs it."""
    step_sizes = {
        phase: schedules.build(spec.schedule, spec.step_size, plan.lengths, phase) for phase in ("warmup", "sampling")
    }
    return Dynamics(kernels.build(spec.kernel, logdensity_fn, spec.settings, network), spec.temperature,
                    **step_sizes, logdensity=logdensity_fn)


# --------------------------------------------------------------------------- posterior


def log_density_estimator(
    log_prior: Callable[[Any], jax.Array],
    log_likelihood: Callable[[Any, jax.Array, jax.Array], jax.Array],
    data_size: int,
) -> Callable[[Any, tuple[jax.Array, jax.Array]], jax.Array]:
    """Unbiased minibatch estimate of the log-posterior: log prior + N/B x batch log-likelihood.

    ``log_likelihood(params, x, y)`` sums over the batch in one model application,
    instead of the per-example ``vmap`` of ``blackjax.sgmcmc.gradients``; the
    estimate is the same (Welling & Teh, 2011).
    """

    def estimate(params: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        x, y = batch
        return log_prior(params) + (data_size / x.shape[0]) * log_likelihood(params, x, y)

    return estimate


# --------------------------------------------------------------------------- keys


def chain_keys(seed: int, sampler: str, chains: Sequence[int]) -> jax.Array:
    """One key per chain from (seed, sampler name, global chain index) alone."""
    sampler_key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(sampler.encode()) & 0x7FFFFFFF)
    # One vmapped fold-in, the same bits as one per chain: a stack of per-chain keys compiled a program of
    # as many arguments as chains (5 s for 2,048 chains on a CPU).
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(sampler_key, np.asarray(chains, np.uint32))


def phase_keys(keys: jax.Array, phase: str) -> jax.Array:
    """The chains' keys for one phase (``init``, ``warmup`` or ``sampling``)."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, PHASES[phase])


# --------------------------------------------------------------------------- the fused step


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


class Core(NamedTuple):
    """What every step carries for all chains: kernel states, epoch permutations, divergence step."""

    state: Any
    perms: jax.Array | None
    diverged_at: jax.Array  # [C] int32, -1 while finite


class _Batches(NamedTuple):
    """How every step of a run takes its minibatches from the training set."""

    size: int  # examples per minibatch
    stacked: int  # minibatches per step (a kernel with several takes them stacked)
    per_epoch: int  # steps per epoch
    whole: bool  # the whole set every step, taken as it is
    permuting: bool  # epochs, each walking a fresh permutation


def _batches(kernel: Kernel, n: int, plan: StepPlan) -> _Batches:
    """How ``kernel``'s steps take minibatches of the ``n`` training examples under ``plan``'s batching."""
    batch_size = n if kernel.full_batch else plan.batch_size
    stacked = kernel.batches_per_step
    per_epoch = n // (batch_size * stacked)
    # The whole training set every step: a full-batch kernel's, or epochs of one batch (the same set
    # in every epoch, whatever the order), taken as it is, with no permutation or gather.
    whole = kernel.full_batch or (plan.batching == "epochs" and batch_size == n)
    permuting = plan.batching == "epochs" and not whole
    if permuting and per_epoch == 0:
        raise ConfigError(
            f"sampling.batch_size = {batch_size} with batching: epochs gives each step {stacked} minibatches "
            f"({stacked * batch_size} images), more than the {n} training images; lower batch_size or "
            "num_integration_steps, or use batching: replacement."
        )
    return _Batches(batch_size, stacked, per_epoch, whole, permuting)


def _minibatch(data: Data, batches: _Batches, batch_stream: jax.Array, perm: jax.Array | None, step: jax.Array) -> Any:
    """One chain's minibatch (or stacked minibatches) at ``step``, scaled to float32: from its epoch's
    permutation ``perm``, or drawn with replacement from its ``batch_stream``."""
    if batches.whole:
        batch = data.whole()
        if batches.stacked > 1:  # exact gradients: the same whole set for every gradient of the step
            batch = jax.tree.map(lambda a: jnp.broadcast_to(a, (batches.stacked, *a.shape)), batch)
        return batch
    size, stacked = batches.size, batches.stacked
    shape = (size,) if stacked == 1 else (stacked, size)
    if batches.permuting:
        start = (step % batches.per_epoch) * size * stacked
        idx = jax.lax.dynamic_slice(perm, (start,), (size * stacked,)).reshape(shape)
    else:  # with replacement, as the reference notebook
        idx = jax.random.randint(jax.random.fold_in(batch_stream, step), shape, 0, data.x.shape[0])
    return data.x[idx].astype(jnp.float32) * data.scale, data.y[idx]


def _advance_fn(
    kernel: Kernel, phase: str, temperature: float, step_size_at: Callable[[Any], schedules.Step], data: Data,
    plan: StepPlan, keys: jax.Array,
) -> tuple[Callable, Callable]:
    """``(core, step) -> core``: one kernel step (a warmup step in ``phase`` warmup) of every chain.

    Called while tracing a program: ``data`` and ``keys`` are its arguments.
    """
    kernel_step = (kernel.warmup_step or kernel.step) if phase == "warmup" else kernel.step
    n = data.x.shape[0]
    batches = _batches(kernel, n, plan)
    per_epoch, permuting = batches.per_epoch, batches.permuting
    batch_streams = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 0)
    kernel_streams = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 1)

    def advance(core: Core, step: jax.Array) -> Core:
        at = step_size_at(step)
        # Closed over, not passed: a constant schedule's numbers stay constants of the program.
        step_size, chain_temperature = at.step_size, temperature * at.temperature

        def one_chain(batch_stream, kernel_stream, state, perm):
            batch = _minibatch(data, batches, batch_stream, perm, step)
            return kernel_step(jax.random.fold_in(kernel_stream, step), state, batch, step_size, chain_temperature)

        perms = core.perms
        if permuting:
            perms = jax.lax.cond(
                step % per_epoch == 0, lambda: epoch_perms(step // per_epoch), lambda: perms
            )
        state = jax.vmap(one_chain, in_axes=(0, 0, 0, 0 if perms is not None else None))(
            batch_streams, kernel_streams, core.state, perms
        )
        finite = jax.vmap(_all_finite)(state)
        diverged_at = jnp.where((core.diverged_at < 0) & ~finite, step, core.diverged_at)
        return Core(state, perms, diverged_at)

    def epoch_perms(epoch: jax.Array) -> jax.Array:
        return jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n))(batch_streams)

    def start_core(state: Any, start: jax.Array) -> Core:
        # Epoch permutations are recomputed from the start step, so resuming needs no saved state.
        perms = epoch_perms(start // per_epoch) if permuting else None
        chains = kernel_streams.shape[0]
        return Core(state, perms, jnp.full((chains,), -1, jnp.int32))

    return advance, start_core


# --------------------------------------------------------------------------- compiled programs


@dataclass
class Compiled:
    """An ahead-of-time compiled program and what compiling it cost."""

    program: Any
    seconds: float


def _compile(fn: Callable, operands: Operands, *args: Any, precision: str | None = None) -> Compiled:
    """Compile ``fn(operands, *args)``, its matrix products at ``precision`` (a kernel's
    ``matmul_precision``; None: JAX's default); return it with ``operands`` bound.

    The data sets and keys are the program's arguments, never constants of
    it. Embedded, the training and evaluation sets would be 157 MB of HLO text
    for MNIST, which XLA has to process when compiling and hash for every
    lookup in the persistent cache; as arguments the program is 75 to 110 KB,
    the same for every shard, and on a 2-core CPU the warmup program compiled
    in 0.8 s instead of 4.0 s cold, and in 0.05 s instead of 0.9 s from the cache.
    """
    start = time.perf_counter()
    with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
        program = jax.jit(fn).lower(operands, *args).compile()
    return Compiled(functools.partial(program, operands), time.perf_counter() - start)


def _stats(kernel: Kernel, state: Any) -> dict[str, jax.Array]:
    """Every chain's kernel statistics after a step ({name: [C]}; empty for kernels without ``stats``)."""
    return jax.vmap(kernel.stats)(state) if kernel.stats is not None else {}


def warmup_program(dyn: Dynamics, plan: StepPlan, predict: Callable | None) -> Callable:
    """``(operands, state, start, total) -> (state, diverged_at, metric, stats)``: one chunk of warmup.

    Runs ``plan.eval_every`` steps from ``start`` (steps at or past ``total``
    are skipped by a branch, not computed) and then, if ``predict`` is given,
    every chain's accuracy on ``operands.eval_sets["test"]``. ``stats`` holds
    the kernel's statistics after each step (see :func:`_stats`).
    """
    length = plan.eval_every

    def chunk(operands: Operands, state, start, total):
        advance, start_core = _advance_fn(
            dyn.kernel, "warmup", dyn.temperature, dyn.warmup, operands.data, plan, operands.keys
        )

        def body(core, step):
            core = jax.lax.cond(step < total, advance, lambda c, s: c, core, step)
            return core, _stats(dyn.kernel, core.state)

        def evaluate(kernel_state):
            test = operands.eval_sets["test"]
            return predictive.accuracy(predict(dyn.kernel.position(kernel_state), test.x), test.labels)

        core, stats = jax.lax.scan(body, start_core(state, start), start + jnp.arange(length))
        metric = jax.vmap(evaluate)(core.state) if predict is not None else jnp.zeros(())
        return core.state, core.diverged_at, metric, stats

    return chunk


def sampling_program(dyn: Dynamics, plan: StepPlan, predict: Callable) -> Callable:
    """``(operands, state, acc, count, start, total) -> (state, acc, count, diverged_at, trace)``.

    One chunk of sampling: every kept step (each ``thinning``-th step of a
    sampling stage of the step-size schedule) folds its predictions on every
    set of ``operands.eval_sets`` into the accumulators; ``trace`` holds, per
    step of the chunk, whether it was kept, its cycle, the per-chain
    metrics (and, for sets with ``draws``, the per-example true-class
    log-probabilities), and the kernel's statistics (see :func:`_stats`).
    """
    length = plan.eval_every
    thinning = plan.thinning

    def chunk(operands: Operands, state, acc, count, start, total):
        advance, start_core = _advance_fn(
            dyn.kernel, "sampling", dyn.temperature, dyn.sampling, operands.data, plan, operands.keys
        )
        eval_sets = operands.eval_sets

        def body(carry, step):
            core, acc, count = carry
            core = jax.lax.cond(step < total, advance, lambda c, s: c, core, step)
            at = dyn.sampling(step)
            kept = (step < total) & ((step + 1) % thinning == 0)
            if at.sampling is not True:  # a schedule with stages that keep nothing (cyclical)
                kept = kept & at.sampling

            def fold(acc, count):
                count = count + 1
                acc, metrics = predictive.fold(acc, dyn.kernel.position(core.state), count, eval_sets, predict)
                return acc, count, metrics

            def skip(acc, count):
                shapes = jax.eval_shape(fold, acc, count)[2]
                return acc, count, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

            acc, count, metrics = jax.lax.cond(kept, fold, skip, acc, count)
            return (core, acc, count), (kept, jnp.asarray(at.cycle, jnp.int32), metrics, _stats(dyn.kernel, core.state))

        init = (start_core(state, start), acc, count)
        (core, acc, count), trace = jax.lax.scan(body, init, start + jnp.arange(length))
        return core.state, acc, count, core.diverged_at, trace

    return chunk


def start_sampling(dyn: Dynamics, data: Data, state: Any) -> Any:
    """Every chain's state prepared for sampling by the kernel's ``start_sampling`` on the whole training set, in
    one compiled program (the data its argument, its matrix products at the kernel's precision); ``state``
    itself for kernels without it."""
    return timed_start_sampling(dyn, data, state)[0]


def timed_start_sampling(dyn: Dynamics, data: Data, state: Any) -> tuple[Any, float]:
    """:func:`start_sampling`, and the seconds its program ran (compile excluded; 0 for kernels without it): part
    of the sampling phase's device time (a Laplace approximation's precision, formed here, is most of it)."""
    hook = dyn.kernel.start_sampling
    if hook is None:
        return state, 0.0

    def prepare(operands: Operands, state: Any) -> Any:
        return jax.vmap(hook, in_axes=(0, None))(state, operands.data.whole())

    operands = Operands(data, jnp.zeros((), jnp.uint32), {})
    compiled = _compile(prepare, operands, state, precision=dyn.kernel.matmul_precision)
    started = time.perf_counter()
    prepared = jax.block_until_ready(compiled.program(state))
    seconds = time.perf_counter() - started
    log.info("prepared for sampling on the whole training set in %.2f s (+%.2f s compile)", seconds, compiled.seconds)
    return prepared, seconds


# --------------------------------------------------------------------------- host-side drivers


def progress_bar(step: int, total: int, width: int = 30) -> str:
    """``[#########.........]`` for ``step`` of ``total``."""
    filled = int(width * step / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + "]"


@dataclass
class Progress:
    """Reports each chunk to the log: step, speed, time left and the notebook's test error.

    After the first chunk, one line says how long a step took and how long
    the rest of the phase will take at that rate (a full-batch kernel's job
    says it before, from one timed gradient: :func:`probe_full_batch`).
    When the process's original stderr is a terminal (a job started from an
    interactive shell), the same line is also drawn there as a progress bar.
    """

    sampler: str
    phase: str
    total: int
    start_time: float = field(default_factory=time.perf_counter)
    start_step: int = 0
    estimated: bool = False

    def report(self, step: int, error: float | None) -> None:
        elapsed = time.perf_counter() - self.start_time
        done = step - self.start_step
        rate = done / elapsed if elapsed > 0 else float("nan")
        left = (self.total - step) / rate if rate > 0 else float("nan")
        if not self.estimated and step < self.total:  # the first chunk is the probe: say what to expect
            self.estimated = True
            log.info("%s %s: %.3g s a step in the first chunk; about %s for the %d steps left",
                     self.sampler, self.phase, 1 / rate if rate > 0 else float("nan"), duration(left),
                     self.total - step)
        tail = f" | error: {100 * error:.2f}%" if error is not None else ""
        line = f"{self.sampler} {self.phase} step {step}/{self.total} | {rate:.1f} steps/s | {left:.0f} s left{tail}"
        log.info("%s", line)
        terminal = sys.__stderr__
        if terminal is not None and terminal.isatty():
            end = "\n" if step >= self.total else ""
            terminal.write(f"\r{progress_bar(step, self.total)} {line}{end}")
            terminal.flush()


def check_finite(diverged_at: np.ndarray, spec: SamplerSpec, chains: Sequence[int], phase: str) -> None:
    """Raise DivergenceError naming the sampler, kernel, schedule and first chain whose state left the finite numbers."""
    bad = np.flatnonzero(np.asarray(diverged_at) >= 0)
    if bad.size:
        i = int(bad[0])
        raise DivergenceError(
            f"sampler {spec.name} (kernel {spec.kernel}, {spec.schedule['kind']} step size): chain {chains[i]} "
            f"diverged during {phase} at step {int(diverged_at[i])} (its state became NaN or infinite). Lower "
            f"samplers.{spec.name}.step_size (now {spec.step_size:g}), for example by a factor of 10."
        )


@dataclass
class WarmupState:
    """Warmup after ``step`` steps: every chain's kernel state, the accuracy trace and the kernel's statistics.

    ``kernel_trace`` holds, for kernels with statistics (HMC), every step's
    number (``"step"``) and per statistic its per-chain values.
    """

    state: Any
    step: int
    trace: dict[str, list] = field(default_factory=lambda: {"step": [], "wall_seconds": [], "test_accuracy": []})
    seconds: float = 0.0
    kernel_trace: dict[str, list] = field(default_factory=lambda: {"step": []})


def _extend_kernel_trace(kernel_trace: dict[str, list], first: int, n_steps: int, stats: Mapping[str, Any]) -> None:
    """Append steps ``first + 1 .. first + n_steps`` of a chunk's kernel statistics ({name: [length, C]})."""
    if not stats:
        return
    kernel_trace["step"].extend(range(first + 1, first + n_steps + 1))
    for name, values in stats.items():
        kernel_trace.setdefault(name, []).extend(np.asarray(values)[:n_steps])


def run_warmup(
    spec: SamplerSpec,
    dyn: Dynamics,
    data: Data,
    plan: StepPlan,
    keys: jax.Array,
    state: WarmupState,
    test: EvalSet | None,
    predict: Callable | None,
    chains: Sequence[int],
    on_chunk: Callable[[WarmupState], None] = lambda s: None,
) -> tuple[WarmupState, float]:
    """Run warmup from ``state`` to ``plan.warmup_steps``; return the state and compile seconds.

    With ``test`` and ``predict``, every chunk traces each chain's accuracy on ``test``.
    """
    total = plan.warmup_steps
    probe_full_batch(spec, dyn, data, dyn.kernel.position(state.state), "warmup", total - state.step)
    evaluated = test is not None and predict is not None
    program = warmup_program(dyn, plan, predict if evaluated else None)
    operands = Operands(data, phase_keys(keys, "warmup"), {"test": test} if evaluated else {})
    compiled = _compile(program, operands, state.state, jnp.int32(0), jnp.int32(total),
                        precision=dyn.kernel.matmul_precision)
    log.info("%s warmup: compiled in %.2f s", spec.name, compiled.seconds)
    progress = Progress(spec.name, "warmup", total, start_step=state.step)
    while state.step < total:
        t0 = time.perf_counter()
        kernel_state, diverged_at, metric, stats = compiled.program(state.state, jnp.int32(state.step), jnp.int32(total))
        metric = np.asarray(metric)  # waits for the chunk
        step = min(state.step + plan.eval_every, total)
        check_finite(np.asarray(diverged_at), spec, chains, "warmup")
        _extend_kernel_trace(state.kernel_trace, state.step, step - state.step, stats)
        state.state, state.step = kernel_state, step
        state.seconds += time.perf_counter() - t0
        if evaluated:
            _record(state, step, state.seconds, metric)
        progress.report(step, 1 - float(metric.mean()) if evaluated else None)
        on_chunk(state)
    return state, compiled.seconds


def probe_full_batch(spec: SamplerSpec, dyn: Dynamics, data: Data, positions: Any, phase: str, steps: int) -> float | None:
    """For a kernel whose steps take the whole training set (the reference's ``hmc``): time one full-data
    gradient of every chain, before the phase's first chunk, and log what the phase's ``steps`` will take at
    that rate. A chunk of such steps can take an hour on a CPU; the probe answers in seconds. Returns the
    seconds per gradient (None for other kernels, or with nothing to do)."""
    if not dyn.kernel.full_batch or steps <= 0:
        return None

    def gradients(operands: Operands, position: Any) -> Any:
        return jax.vmap(jax.grad(dyn.logdensity), in_axes=(0, None))(position, operands.data.whole())

    operands = Operands(data, jnp.zeros((), jnp.uint32), {})
    compiled = _compile(gradients, operands, positions, precision=dyn.kernel.matmul_precision)
    start = time.perf_counter()
    jax.block_until_ready(compiled.program(positions))
    seconds = time.perf_counter() - start
    if seconds < 1.0:  # cheap enough to time again without the first call's one-off costs
        start = time.perf_counter()
        jax.block_until_ready(compiled.program(positions))
        seconds = time.perf_counter() - start
    per_step = dyn.kernel.grad_evals_per_step
    total = seconds * per_step * steps
    chains = jax.tree.leaves(positions)[0].shape[0]
    log.info("%s %s: a probe took %.3g s for one full-data gradient of the %d chains here (%d images); at %d "
             "gradients a step, the %d steps will take about %s, compile aside", spec.name, phase,
             seconds, chains, data.x.shape[0], per_step, steps, duration(total))
    return seconds


def duration(seconds: float) -> str:
    """``seconds`` in the unit a person reads best: seconds, minutes, hours or days."""
    if not np.isfinite(seconds):
        return "an unknown time"
    for unit, size, limit in (("s", 1, 120), ("min", 60, 7200), ("h", 3600, 172800)):
        if seconds < limit:
            return f"{seconds / size:.0f} {unit}" if unit == "s" else f"{seconds / size:.1f} {unit}"
    return f"{seconds / 86400:.1f} days"


def _record(state: WarmupState, step: int, seconds: float, accuracy: np.ndarray) -> None:
    state.trace["step"].append(step)
    state.trace["wall_seconds"].append(seconds)
    state.trace["test_accuracy"].append(np.asarray(accuracy, dtype=np.float32))


@dataclass
class SamplingState:
    """Sampling after ``step`` steps: kernel states, accumulators, the per-sample trace and the draws so far.

    ``trace`` holds per kept sample its ``step``, ``cycle`` (of a cyclical
    step-size schedule; 0 otherwise), ``wall_seconds`` and per labelled set
    its metrics. ``draws`` holds, for every ``draws_every``-th kept sample,
    its step (``draws["step"]``) and per set with draws its [C, n]
    true-class log-probabilities (``draws[set]``). ``kernel_trace`` holds the
    kernel's statistics after every step, kept or not (see :class:`WarmupState`).
    """

    state: Any
    acc: dict[str, predictive.Accumulator]
    count: int
    step: int
    trace: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    draws: dict[str, list] = field(default_factory=dict)
    kernel_trace: dict[str, list] = field(default_factory=lambda: {"step": []})


#: Trace entries shared by all sets (the others are per labelled set).
TRACE_COMMON = ("step", "cycle", "wall_seconds")


def new_sampling_state(state: Any, eval_sets: Mapping[str, EvalSet], num_classes: int) -> SamplingState:
    chains = jax.tree.leaves(state)[0].shape[0]
    trace: dict[str, Any] = {name: [] for name in TRACE_COMMON}
    for name, s in eval_sets.items():
        if s.labels is not None:
            trace[name] = {m: [] for m in predictive.metric_names(s)}
    draws = {"step": []} | {name: [] for name, s in eval_sets.items() if s.draws}
    return SamplingState(state, predictive.init(eval_sets, chains, num_classes), 0, 0, trace, draws=draws)


def draws_every(kept_samples: int, draws_per_chain: int) -> int:
    """Keep every this-many-th kept sample as a draw, so that at most ``draws_per_chain`` are kept (0: none)."""
    if draws_per_chain <= 0:
        return 0
    return max(1, -(-kept_samples // draws_per_chain))


def run_sampling(
    spec: SamplerSpec,
    dyn: Dynamics,
    data: Data,
    plan: StepPlan,
    keys: jax.Array,
    state: SamplingState,
    eval_sets: Mapping[str, EvalSet],
    predict: Callable,
    chains: Sequence[int],
    on_chunk: Callable[[SamplingState], None] = lambda s: None,
    every: int = 0,
) -> tuple[SamplingState, float]:
    """Run sampling from ``state`` to ``plan.sampling_steps``; return the state and compile seconds.

    Every ``every``-th kept sample (see :func:`draws_every`; 0: none) joins the draws.
    """
    total = plan.sampling_steps
    probe_full_batch(spec, dyn, data, dyn.kernel.position(state.state), "sampling", total - state.step)
    program = sampling_program(dyn, plan, predict)
    operands = Operands(data, phase_keys(keys, "sampling"), dict(eval_sets))
    args = (state.state, state.acc, jnp.int32(state.count))
    compiled = _compile(program, operands, *args, jnp.int32(0), jnp.int32(total), precision=dyn.kernel.matmul_precision)
    log.info("%s sampling: compiled in %.2f s", spec.name, compiled.seconds)
    progress = Progress(spec.name, "sampling", total, start_step=state.step)
    labelled = [name for name in state.trace if name not in TRACE_COMMON]
    while state.step < total:
        t0 = time.perf_counter()
        kernel_state, acc, count, diverged_at, (kept, cycle, metrics, stats) = compiled.program(
            state.state, state.acc, jnp.int32(state.count), jnp.int32(state.step), jnp.int32(total)
        )
        kept = np.asarray(kept)  # waits for the chunk
        check_finite(np.asarray(diverged_at), spec, chains, "sampling")
        elapsed = time.perf_counter() - t0
        offsets = np.flatnonzero(kept)
        # Wall time of each kept sample, spread evenly over the chunk's steps.
        n_steps = min(plan.eval_every, total - state.step)
        _extend_kernel_trace(state.kernel_trace, state.step, n_steps, stats)
        state.trace["step"].extend((state.step + offsets + 1).tolist())
        state.trace["cycle"].extend(np.asarray(cycle)[offsets].tolist())
        state.trace["wall_seconds"].extend((state.seconds + elapsed * (offsets + 1) / n_steps).tolist())
        for name in labelled:
            for m in state.trace[name]:
                state.trace[name][m].extend(np.asarray(metrics[name][m])[offsets])
        if every and len(state.draws) > 1:
            chosen = offsets[(state.count + 1 + np.arange(len(offsets))) % every == 0]
            state.draws["step"].extend((state.step + chosen + 1).tolist())
            for name in state.draws:
                if name != "step":
                    state.draws[name].extend(np.asarray(metrics[name][predictive.DRAWS])[chosen])
        state.state, state.acc, state.count = kernel_state, acc, int(count)
        state.step = min(state.step + plan.eval_every, total)
        state.seconds += elapsed
        error = None
        if "test" in labelled and state.trace["test"]["ensemble_accuracy"]:
            error = 1 - float(np.mean(state.trace["test"]["ensemble_accuracy"][-1]))
        progress.report(state.step, error)
        on_chunk(state)
    return state, compiled.seconds
