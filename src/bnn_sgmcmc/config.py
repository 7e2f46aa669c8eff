"""The workflow configuration: its schema, and the checks that JSON Schema cannot express.

The schema (``workflow/schemas/config.schema.yaml``, with each kernel's keys
from its module: :func:`load_schema`) checks types, ranges and allowed values
and fills in defaults; this module checks what depends on the outside world or
on several keys at once, such as whether a local data source exists. The
Snakefile calls it before any job runs, in whatever environment Snakemake
itself runs in: it imports the standard library, and Snakemake's own
dependencies (PyYAML, jsonschema) where it needs them, never JAX.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bnn_sgmcmc.errors import ConfigError

SourceForm = Literal["synthetic", "idx", "parquet", "hub"]

#: The four IDX files of MNIST, by role, as LeCun distributes them.
IDX_STEMS: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

SOURCE_FORMS_HELP = (
    "data.source takes one of: 'synthetic' (generated, no download); "
    "a local folder of the MNIST IDX files (train-images-idx3-ubyte[.gz], "
    "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
    "t10k-labels-idx1-ubyte[.gz]); a local folder in the Hugging Face hub's "
    "parquet layout (train and test parquet files with 'image' and 'label' "
    "columns); or a Hugging Face dataset id such as 'mnist'. Only the first "
    "three work offline."
)



@dataclass(frozen=True)
class Source:
    """Where a data set comes from, resolved from the ``data.source`` string."""

    form: SourceForm
    location: str

    def describe(self) -> str:
        return {
            "synthetic": "synthetic data generated from the seed",
            "idx": f"IDX files in {self.location}",
            "parquet": f"hub-layout parquet folder {self.location}",
            "hub": f"Hugging Face hub dataset '{self.location}'",
        }[self.form]


def _looks_like_path(value: str) -> bool:
    # Hub ids may contain one '/', so only explicit path forms count as paths.
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..") or "\\" in value


def find_idx_files(folder: Path) -> dict[str, Path | None]:
    """Map each IDX role to the file that holds it in ``folder`` (gzipped or not), or None.

    Accepts LeCun's names (``train-images-idx3-ubyte``) and the dotted variant
    (``train-images.idx3-ubyte``) that some mirrors use.
    """
    found: dict[str, Path | None] = {}
    for role, stem in IDX_STEMS.items():
        dotted = stem.replace("-idx", ".idx")
        candidates = [folder / f"{name}{ext}" for name in (stem, dotted) for ext in ("", ".gz")]
        found[role] = next((c for c in candidates if c.is_file()), None)
    return found


def resolve_source(source: str, key: str = "data.source") -> Source:
    """Decide which loader serves ``source``; raise ConfigError for a local path that cannot work."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{key} is empty. {SOURCE_FORMS_HELP}")
    source = source.strip()
    if source == "synthetic":
        return Source("synthetic", "synthetic")
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        idx = find_idx_files(path)
        if any(idx.values()):
            missing = [IDX_STEMS[role] + "[.gz]" for role, found in idx.items() if found is None]
            if missing:
                raise ConfigError(
                    f"{key}: the IDX folder '{source}' lacks {', '.join(missing)}. "
                    "Put all four MNIST IDX files in the folder (gzipped or not)."
                )
            return Source("idx", str(path))
        if any(path.rglob("*.parquet")):
            return Source("parquet", str(path))
        raise ConfigError(
            f"{key}: the folder '{source}' holds neither MNIST IDX files nor parquet files. "
            f"{SOURCE_FORMS_HELP}"
        )
    if path.exists():
        raise ConfigError(f"{key}: '{source}' is a file, not a folder. {SOURCE_FORMS_HELP}")
    if _looks_like_path(source):
        raise ConfigError(f"{key}: the folder '{source}' does not exist. {SOURCE_FORMS_HELP}")
    return Source("hub", source)


