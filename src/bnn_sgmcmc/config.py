"""The checks of the workflow configuration that JSON Schema cannot express.

The schema (``bnn_sgmcmc.schema``) checks each key's type, range and allowed
values and fills in defaults; :func:`check` checks what depends on the outside
world or on several keys at once: whether a local data source exists and how
many images it holds, whether the batch fits the training set, whether each
run's shards have chains and its schedule keeps a sample, and each kernel's own
checks. The Snakefile calls it before any job runs, in whatever environment
Snakemake itself runs in: it imports the standard library and this package's
modules that do the same (the kernel modules' declarations, the schedules),
never JAX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnn_sgmcmc.errors import ConfigError
from bnn_sgmcmc.plan import REFERENCE, sampler_sampling
from bnn_sgmcmc.sources import find_idx_files, idx_dims, idx_image_shape, resolve_source


def check(config: dict[str, Any], memory_limit: int | None = None) -> None:
    """Check what the schema cannot; raise ConfigError naming the key and the fix. With ``memory_limit`` (the
    bytes of the machine that runs the jobs), a run whose largest job would need more is refused too
    (bnn_sgmcmc.memory)."""
    from bnn_sgmcmc import kernels, memory

    resolve_source(config["data"]["source"])
    ood = config.get("ood", {}).get("source")
    if ood is not None:
        found = resolve_source(ood, key="ood.source")
        if found.form == "idx":
            shape = idx_image_shape(find_idx_files(Path(found.location))["test_images"])
            wanted = tuple(config["data"]["image_shape"])
            if shape != wanted:
                raise ConfigError(
                    f"ood.source: the images in '{ood}' are {'x'.join(map(str, shape))}, data.image_shape is "
                    f"{'x'.join(map(str, wanted))}; the model can only score images of its own shape. Point "
                    "ood.source at a data set of that shape."
                )
    decision = config.get("decision", {})
    costs = decision.get("costs")
    k = config["data"]["num_classes"]
    if costs is not None and (len(costs) != k or any(len(row) != k for row in costs)):
        shape = f"{len(costs)} x {'/'.join(sorted({str(len(r)) for r in costs})) or 0}"
        raise ConfigError(
            f"decision.costs is {shape}; it must be data.num_classes x data.num_classes = {k} x {k} "
            "(row: true class, column: predicted class)."
        )
    sampling = config["sampling"]
    _check_shards(sampling, "sampling")
    known = known_train_size(config["data"])
    known_test = _known_size(config["data"], "test")  # a test subset beyond the source's size stops here too
    if known is not None and sampling["batch_size"] > known[0]:
        raise ConfigError(
            f"sampling.batch_size = {sampling['batch_size']} exceeds the {known[0]} training images "
            f"({known[1]}); lower it."
        )
    every = sampling["save_weights_every"]
    if every and every % sampling["eval_every"]:
        raise ConfigError(
            f"sampling.save_weights_every = {every} must be a multiple of sampling.eval_every = "
            f"{sampling['eval_every']} (weights are read between compiled chunks)."
        )
    check_reference(config)
    for name, entry in config["samplers"].items():
        own = sampler_sampling(sampling, entry)
        if "shards" in entry or "chains" in entry:
            where = f"samplers.{name}"
            _check_shards(own, where, chains=f"{where}.chains" if "chains" in entry else "sampling.chains")
        kernels.check(entry["kernel"], entry, own, f"samplers.{name}")
        check_schedule(name, entry["schedule"], own)
    memory.check(config, memory_limit, {"train": known and known[0], "test": known_test and known_test[0]})


def check_reference(config: dict[str, Any]) -> None:
    """The reference posterior's settings: its name is free, its start exists, its shards have chains."""
    if REFERENCE in config["samplers"]:
        raise ConfigError(
            f"samplers.{REFERENCE}: the name '{REFERENCE}' is kept for the reference posterior (the config's "
            "reference block); rename this sampler."
        )
    ref = config.get("reference")
    if ref is None:
        return
    if ref["init"] not in ("warmup", "prior", *config["samplers"]):
        raise ConfigError(
            f"reference.init = '{ref['init']}' is neither 'warmup', 'prior' nor a sampler; choose one of "
            f"warmup, prior, {', '.join(config['samplers'])}."
        )
    _check_shards(ref, "reference")
    if ref["thinning"] > ref["sampling_steps"]:
        raise _nothing_kept(ref, "reference")


