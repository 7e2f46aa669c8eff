"""A sampler run assembled from the config and the data file, and its states as arrays.

:func:`setup` turns config blocks and the preprocessed data into everything the
fused sampler needs (data on the device, model, kernel step, keys) plus a
fingerprint of what determines the results. The ``*_arrays`` / ``*_from_arrays``
pairs convert sampler states to the nested arrays that ``h5io`` writes, so that
outputs and checkpoints share one layout (docs/schema.md).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnn_sgmcmc import h5io, kernels, model, predictive, sampling, schedules
from bnn_sgmcmc.config import warmup_sampler
from bnn_sgmcmc.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _many(value: Any) -> tuple[str, ...]:
    """A named input that an input function gave as [], a path or [paths]: the paths."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def _single(value: Any) -> str:
    """A named input that an input function gave as [] or [path]: the path or ''."""
    paths = _many(value)
    return paths[0] if paths else ""


@dataclass(frozen=True)
class SamplerJob:
    """What one warmup or sampling job runs on: one shard of one sampler's chains."""

    data: str
    sampler: str
    sampler_config: Mapping[str, Any]
    model_config: Mapping[str, Any]
    sampling_config: Mapping[str, Any]
    seed: int
    chains: Sequence[int]
    shard: int
    shards: int
    checkpoint: str
    out: str
    warmup: str | None = None
    #: Sampling only: what the predictive is evaluated on besides the test set
    #: (``draws_per_chain``, ``shift``, ``ood_examples``), and the OOD data file.
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    ood: str = ""
    #: Warmup only: warmup files whose final weights the chains start from (the reference posterior's
    #: ``init``); chain c starts where chain c mod (their chains) ended. Empty: the model's initial weights.
    init_from: Sequence[str] = ()

    #: Operational settings: read from the config rather than rule params, so that
    #: changing them does not rerun finished jobs.
    OPERATIONAL = ("checkpoint_every", "compilation_cache", "gpu_autotuning")

    @classmethod
    def from_snakemake(cls, smk: Any) -> SamplerJob:
        """Build from a warmup or sample rule's ``snakemake`` object."""
        operational = {k: smk.config["sampling"][k] for k in cls.OPERATIONAL}
        return cls(
            data=smk.input.data,
            sampler=smk.wildcards.sampler,
            sampler_config=smk.params.sampler,
            model_config=smk.params.model,
            sampling_config=dict(smk.params.sampling) | operational,
            seed=smk.params.seed,
            chains=list(smk.params.chains),
            shard=int(smk.wildcards.shard),
            shards=smk.params.shards,
            checkpoint=smk.params.checkpoint,
            out=smk.output.h5,
            warmup=smk.input.get("warmup"),
            evaluation=dict(smk.params.get("evaluation") or {}),
            ood=_single(smk.input.get("ood")),
            init_from=_many(smk.input.get("init")),
        )


@dataclass
class Setup:
    spec: sampling.SamplerSpec
    schedule: sampling.Schedule
    mlp: model.MLP
    train: sampling.Data
    eval_sets: dict[str, predictive.EvalSet]
    num_classes: int
    input_dim: int
    chains: list[int]
    keys: Any
    dynamics: sampling.Dynamics
    predict: Any
    model_config: dict[str, Any]
    fingerprint: dict[str, Any]
    #: Every this-many-th kept sample records the test set's per-example draws (0: none).
    draws_every: int = 0

    @property
    def kernel(self) -> kernels.Kernel:
        return self.dynamics.kernel

    @property
    def grad_evals_per_step(self) -> float:
        """Gradient evaluations per step, counted in minibatch gradients (``sampling.batch_size`` examples):
        a full-data gradient (HMC's) counts N / batch_size, so that samplers compare per unit of arithmetic."""
        per_step = self.kernel.grad_evals_per_step
        return per_step * self.train.x.shape[0] / self.schedule.batch_size if self.kernel.full_batch else per_step

    def grad_evals(self, steps: Any, phase: str = "warmup") -> np.ndarray:
        """Gradient evaluations (see :attr:`grad_evals_per_step`) after ``steps`` steps of ``phase``, as integers;
        in sampling with the full-data gradient of the kernel's ``start_sampling``, where it has one."""
        spent = np.asarray(steps, np.float64) * self.grad_evals_per_step
        if phase == "sampling" and self.kernel.start_sampling is not None:
            spent = spent + self.train.x.shape[0] / self.schedule.batch_size
        return np.rint(spent).astype(np.int64)

    def initial_state(self, positions: Any = None) -> Any:
        """Every chain's kernel state at its initial weights, from the chain's init key: ``positions`` (a
        leading chain axis; see :func:`warmup_positions`), or else model.init_params."""
        import jax

        cfg = self.model_config
        init = functools.partial(
            model.init_params,
            model=self.mlp,
            input_dim=self.input_dim,
            method=cfg["init"],
            prior_scale=float(cfg["prior_scale"]),
        )

        # One program: op by op, Flax's initialisers and the kernel's init compiled about 40 small programs
        # per job (3.1 s cold, 0.5 s from the persistent cache, on a 2-core CPU; docs/benchmarks.md). The
        # arrays are bit-identical.
        @jax.jit
        def initial(keys: Any, positions: Any) -> Any:
            init_keys = sampling.phase_keys(keys, "init")
            state_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(init_keys, 1)
            if positions is None:  # the weights draw the init key itself, as before kernels had state
                positions = jax.vmap(init)(init_keys)
            return jax.vmap(self.kernel.init)(positions, state_keys)

        return initial(self.keys, positions)


