"""Checks on the workflow configuration that JSON Schema cannot express.

The schema (``workflow/schemas/config.schema.yaml``) checks types, ranges and
allowed values; this module checks what depends on the outside world or on
several keys at once, such as whether a local data source exists. It imports
nothing beyond the standard library so that the Snakefile can call it before
any job runs, whatever environment Snakemake itself runs in.
"""

from __future__ import annotations

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


def coerce(value: Any, schema: dict[str, Any]) -> Any:
    """Give strings the numeric or boolean type the schema asks for, in place where nested.

    Snakemake reads a nested ``--config`` mapping as YAML without typing its
    scalars: ``--config sampling='{chains: 8}'`` gives ``{'chains': '8'}``,
    which the schema would reject although the user wrote a number.
    """
    types = schema.get("type", [])
    types = {types} if isinstance(types, str) else set(types)
    if isinstance(value, str) and "string" in types:
        return None if "null" in types and value.strip() in ("null", "~") else value
    if isinstance(value, str) and types & {"integer", "number", "boolean", "null"}:
        return _scalar(value, types)
    if isinstance(value, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key in value:
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = coerce(value[key], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value[:] = [coerce(v, schema["items"]) for v in value]
    return value


def idx_image_shape(path: Path) -> tuple[int, ...]:
    """The image shape in an IDX images file's header (gzipped or not), read without loading the images."""
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
    return tuple(dims[1:])


def check(config: dict[str, Any]) -> None:
    """Check what the schema cannot; raise ConfigError naming the key and the fix."""
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
    if sampling["shards"] > sampling["chains"]:
        raise ConfigError(
            f"sampling.shards = {sampling['shards']} exceeds sampling.chains = {sampling['chains']}: "
            "each shard needs at least one chain. Lower shards or raise chains."
        )
    every = sampling["save_weights_every"]
    if every and every % sampling["eval_every"]:
        raise ConfigError(
            f"sampling.save_weights_every = {every} must be a multiple of sampling.eval_every = "
            f"{sampling['eval_every']} (weights are read between compiled chunks)."
        )
    for name, entry in config["samplers"].items():
        if entry["kernel"] == "sghmc":
            friction = entry.get("alpha", 0.01) * entry["step_size"]
            if friction >= 1:
                raise ConfigError(
                    f"samplers.{name}: alpha x step_size = {friction:g} must be below 1, or the "
                    "momentum flips sign every step. Lower alpha or step_size."
                )
            noise = 2 * entry.get("alpha", 0.01) - entry["step_size"] * entry.get("temperature", 1.0) * entry.get("beta", 0.0)
            if noise < 0:
                raise ConfigError(f"samplers.{name}: beta is too large for alpha (negative noise variance); lower beta.")


def shard_chains(chains: int, shards: int) -> list[list[int]]:
    """Global chain indices of each shard: contiguous, sizes differing by at most one."""
    base, extra = divmod(chains, shards)
    out, start = [], 0
    for s in range(shards):
        size = base + (s < extra)
        out.append(list(range(start, start + size)))
        start += size
    return out
