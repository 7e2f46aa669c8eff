"""Sampler states as the arrays of warmup, predictive and checkpoint files, and back.

A kernel's state pytree becomes nested dicts of numpy arrays (HDF5 groups, see
``h5io``), and a :class:`bnn_sgmcmc.sampling.WarmupState` or ``SamplingState``
with its traces becomes a file's arrays; each ``*_from_arrays`` reads them back
into the state that resumes the run, refusing what does not fit it. Outputs and
checkpoints share one layout (docs/schema.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from bnn_sgmcmc import h5io, kernels, predictive, sampling


class RunSetup(Protocol):
    """What the conversions read of one shard's run: a :class:`bnn_sgmcmc.experiment.Setup`, named by what it
    offers, since experiment sits above this module."""

    chains: list[int]
    keys: Any
    plan: sampling.StepPlan
    eval_sets: dict[str, predictive.EvalSet]
    num_classes: int
    train: sampling.Data

    @property
    def kernel(self) -> kernels.Kernel: ...

    def grad_evals(self, steps: Any, phase: str) -> np.ndarray: ...

    def initial_state(self, positions: Any = None) -> Any: ...


# --------------------------------------------------------------------------- a kernel's state


def state_tree(state: Any) -> Any:
    """A kernel state as nested dicts of numpy arrays, as HDF5 groups hold it: named fields become groups
    (``momentum/Dense_0/kernel``), the weights' own dict stays as it is."""
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return {name: state_tree(value) for name, value in zip(state._fields, state)}
    if isinstance(state, Mapping):
        return {key: state_tree(value) for key, value in state.items()}
    return np.asarray(state)


def state_from_tree(template: Any, tree: Any, where: str = "state") -> Any:
    """The inverse of :func:`state_tree`, shaped like ``template`` (the kernel's initial state or its shapes).

    Raises ``ValueError`` naming the first array that is missing or whose shape or dtype is not the template's.
    """
    import jax.numpy as jnp

    def child(name: str) -> Any:
        if not isinstance(tree, Mapping) or name not in tree:
            raise ValueError(f"{where}/{name} is missing")
        return tree[name]

    if isinstance(template, tuple) and hasattr(template, "_fields"):
        return type(template)(**{name: state_from_tree(value, child(name), f"{where}/{name}")
                                 for name, value in zip(template._fields, template)})
    if isinstance(template, Mapping):
        return {key: state_from_tree(value, child(key), f"{where}/{key}") for key, value in template.items()}
    array = np.asarray(tree)
    if hasattr(template, "shape") and (array.shape != tuple(template.shape) or array.dtype != template.dtype):
        raise ValueError(f"{where} is {array.dtype}{list(array.shape)}, "
                         f"expected {np.dtype(template.dtype)}{list(template.shape)}")
    return jnp.asarray(array)


def state_template(setup: RunSetup, phase: str = "warmup") -> Any:
    """The shapes and structure of the chains' kernel state in ``phase``, computed without running anything: in
    sampling, as the kernel's ``start_sampling`` leaves it, which may add to it (the Laplace kernel's covariance
    factor) or drop what only warmup needs (an optimiser's moments)."""
    import jax

    hook = setup.kernel.start_sampling if phase == "sampling" else None
    if hook is not None:
        return jax.eval_shape(lambda: jax.vmap(hook, in_axes=(0, None))(setup.initial_state(), setup.train.whole()))
    return jax.eval_shape(setup.initial_state)


def warmup_positions(paths: Sequence[str], setup: RunSetup) -> Any:
    """The weights at the end of the warmup files ``paths`` (any kernel's), one per chain of ``setup``: chain c
    gets those of the files' chain ``c mod`` (their number of chains), in global chain order. A kernel's state
    is its weights, or holds them under ``position``."""
    import jax

    ended: dict[int, Any] = {}
    for path in paths:
        arrays, _ = h5io.read_arrays(path)
        state = arrays["state"]
        weights = state["position"] if "position" in state else state
        for i, chain in enumerate(arrays["chain"].tolist()):
            ended[int(chain)] = jax.tree.map(lambda a, i=i: a[i], weights)
    order = sorted(ended)
    template = setup.kernel.position(state_template(setup))
    picked = [ended[order[c % len(order)]] for c in setup.chains]
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *picked)
    return state_from_tree(template, stacked)


# --------------------------------------------------------------------------- checkpoints