def _scalar(text: str, types: set[str]) -> Any:
    """``text`` read as the first of the schema's non-string ``types`` it parses as, else unchanged."""
    lowered = text.strip().lower()
    if "boolean" in types and lowered in ("true", "false"):
        return lowered == "true"
    if "null" in types and lowered in ("null", "~", ""):
        return None
    for kind, parse in (("integer", int), ("number", float)):
        if kind in types:
            try:
                return parse(text)
            except ValueError:
                continue
    return text


def _properties(schema: dict[str, Any], branch: str | None = None) -> dict[str, Any]:
    """The properties a mapping may have: the schema's own and those of its ``if``/``then`` branches.

    With ``branch``, only the branch whose ``if`` names that value of its
    discriminating key (a sampler's ``kernel``, a schedule's ``kind``).
    """
    found = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        condition = part.get("if", {}).get("properties", {})
        values = [c.get("const") for c in condition.values()]
        if branch is None or branch in values:
            found.update(part.get("then", {}).get("properties", {}))
    return found


def _foreign_keys(entry: dict[str, Any], schema: dict[str, Any], discriminator: str, where: str) -> None:
    """Raise ConfigError for a key that the ``discriminator``'s value (kernel, schedule kind) does not take."""
    value = entry.get(discriminator)
    allowed = schema["properties"][discriminator].get("enum", [])
    if value not in allowed:
        raise ConfigError(f"{where}.{discriminator}: unknown {discriminator} {value!r}; choose one of {', '.join(allowed)}.")
    own = _properties(schema, value)
    for key in entry:
        if key not in own:
            others = sorted(v for v in allowed if key in _properties(schema, v))
            has = f" ({', '.join(others)} {'have' if len(others) > 1 else 'has'} it)" if others else ""
            raise ConfigError(
                f"{where}: '{key}' is not a setting of {discriminator} {value}, which takes "
                f"{', '.join(sorted(own))}. Remove it, or choose a {discriminator} that takes it{has}."
            )


def check_sampler_keys(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """Before the schema's own check: name a sampler's key that its kernel (or its schedule's kind) does not take."""
    entry_schema = schema["properties"]["samplers"]["additionalProperties"]
    for name, entry in (config.get("samplers") or {}).items():
        if not isinstance(entry, dict):
            continue  # the schema says what is wrong
        _foreign_keys(entry, entry_schema, "kernel", f"samplers.{name}")
        if isinstance(entry.get("schedule"), dict):
            _foreign_keys(entry["schedule"], entry_schema["properties"]["schedule"], "kind", f"samplers.{name}.schedule")


def schema_path() -> Path:
    """The config schema of this checkout (workflow/schemas/config.schema.yaml)."""
    return Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path: str | None = None) -> dict[str, Any]:
    """The config schema at ``path`` (default :func:`schema_path`) with the kernels' part filled in (see
    :func:`with_kernels`): a copy of what this process read first.

    A copy, because validation fills defaults into a config by reference. Parsed once per process, with
    libyaml's parser where PyYAML has it (the same objects: the resolver is the same), about 7x faster:
    reading the Snakefile would otherwise parse it three times in every Snakemake process."""
    import copy

    return copy.deepcopy(_parsed_schema(str(path or schema_path())))