def schedule_from_config(cfg: Mapping[str, Any]) -> sampling.Schedule:
    """The ``sampling`` block as a Schedule. A warmup job is not told the sampling phase's settings (so that
    changing them does not rerun warmup) unless its step-size schedule spans both phases: they count 0 then."""
    fields = sampling.Schedule.__dataclass_fields__
    return sampling.Schedule(**{k: cfg.get(k, 0) for k in fields})


def evaluation_sets(
    job: SamplerJob, test_images: np.ndarray, test_labels: np.ndarray, image_shape: tuple[int, ...]
) -> dict[str, predictive.EvalSet]:
    """The sets the sampling program evaluates every kept sample on.

    ``test`` (with per-example draws unless ``draws_per_chain`` is 0), the shifted copies of the test split
    (``shift/...``) and, with an OOD data file, its first ``ood_examples`` test
    images (``ood``, unlabelled). Images come in [0, 1]; the warmup job, with no
    ``evaluation``, gets the test set alone.
    """
    import jax.numpy as jnp

    from bnn_sgmcmc import shift

    n = len(test_labels)
    flat = lambda x: jnp.asarray(x.reshape(len(x), -1))  # noqa: E731
    labels = jnp.asarray(test_labels)
    ev = job.evaluation
    sets = {"test": predictive.EvalSet(flat(test_images), labels, int(ev.get("draws_per_chain", 0)) > 0)}
    if ev.get("shift"):
        for name, images in shift.shifted_sets(test_images, ev["shift"], job.seed).items():
            sets[name] = predictive.EvalSet(flat(images), labels[: len(images)])
    if job.ood:
        ood, attrs = h5io.read_data_h5(job.ood, splits=("test",))
        found = tuple(int(v) for v in attrs["image_shape"])
        if found != image_shape:
            raise DataError(
                f"The out-of-distribution images in {job.ood} are {found}, the model's are {image_shape}; "
                "ood.source must have images of the same shape as data.source."
            )
        images = ood.test.images[: int(ev.get("ood_examples", len(ood.test.labels)))]
        sets["ood"] = predictive.EvalSet(flat(images.astype(np.float32) * float(attrs["pixel_scale"])), None)
    return sets