def check_checkpoint(arrays: Mapping[str, Any], attrs: Mapping[str, Any], setup: RunSetup, phase: str) -> None:
    """A checkpoint's attributes agree with its contents and with this run: its chains are this shard's, its
    step lies inside the phase, and its trace ends at or before that step. Raises ``ValueError`` saying which.

    A checkpoint may come from a damaged or foreign file: what it lacks is refused, not assumed (hence ``get``).
    """
    steps = setup.plan.warmup_steps if phase == "warmup" else setup.plan.sampling_steps
    chains = np.asarray(arrays.get("chain", [])).tolist()
    if chains != list(setup.chains):
        raise ValueError(f"it holds chains {chains}, this job runs {list(setup.chains)}")
    step = int(attrs.get("step", -1))
    if not 0 < step < steps:
        raise ValueError(f"its step {step} is outside the {phase} phase's 1..{steps - 1}")
    steps_key = "step" if phase == "warmup" else "sample_step"
    trace = arrays.get("trace", {}).get(steps_key)
    if trace is None:
        raise ValueError(f"trace/{steps_key} is missing")
    if len(trace) and (int(np.max(trace)) > step or np.any(np.diff(trace) <= 0)):
        raise ValueError(f"its trace steps do not end at or before its step {step}")
    if phase == "sampling" and not 0 <= int(attrs.get("num_samples", -1)) <= step:
        raise ValueError(f"its {attrs.get('num_samples')} kept samples do not fit in {step} steps")


# --------------------------------------------------------------------------- kernel statistics


def kernel_trace_arrays(kernel_trace: Mapping[str, list], chains: int) -> dict[str, Any]:
    """``{"kernel_trace": {"step": [T], stat: [T, C]}}`` for kernels with statistics; empty otherwise."""
    if len(kernel_trace) <= 1:
        return {}
    return {"kernel_trace": {
        name: np.asarray(values, np.int64) if name == "step" else np.asarray(values).reshape(-1, chains)
        for name, values in kernel_trace.items()
    }}


def kernel_trace_from_arrays(arrays: Mapping[str, Any]) -> dict[str, list]:
    """The inverse of :func:`kernel_trace_arrays`: ``{"step": []}`` where a file has no kernel statistics."""
    saved = arrays.get("kernel_trace", {})
    return {"step": []} | {name: list(values) if name != "step" else values.tolist() for name, values in saved.items()}


# --------------------------------------------------------------------------- warmup


def warmup_arrays(state: sampling.WarmupState, setup: RunSetup) -> dict[str, Any]:
    """The arrays of a warmup file or warmup checkpoint: kernel state, chains, keys and traces."""
    import jax

    trace = state.trace
    steps = np.asarray(trace["step"], dtype=np.int64)
    chains = len(setup.chains)
    return {
        "state": state_tree(state.state),
        "chain": np.asarray(setup.chains, dtype=np.int64),
        "keys": np.asarray(jax.random.key_data(setup.keys)),
        "trace": {
            "step": steps,
            "grad_evals": setup.grad_evals(steps, "warmup"),
            "wall_seconds": np.repeat(np.asarray(trace["wall_seconds"], np.float64)[:, None], chains, 1),
            "test_accuracy": np.asarray(trace["test_accuracy"], np.float32).reshape(-1, chains),
        },
    } | kernel_trace_arrays(state.kernel_trace, chains)


def warmup_state_from_arrays(arrays: Mapping[str, Any], attrs: Mapping[str, Any], setup: RunSetup) -> sampling.WarmupState:
    """The warmup state a checkpoint holds (see :func:`check_checkpoint` for what it refuses)."""
    check_checkpoint(arrays, attrs, setup, "warmup")
    trace = arrays["trace"]
    return sampling.WarmupState(
        state=state_from_tree(state_template(setup), arrays["state"]),
        step=int(attrs["step"]),
        trace={
            "step": trace["step"].tolist(),
            "wall_seconds": trace["wall_seconds"][:, 0].tolist(),
            "test_accuracy": list(trace["test_accuracy"]),
        },
        seconds=float(attrs["run_seconds"]),
        kernel_trace=kernel_trace_from_arrays(arrays),
    )


# --------------------------------------------------------------------------- sampling


