"""A sampler run assembled from the config and the data file.

:func:`setup` turns config blocks and the preprocessed data into everything the
fused sampler needs (data on the device, model, kernel step, keys) plus a
fingerprint of what determines the results, by which a warmup file is checked
before sampling continues it. The run's states as file arrays are
``bnn_sgmcmc.states``'s job.
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
from bnn_sgmcmc.plan import warmup_sampler
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
    plan: sampling.StepPlan
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
        """Gradient evaluations per sampling step, counted in minibatch gradients (``sampling.batch_size``
        examples): a full-data gradient (HMC's) counts N / batch_size, so that samplers compare per unit of
        arithmetic."""
        return self._in_minibatch_gradients(self.kernel.grad_evals_per_step)

    @property
    def warmup_grad_evals_per_step(self) -> float:
        """As :attr:`grad_evals_per_step`, per warmup step (the kernel's own count, where it has one)."""
        per_step = self.kernel.warmup_grad_evals_per_step
        return self._in_minibatch_gradients(self.kernel.grad_evals_per_step if per_step is None else per_step)

    def _in_minibatch_gradients(self, count: int) -> float:
        return count * self.train.x.shape[0] / self.plan.batch_size if self.kernel.full_batch else count

    def grad_evals(self, steps: Any, phase: str) -> np.ndarray:
        """Gradient evaluations after ``steps`` steps of ``phase`` (``warmup`` or ``sampling``), as integers; in
        sampling with the full-data gradient of the kernel's ``start_sampling``, where it has one."""
        per_step = self.warmup_grad_evals_per_step if phase == "warmup" else self.grad_evals_per_step
        spent = np.asarray(steps, np.float64) * per_step
        if phase == "sampling" and self.kernel.start_sampling is not None:
            spent = spent + self.train.x.shape[0] / self.plan.batch_size
        return np.rint(spent).astype(np.int64)

    def initial_state(self, positions: Any = None) -> Any:
        """Every chain's kernel state at its initial weights, from the chain's init key: ``positions`` (a
        leading chain axis; see :func:`bnn_sgmcmc.states.warmup_positions`), or else model.init_params."""
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
        # per job (3.1 s cold, 0.5 s from the persistent cache, on a 2-core CPU; docs/benchmarks-history.md).
        # The arrays are bit-identical.
        @jax.jit
        def initial(keys: Any, positions: Any) -> Any:
            init_keys = sampling.phase_keys(keys, "init")
            state_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(init_keys, 1)
            if positions is None:  # the weights draw the init key itself, as before kernels had state
                positions = jax.vmap(init)(init_keys)
            return jax.vmap(self.kernel.init)(positions, state_keys)

        return initial(self.keys, positions)


def plan_from_config(cfg: Mapping[str, Any]) -> sampling.StepPlan:
    """The ``sampling`` block as a StepPlan. A warmup job is not told the sampling phase's settings (so that
    changing them does not rerun warmup) unless its step-size schedule spans both phases: they count 0 then,
    which is why absent keys are read as 0 here rather than indexed."""
    fields = sampling.StepPlan.__dataclass_fields__
    return sampling.StepPlan(**{k: cfg.get(k, 0) for k in fields})


def evaluation_sets(
    job: SamplerJob, test_images: np.ndarray, test_labels: np.ndarray, image_shape: tuple[int, ...]
) -> dict[str, predictive.EvalSet]:
    """The sets the sampling program evaluates every kept sample on.

    ``test`` (with per-example draws unless ``draws_per_chain`` is 0), the shifted copies of the test split
    (``shift/...``) and, with an OOD data file, its first ``ood_examples`` test
    images (``ood``, unlabelled). Images come in [0, 1]; the warmup job, with no
    ``evaluation``, gets the test set alone, and a benchmark's, with ``draws_per_chain`` alone, no shifts:
    an absent key is a set not evaluated. A job with an OOD file is a sample rule's, given every key.
    """
    import jax.numpy as jnp

    from bnn_sgmcmc import shift

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
        images = ood.test.images[: int(ev["ood_examples"])]
        sets["ood"] = predictive.EvalSet(flat(images.astype(np.float32) * float(attrs["pixel_scale"])), None)
    return sets


def setup(job: SamplerJob) -> Setup:
    """Load the data onto the device and build model, kernel and keys for one shard of chains."""
    import jax
    import jax.numpy as jnp

    started = time.perf_counter()
    images, attrs = h5io.read_data_h5(job.data)
    num_classes = int(attrs["num_classes"])
    image_shape = tuple(int(v) for v in attrs["image_shape"])
    input_dim = int(np.prod(image_shape))
    scale = float(attrs["pixel_scale"])
    n_train = len(images.train.labels)
    spec = sampling.SamplerSpec(job.sampler, dict(job.sampler_config))
    # A baseline counts its training in epochs of this training set, and fixes its draws per member.
    plan = plan_from_config(dict(job.sampling_config)
                            | kernels.phase_steps(spec.kernel, spec.settings, job.sampling_config, n_train))
    check_batch_size(plan, n_train, job.data)
    mlp = model.build(job.model_config["hidden"], num_classes)
    train = sampling.Data(
        x=jnp.asarray(images.train.images.reshape(n_train, input_dim)),
        y=jnp.asarray(images.train.labels),
        scale=scale,
    )
    eval_sets = evaluation_sets(job, images.test.images.astype(np.float32) * scale, images.test.labels, image_shape)
    jax.block_until_ready((train, eval_sets))  # so that the time below includes the copies to the device
    data_seconds = time.perf_counter() - started
    log_density = sampling.log_density_estimator(
        functools.partial(model.log_prior, prior_scale=float(job.model_config["prior_scale"])),
        model.log_likelihood_fn(mlp), n_train,
    )
    fingerprint = _fingerprint(job, spec, plan, attrs)
    _log_setup(job, spec, mlp, input_dim, eval_sets, n_train, len(images.test.labels), data_seconds)
    return Setup(
        spec=spec,
        plan=plan,
        mlp=mlp,
        train=train,
        eval_sets=eval_sets,
        num_classes=num_classes,
        input_dim=input_dim,
        chains=[int(c) for c in job.chains],
        keys=sampling.chain_keys(job.seed, job.sampler, job.chains),
        dynamics=sampling.dynamics(spec, log_density, plan,
                                   model.last_layer(mlp, float(job.model_config["prior_scale"]))),
        predict=model.predict_fn(mlp),
        model_config=dict(job.model_config),
        fingerprint=fingerprint,
        draws_every=sampling.draws_every(
            schedules.kept_count(spec.schedule, plan.lengths, max(plan.thinning, 1)),
            int(job.evaluation.get("draws_per_chain", 0)),
        ),
    )


def check_batch_size(plan: sampling.StepPlan, n_train: int, data_h5: str) -> None:
    """Refuse a minibatch larger than the training set of ``data_h5``."""
    if plan.batch_size > n_train:
        raise ConfigError(
            f"sampling.batch_size = {plan.batch_size} exceeds the {n_train} training images "
            f"of {data_h5}; lower it."
        )


def _fingerprint(
    job: SamplerJob, spec: sampling.SamplerSpec, plan: sampling.StepPlan, data_attrs: Mapping[str, Any]
) -> dict[str, Any]:
    """What determines a job's results, as its files record it (docs/schema.md): model, data and its digests,
    the sampler as warmup uses it, file layouts, seed, chains, warmup steps, evaluation sets and the warmups
    the chains start from."""
    # Data files written before the digests existed lack them: None, as before.
    data_digest = {
        s: {k: data_attrs["splits"][s].get(k) for k in ("images_sha256", "labels_sha256")} for s in ("train", "test")
    }
    fingerprint = {
        "model": {k: job.model_config[k] for k in ("hidden", "prior_scale", "init")},
        "data": {"num_classes": int(data_attrs["num_classes"]),
                 "image_shape": [int(v) for v in data_attrs["image_shape"]], **data_digest},
        "sampler": {"name": spec.name, **warmup_sampler(dict(spec.settings))},
        # A warmup or predictive file of another layout cannot be continued.
        "layout": {"warmup": h5io.WARMUP_SCHEMA_VERSION, "predictive": h5io.PREDICTIVE_SCHEMA_VERSION},
        "seed": int(job.seed),
        "chains": [int(c) for c in job.chains],
        "warmup": {k: getattr(plan, k) for k in ("batch_size", "batching", "warmup_steps")}
        | ({"schedule_steps": {p: plan.lengths[p] for p in spec.schedule["phases"]}}
           if "warmup" in spec.schedule["phases"] else {}),
        "evaluation": {k: job.evaluation[k] for k in sorted(job.evaluation)}
        | ({"ood": h5io.read_data_h5(job.ood, splits=())[1]["splits"]["test"].get("images_sha256")} if job.ood else {}),
    }
    if job.init_from:  # the warmups the chains start from: another one makes another chain
        fingerprint["init_from"] = [_file_fingerprint(path) for path in job.init_from]
    return fingerprint


def _log_setup(
    job: SamplerJob, spec: sampling.SamplerSpec, mlp: model.MLP, input_dim: int,
    eval_sets: Mapping[str, predictive.EvalSet], n_train: int, n_test: int, data_seconds: float,
) -> None:
    """Say what the job runs on, and how long reading the data and copying it to the device took."""
    import jax
    import jax.numpy as jnp

    if len(eval_sets) > 1:
        log.info("evaluation sets: %s", ", ".join(f"{k} ({v.x.shape[0]})" for k, v in eval_sets.items()))
    log.info(
        "sampler %s (%s), chains %s, model %s (%d parameters), %d train / %d test images, devices %s; "
        "data read, evaluation sets built and on the device in %.2f s",
        spec.name, spec.kernel, list(job.chains), list(job.model_config["hidden"]),
        model.num_params(jax.eval_shape(mlp.init, jax.random.key(0), jnp.zeros((1, input_dim)))),
        n_train, n_test, jax.devices(), data_seconds,
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
    if int(attrs.get("step", -1)) != setup.plan.warmup_steps:
        raise DataError(f"The warmup file {path} is incomplete (step {attrs.get('step')}); delete it and rerun.")


# --------------------------------------------------------------------------- after a run


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