def setup(job: SamplerJob) -> Setup:
    """Load the data onto the device and build model, kernel and keys for one shard of chains."""
    import jax
    import jax.numpy as jnp

    started = time.perf_counter()
    data_h5, sampler_name, chains, seed = job.data, job.sampler, job.chains, job.seed
    sampler_config, model_config, sampling_config = job.sampler_config, job.model_config, job.sampling_config

    images, attrs = h5io.read_data_h5(data_h5)
    num_classes = int(attrs["num_classes"])
    image_shape = tuple(int(v) for v in attrs["image_shape"])
    input_dim = int(np.prod(image_shape))
    scale = float(attrs["pixel_scale"])
    schedule = schedule_from_config(sampling_config)
    n_train = len(images.train.labels)
    if schedule.batch_size > n_train:
        raise ConfigError(
            f"sampling.batch_size = {schedule.batch_size} exceeds the {n_train} training images "
            f"of {data_h5}; lower it."
        )
    spec = sampling.SamplerSpec(sampler_name, dict(sampler_config))
    mlp = model.build(model_config["hidden"], num_classes)
    train = sampling.Data(
        x=jnp.asarray(images.train.images.reshape(n_train, input_dim)),
        y=jnp.asarray(images.train.labels),
        scale=scale,
    )
    eval_sets = evaluation_sets(job, images.test.images.astype(np.float32) * scale, images.test.labels, image_shape)
    jax.block_until_ready((train, eval_sets))  # so that the time below includes the copies to the device
    data_seconds = time.perf_counter() - started
    prior_scale = float(model_config["prior_scale"])
    log_density = sampling.log_density_estimator(
        functools.partial(model.log_prior, prior_scale=prior_scale), model.log_likelihood_fn(mlp), n_train
    )
    data_digest = {
        s: {k: attrs["splits"][s].get(k) for k in ("images_sha256", "labels_sha256")} for s in ("train", "test")
    }
    fingerprint = {
        "model": {k: model_config[k] for k in ("hidden", "prior_scale", "init")},
        "data": {"num_classes": num_classes, "image_shape": list(image_shape), **data_digest},
        "sampler": {"name": spec.name, **warmup_sampler(dict(spec.settings))},
        # A warmup or predictive file of another layout cannot be continued.
        "layout": {"warmup": h5io.WARMUP_SCHEMA_VERSION, "predictive": h5io.PREDICTIVE_SCHEMA_VERSION},
        "seed": int(seed),
        "chains": [int(c) for c in chains],
        "warmup": {k: getattr(schedule, k) for k in ("batch_size", "batching", "warmup_steps")}
        | ({"schedule_steps": {p: schedule.lengths[p] for p in spec.schedule["phases"]}}
           if "warmup" in spec.schedule["phases"] else {}),
        "evaluation": {k: job.evaluation[k] for k in sorted(job.evaluation)}
        | ({"ood": h5io.read_data_h5(job.ood, splits=())[1]["splits"]["test"].get("images_sha256")} if job.ood else {}),
    }
    if job.init_from:  # the warmups the chains start from: another one makes another chain
        fingerprint["init_from"] = [_file_fingerprint(path) for path in job.init_from]
    if len(eval_sets) > 1:
        log.info("evaluation sets: %s", ", ".join(f"{k} ({v.x.shape[0]})" for k, v in eval_sets.items()))
    log.info(
        "sampler %s (%s), chains %s, model %s (%d parameters), %d train / %d test images, devices %s; "
        "data read, evaluation sets built and on the device in %.2f s",
        spec.name, spec.kernel, list(chains), list(model_config["hidden"]),
        model.num_params(jax.eval_shape(mlp.init, jax.random.key(0), jnp.zeros((1, input_dim)))),
        n_train, len(images.test.labels), jax.devices(), data_seconds,
    )
    return Setup(
        spec=spec,
        schedule=schedule,
        mlp=mlp,
        train=train,
        eval_sets=eval_sets,
        num_classes=num_classes,
        input_dim=input_dim,
        chains=[int(c) for c in chains],
        keys=sampling.chain_keys(seed, sampler_name, chains),
        dynamics=sampling.dynamics(spec, log_density, schedule),
        predict=model.predict_fn(mlp),
        model_config=dict(model_config),
        fingerprint=fingerprint,
        draws_every=sampling.draws_every(
            schedules.kept_count(spec.schedule, schedule.lengths, max(schedule.thinning, 1)),
            int(job.evaluation.get("draws_per_chain", 0)),
        ),
    )


def _file_fingerprint(path: str) -> Any:
    import h5py

    with h5py.File(path, "r") as f:
        return h5io.read_attrs(f).get("fingerprint")


def fingerprint_differences(expected: Mapping[str, Any], found: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """Human-readable differences between two fingerprints over ``keys``."""
    diffs = []
    for key in keys:
        if expected.get(key) != found.get(key):
            diffs.append(f"{key}: file has {found.get(key)!r}, this run needs {expected.get(key)!r}")
    return diffs


# --------------------------------------------------------------------------- states as arrays


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


def check_checkpoint(arrays: Mapping[str, Any], attrs: Mapping[str, Any], setup: Setup, phase: str) -> None:
    """A checkpoint's attributes agree with its contents and with this run: its chains are this shard's, its
    step lies inside the phase, and its trace ends at or before that step. Raises ``ValueError`` saying which."""
    steps = setup.schedule.warmup_steps if phase == "warmup" else setup.schedule.sampling_steps
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


def warmup_positions(paths: Sequence[str], setup: Setup) -> Any:
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


def state_template(setup: Setup) -> Any:
    """The shapes and structure of the chains' kernel state, computed without running anything."""
    import jax

    return jax.eval_shape(setup.initial_state)


def warmup_arrays(state: sampling.WarmupState, setup: Setup) -> dict[str, Any]:
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
            "grad_evals": setup.grad_evals(steps),
            "wall_seconds": np.repeat(np.asarray(trace["wall_seconds"], np.float64)[:, None], chains, 1),
            "test_accuracy": np.asarray(trace["test_accuracy"], np.float32).reshape(-1, chains),
        },
    } | kernel_trace_arrays(state.kernel_trace, chains)