def sampling_arrays(
    state: sampling.SamplingState,
    setup: RunSetup,
    warmup: Mapping[str, Any],
    weights: Mapping[str, Any],
    with_state: bool,
) -> dict[str, Any]:
    """The arrays of a predictive file or sampling checkpoint; ``warmup`` holds the warmup file's ``trace``
    (and ``kernel_trace``, for kernels with statistics)."""
    chains = len(setup.chains)
    steps = np.asarray(state.trace["step"], dtype=np.int64)
    trace: dict[str, Any] = {
        "sample_step": steps,
        "cycle": np.asarray(state.trace["cycle"], np.int64),
        "grad_evals": setup.grad_evals(steps, "sampling"),
        "wall_seconds": np.repeat(np.asarray(state.trace["wall_seconds"], np.float64)[:, None], chains, 1),
    }
    arrays: dict[str, Any] = {"chain": np.asarray(setup.chains, dtype=np.int64), "trace": trace,
                              "warmup": {k: dict(v) for k, v in warmup.items()}}
    arrays |= kernel_trace_arrays(state.kernel_trace, chains)
    for name, acc in state.acc.items():
        arrays[name] = {field: np.asarray(value) for field, value in acc._asdict().items()}
        labels = setup.eval_sets[name].labels
        if labels is not None:
            arrays[name]["labels"] = np.asarray(labels)
            trace[name] = {
                m: np.asarray(state.trace[name][m], np.float32).reshape(-1, chains)
                for m in predictive.metric_names(setup.eval_sets[name])
            }
    if len(state.draws) > 1:
        arrays["draws"] = {"step": np.asarray(state.draws["step"], np.int64)}
        for name, values in state.draws.items():
            if name != "step":
                n = setup.eval_sets[name].x.shape[0]
                leaf = h5io.FUNCTION_SPACE.rsplit("/", 1)[1]
                arrays["draws"][name] = {leaf: np.asarray(values, np.float16).reshape(-1, chains, n)}
    if weights.get("step"):
        arrays["weights"] = {"step": np.asarray(weights["step"], np.int64), "params": _stack_weights(weights["params"])}
    if with_state:
        arrays["state"] = state_tree(state.state)
    return arrays


def _stack_weights(samples: list[Any]) -> Any:
    import jax

    return jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *samples)


def sampling_state_from_arrays(
    arrays: Mapping[str, Any], attrs: Mapping[str, Any], setup: RunSetup
) -> tuple[sampling.SamplingState, dict[str, Any]]:
    """The sampling state and the kept weights a checkpoint holds (see :func:`check_checkpoint` for what it
    refuses; an accumulator of another shape or dtype than this run's is refused too)."""
    import jax
    import jax.numpy as jnp

    check_checkpoint(arrays, attrs, setup, "sampling")
    trace_in = arrays["trace"]
    trace: dict[str, Any] = {
        "step": trace_in["sample_step"].tolist(),
        "cycle": trace_in["cycle"].tolist(),
        "wall_seconds": trace_in["wall_seconds"][:, 0].tolist(),
    }
    acc = {}
    fresh = predictive.init(setup.eval_sets, len(setup.chains), setup.num_classes)
    for name, data in setup.eval_sets.items():
        saved = h5io.lookup(arrays, name)
        acc[name] = predictive.Accumulator(*(jnp.asarray(saved[f]) for f in predictive.Accumulator._fields))
        for field, got, want in zip(predictive.Accumulator._fields, acc[name], fresh[name]):
            if got.shape != want.shape or got.dtype != want.dtype:
                raise ValueError(f"{name}/{field} is {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}")
        if data.labels is not None:
            trace[name] = {m: list(h5io.lookup(trace_in, name)[m]) for m in predictive.metric_names(data)}
    draws: dict[str, list] = {"step": []} | {name: [] for name, data in setup.eval_sets.items() if data.draws}
    if len(draws) > 1:
        saved = arrays["draws"]
        draws["step"] = saved["step"].tolist()
        for name in draws:
            if name != "step":
                draws[name] = list(h5io.lookup(saved, name)[h5io.FUNCTION_SPACE.rsplit("/", 1)[1]])
    state = sampling.SamplingState(
        state=state_from_tree(state_template(setup, "sampling"), arrays["state"]),
        acc=acc,
        count=int(attrs["num_samples"]),
        step=int(attrs["step"]),
        trace=trace,
        seconds=float(attrs["run_seconds"]),
        draws=draws,
        kernel_trace=kernel_trace_from_arrays(arrays),
    )
    weights: dict[str, Any] = {"step": [], "params": []}
    if "weights" in arrays:
        saved = arrays["weights"]
        weights["step"] = saved["step"].tolist()
        weights["params"] = [jax.tree.map(lambda a, i=i: a[i], saved["params"]) for i in range(len(weights["step"]))]
    return state, weights