def check_schedule(name: str, schedule: dict[str, Any], sampling: dict[str, Any]) -> None:
    """A schedule (or thinning) that leaves sampling no kept sample stops the run, naming the keys to change."""
    from bnn_sgmcmc import schedules

    lengths = {"warmup": sampling["warmup_steps"], "sampling": sampling["sampling_steps"]}
    if schedules.kept_count(schedule, lengths, sampling["thinning"]):
        return
    if schedule["kind"] == "cyclical":
        raise ConfigError(
            f"samplers.{name}.schedule: with {schedule['cycles']} cycles, exploration {schedule['exploration']} and "
            f"sampling.thinning {sampling['thinning']}, none of the {lengths['sampling']} sampling steps is kept. "
            "Lower exploration or thinning, or use fewer cycles."
        )
    raise _nothing_kept(sampling, "sampling")


def _check_shards(block: dict[str, Any], where: str, chains: str | None = None) -> None:
    """Each shard of a run (``sampling``, a sampler of its own shards, ``reference``) needs at least one chain;
    ``chains`` names the key its chains come from (default ``{where}.chains``)."""
    if block["shards"] > block["chains"]:
        raise ConfigError(
            f"{where}.shards = {block['shards']} exceeds {chains or where + '.chains'} = {block['chains']}: "
            "each shard needs at least one chain. Lower shards or raise chains."
        )


def _nothing_kept(block: dict[str, Any], where: str) -> ConfigError:
    """A run (``sampling`` or ``reference``) whose thinning exceeds its sampling steps keeps nothing."""
    return ConfigError(
        f"{where}.thinning = {block['thinning']} exceeds {where}.sampling_steps = {block['sampling_steps']}: no "
        "sample would be kept. Lower thinning or raise sampling_steps."
    )


def _source_size(data_config: dict[str, Any], split: str) -> tuple[int, str] | None:
    """The number of ``split`` images of the source, where the config or a file header says it before any job
    runs (synthetic data, a local IDX folder), and where it comes from; None for sources read in a job."""
    found = resolve_source(data_config["source"])
    if found.form == "synthetic":
        return int(data_config["synthetic"][f"n_{split}"]), f"data.synthetic.n_{split}"
    if found.form == "idx":
        images = find_idx_files(Path(found.location))[f"{split}_images"]
        if images is not None:
            return idx_dims(images)[0], f"the IDX files in '{data_config['source']}'"
    return None


def _known_size(data_config: dict[str, Any], split: str) -> tuple[int, str] | None:
    """The ``split`` images the run uses, where known before any job: ``data.subset``'s count where it sets one
    (refused with ConfigError where it exceeds the source's known size), else the source's."""
    known = _source_size(data_config, split)
    subset = data_config["subset"][split]
    if subset is None:
        return known
    if known is not None and subset > known[0]:
        raise ConfigError(
            f"data.subset.{split} = {subset} exceeds the {known[0]} {'training' if split == 'train' else split} "
            f"images ({known[1]}); lower it, or set it to null to keep them all."
        )
    return int(subset), f"data.subset.{split}"


def known_train_size(data_config: dict[str, Any]) -> tuple[int, str] | None:
    """The number of training images, where the config or a file header says it before any job runs
    (synthetic data, a local IDX folder, a ``data.subset``), and where it comes from; None otherwise."""
    return _known_size(data_config, "train")