#: A momentum whose hottest weight array averages more than this many times the temperature over the second half
#: of a phase is reported: twice is far beyond the discretisation's own excess (alpha x step_size / 2, about 1 %).
HOT_MOMENTUM = 2.0


def check_momentum_temperature(spec: sampling.SamplerSpec, kernel_trace: Mapping[str, list], phase: str) -> float | None:
    """Warn when a kernel that carries a momentum (its ``hottest_kinetic_temperature`` traced) ran hot in ``phase``.

    Minibatch gradient noise heats a carried momentum: in the discretised dynamics it adds about
    step_size x (gradient variance) / 2 to the temperature for each unit of friction ``alpha`` (Chen, Fox and
    Guestrin 2014's B against C), and the samples then come from a hotter, wider distribution than the posterior.
    Returns the hottest array's mean kinetic temperature over the phase's second half (all chains), or None
    for kernels without a momentum."""
    hottest = kernel_trace.get("hottest_kinetic_temperature")
    if not hottest:
        return None
    values = np.asarray(hottest, np.float64)
    late = float(values[len(values) // 2:].mean())
    if not late <= HOT_MOMENTUM * spec.temperature:
        friction, advice = kernels.hot_momentum_advice(spec.kernel, spec.settings)
        log.warning(
            "%s: the momentum runs hot in %s: the kinetic temperature of its hottest weight array averaged %.3g over "
            "the second half of the phase, against the temperature %g. The minibatch gradient noise heats it faster "
            "than %s cools it, and the samples come from a wider distribution than the posterior: %s or raise "
            "sampling.batch_size.",
            spec.name, phase, late, spec.temperature, friction, advice,
        )
    return late


def kernel_trace_arrays(kernel_trace: Mapping[str, list], chains: int) -> dict[str, Any]:
    """``{"kernel_trace": {"step": [T], stat: [T, C]}}`` for kernels with statistics; empty otherwise."""
    if len(kernel_trace) <= 1:
        return {}
    return {"kernel_trace": {
        name: np.asarray(values, np.int64) if name == "step" else np.asarray(values).reshape(-1, chains)
        for name, values in kernel_trace.items()
    }}


def kernel_trace_from_arrays(arrays: Mapping[str, Any]) -> dict[str, list]:
    saved = arrays.get("kernel_trace", {})
    return {"step": []} | {name: list(values) if name != "step" else values.tolist() for name, values in saved.items()}


def warmup_state_from_arrays(arrays: Mapping[str, Any], attrs: Mapping[str, Any], setup: Setup) -> sampling.WarmupState:
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


def sampling_arrays(
    state: sampling.SamplingState,
    setup: Setup,
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
    arrays: Mapping[str, Any], attrs: Mapping[str, Any], setup: Setup
) -> tuple[sampling.SamplingState, dict[str, Any]]:
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
        state=state_from_tree(state_template(setup), arrays["state"]),
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


def check_warmup_matches(path: str, attrs: Mapping[str, Any], setup: Setup) -> None:
    """Refuse a warmup file made for another model, data set, sampler, seed, chains or file layout."""
    found = attrs.get("fingerprint")
    if not isinstance(found, dict):
        raise DataError(f"{path} has no fingerprint attribute; it was not written by this workflow's warmup rule.")
    keys = ["model", "data", "sampler", "seed", "chains", "warmup", "layout"]
    diffs = fingerprint_differences(setup.fingerprint, found, keys)
    if diffs:
        raise DataError(
            f"The warmup file {path} was made with another config: {'; '.join(diffs)}. "
            "Rerun warmup for this config (delete the file, or run snakemake with --forcerun warmup)."
        )
    if int(attrs.get("step", -1)) != setup.schedule.warmup_steps:
        raise DataError(f"The warmup file {path} is incomplete (step {attrs.get('step')}); delete it and rerun.")