@functools.lru_cache(maxsize=4)
def _parsed_schema(path: str) -> dict[str, Any]:
    import yaml

    return with_kernels(yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def with_kernels(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (the file's, changed in place) with what the kernel modules declare (bnn_sgmcmc.kernels): the
    samplers' ``kernel`` enum, an ``if``/``then`` block of its own keys per kernel, and the reference block's
    ``hmc`` keys, there without their defaults (where the block leaves one out, the kernel's applies)."""
    from bnn_sgmcmc import kernels

    entry = schema["properties"]["samplers"]["additionalProperties"]
    entry["properties"]["kernel"]["enum"], entry["allOf"] = kernels.schema_blocks()
    reference = next(b for b in schema["properties"]["reference"]["anyOf"] if b.get("type") == "object")
    for key, prop in kernels.settings_schema("hmc").items():
        default = prop.pop("default")
        prop["description"] += f" Default: the hmc kernel's, {default}."
        reference["properties"][key] = prop
    return schema


def _validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema validator that fills each mapping's defaults in place as it goes, as Snakemake's does."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties(validator, props, value, subschema):
        if isinstance(value, dict):
            for key, sub in props.items():
                if "default" in sub:
                    value.setdefault(key, sub["default"])
        yield from check_properties(validator, props, value, subschema)

    return jsonschema.validators.extend(base, {"properties": properties})(schema)


def with_defaults(instance: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """``instance`` validated against ``schema`` (default: the config schema), its defaults filled in place.

    The same defaults as Snakemake's ``validate``, for code that builds a
    config without the workflow (the benchmark, the tests). Defaults live only
    in the schema.
    """
    if schema is None:
        schema = load_schema()
    _validator(schema).validate(instance)
    return instance


#: The largest count (steps, chains, images, bins) the programs hold: JAX counts in 32-bit integers.
INT32_MAX = 2**31 - 1
#: Integers that may be larger: seeds, which JAX and HDF5 take up to 64 bits (the schema bounds them).
WIDE_INTEGERS = ("seed", "data.synthetic.seed", "data.subset.seed")


def _check_numbers(value: Any, where: str) -> None:
    """Raise ConfigError at the first NaN or infinity anywhere in ``value`` (JSON Schema's bounds let them
    pass), or at the first integer beyond what the programs' 32-bit counters hold (but seeds)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where or 'config'}: {value} is not a finite number; give a finite value.")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT32_MAX and where not in WIDE_INTEGERS:
        raise ConfigError(f"{where}: {value} is beyond {INT32_MAX}, the largest count the programs' 32-bit "
                          "integers hold; lower it.")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        _check_numbers(item, f"{where}.{key}" if where else str(key))


def check_schema(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """Validate ``config`` against the schema, filling defaults; raise ConfigError whose first words are the key.

    Snakemake's ``validate`` says what is wrong after a dump of the whole
    schema branch (100 lines for a misspelt ``sampling`` key); this says
    ``sampling.chians: unknown key (allowed: batch_size, ...)`` in one line.
    """
    import jsonschema

    _check_numbers(config, "")
    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(config))
    if error is None:
        return
    where = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed)
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{key}: unknown key (allowed: {', '.join(allowed)}).")
    raise ConfigError(f"{where or 'config'}: {error.message}.")


def sampler_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """One sampler's config entry with the schema's defaults for its kernel and schedule filled in."""
    import copy

    schema = load_schema()
    check_sampler_keys({"samplers": {"sampler": entry}}, schema)
    return with_defaults(copy.deepcopy(entry), schema["properties"]["samplers"]["additionalProperties"] | {
        "$schema": schema["$schema"]})


def coerce(value: Any, schema: dict[str, Any]) -> Any:
    """Give strings the numeric or boolean type the schema asks for, in place where nested.

    Snakemake reads a nested ``--config`` mapping as YAML without typing its
    scalars: ``--config sampling='{chains: 8}'`` gives ``{'chains': '8'}``,
    which the schema would reject although the user wrote a number.
    """
    for branch in schema.get("anyOf", []):  # null or an object (the reference block)
        kind = branch.get("type")
        if (isinstance(value, dict) and kind == "object") or (isinstance(value, str) and kind == "null"
                                                                and value.strip() in ("null", "~")):
            return coerce(value, branch)
    types = schema.get("type", [])
    types = {types} if isinstance(types, str) else set(types)
    if isinstance(value, str) and "string" in types:
        return None if "null" in types and value.strip() in ("null", "~") else value
    if isinstance(value, str) and types & {"integer", "number", "boolean", "null"}:
        return _scalar(value, types)
    if isinstance(value, dict):
        properties, extra = _properties(schema), schema.get("additionalProperties")
        for key in value:
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = coerce(value[key], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value[:] = [coerce(v, schema["items"]) for v in value]
    return value


def idx_image_shape(path: Path) -> tuple[int, ...]:
    """The image shape in an IDX images file's header (gzipped or not), read without loading the images."""
    return idx_dims(path)[1:]


def idx_dims(path: Path) -> tuple[int, ...]:
    """The dimensions in an IDX file's header (gzipped or not): count first, read without loading the data."""
    import gzip
    import struct

    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    with (gzip.open if gzipped else open)(path, "rb") as fh:
        header = fh.read(4)
        if len(header) < 4 or header[:2] != b"\x00\x00":
            raise ConfigError(f"{path} is not an IDX file (bad magic number).")
        ndim = header[3]
        dims = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
    return tuple(dims)


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
    subset = (data_config.get("subset") or {}).get(split)
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


def report_destination(argv: list[str]) -> Path | None:
    """The file a ``snakemake`` command line (``sys.argv``) has ``--report`` (or the HTML reporter's
    ``--report-html-path``) write; None for a command that writes no report, or that is not Snakemake's.

    Snakemake writes it after building the DAG (with ``--report-after-run``, after the whole run) and meets a
    destination it cannot write with its own traceback, so the Snakefile checks it first. The line is read
    with Snakemake's own parser, abbreviations and ``--report`` without a value included."""
    program = Path(argv[0]) if argv else Path()
    if program.name != "snakemake" and program.parent.name != "snakemake":  # the script, or python -m snakemake
        return None
    # Every option Snakemake would take for these starts so ("--rep" is ambiguous): the parser only then.
    if not any(arg.startswith("--repo") for arg in argv[1:]):
        return None
    from snakemake.cli import get_argument_parser

    try:
        args, _ = get_argument_parser().parse_known_args(argv[1:])
    except SystemExit:  # a line Snakemake itself refused: not this check's to report
        return None
    # The plugin's option is dataclasses.MISSING where it is not given.
    found = args.report or getattr(args, "report_html_path", None)
    return Path(found) if isinstance(found, (str, os.PathLike)) and str(found) else None


def check(config: dict[str, Any]) -> None:
    """Check what the schema cannot; raise ConfigError naming the key and the fix."""
    from bnn_sgmcmc import kernels

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
    _known_size(config["data"], "test")  # a test subset beyond the source's size stops here too
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
        if "shards" in entry:
            _check_shards(sampler_sampling(sampling, entry), f"samplers.{name}", chains="sampling.chains")
        kernels.check(entry["kernel"], entry, sampler_sampling(sampling, entry), f"samplers.{name}")
        check_schedule(name, entry["schedule"], sampling)


#: The reference posterior's name in every path and table where a sampler's name would be.
REFERENCE = "reference"


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
    keys = ("step_size", "num_integration_steps", "target_acceptance", "divergence_threshold", "matmul_precision")
    return sampler_settings({"kernel": "hmc", **{k: ref[k] for k in keys if k in ref}})


def reference_sampling(config: dict[str, Any]) -> dict[str, Any]:
    """The reference's ``sampling`` block: its own steps, thinning and chunks; batch_size stays the samplers'
    (HMC takes the whole training set; batch_size only sets the unit its gradients are counted in)."""
    ref = config["reference"]
    own = ("warmup_steps", "sampling_steps", "thinning", "eval_every", "chains", "shards")
    return dict(config["sampling"]) | {k: ref[k] for k in own} | {"save_weights_every": 0}


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


def sampler_sampling(sampling: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A sampler's ``sampling`` block: the config's, with the sampler's own ``shards`` where it sets one."""
    return dict(sampling) | ({"shards": entry["shards"]} if "shards" in entry else {})


def kernel_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """A sampler's entry without what only places its jobs (``shards``): what its kernel and results depend on."""
    return {k: v for k, v in entry.items() if k != "shards"}


def _nothing_kept(block: dict[str, Any], where: str) -> ConfigError:
    """A run (``sampling`` or ``reference``) whose thinning exceeds its sampling steps keeps nothing."""
    return ConfigError(
        f"{where}.thinning = {block['thinning']} exceeds {where}.sampling_steps = {block['sampling_steps']}: no "
        "sample would be kept. Lower thinning or raise sampling_steps."
    )


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
