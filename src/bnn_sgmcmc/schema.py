"""The workflow configuration's schema: loaded with the kernels' part, and checked with one-line errors.

``workflow/schemas/config.schema.yaml``, with each kernel's keys from its
module (:func:`load_schema`), gives every key's type, range, allowed values and
default. This module loads it, types the strings of a nested ``--config``
mapping (:func:`coerce`), names a key that a sampler's kernel does not take
(:func:`check_sampler_keys`), and validates a config, filling in its defaults
(:func:`check_schema`, :func:`with_defaults`, :func:`sampler_settings`). The
checks that JSON Schema cannot express are ``bnn_sgmcmc.config``'s. The
Snakefile imports this module, in whatever environment Snakemake itself runs
in: it imports the standard library, and Snakemake's own dependencies (PyYAML,
jsonschema) where it needs them, never JAX.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from bnn_sgmcmc.errors import ConfigError


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
    # A kernel's own defaults of the common keys (kernels.entry_defaults) come in before the schema's, and
    # before ``required`` looks: the validator takes an object's keywords in order.
    entry[KERNEL_DEFAULTS] = True
    entry["required"] = entry.pop("required")
    reference = next(b for b in schema["properties"]["reference"]["anyOf"] if b.get("type") == "object")
    for key, prop in kernels.settings_schema("hmc").items():
        default = prop.pop("default")
        prop["description"] += f" Default: the hmc kernel's, {default}."
        reference["properties"][key] = prop
    return schema


#: The mark of the schema of a sampler's entry (an annotation, which JSON Schema ignores): where the validator
#: fills in the entry's kernel's own defaults (bnn_sgmcmc.kernels.entry_defaults) before the schema's.
KERNEL_DEFAULTS = "x-kernel-defaults"


def _validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema validator that fills each mapping's defaults in place as it goes, as Snakemake's does; in a
    sampler's entry, its kernel's own defaults first."""
    import jsonschema

    from bnn_sgmcmc import kernels

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties(validator, props, value, subschema):
        if isinstance(value, dict) and subschema.get(KERNEL_DEFAULTS) and isinstance(value.get("kernel"), str):
            for key, default in kernels.entry_defaults(value["kernel"]).items():
                value.setdefault(key, default)
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
    if error.validator == "maxLength" and isinstance(error.instance, str):
        what = "the sampler name" if where == "samplers" else "the value"
        why = " (it becomes part of file names)" if where == "samplers" else ""
        raise ConfigError(f"{where or 'config'}: {what} '{error.instance}' is {len(error.instance)} characters long, "
                          f"more than the {error.validator_value} allowed{why}; shorten it.")
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


# --------------------------------------------------------------------------- docs/config.md


def _type(prop: dict[str, Any]) -> str:
    """A property's type, values and bounds in words: ``integer >= 1``, ``one of adam, sgd``, ``number or null``."""
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    types = prop.get("type") or [branch.get("type") for branch in prop.get("anyOf", [])]
    types = [types] if isinstance(types, str) else [t for t in types if t]
    text = " or ".join(types) or "any"
    if prop.get("items", {}).get("type"):
        text += f" of {prop['items']['type']}s"
    if "minItems" in prop and prop.get("minItems") == prop.get("maxItems"):
        text += f", {prop['minItems']} of them"
        prop = {k: v for k, v in prop.items() if k not in ("minItems", "maxItems")}
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"),
                      ("minItems", "items >="), ("maxItems", "items <="), ("maxLength", "length <=")):
        if key in prop:
            text += f", {sign} {prop[key]:,}" if isinstance(prop[key], int) else f", {sign} {prop[key]:g}"
    return text


def _default(prop: dict[str, Any]) -> str:
    import json

    if "default" not in prop:
        return ""
    value = prop["default"]
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return "see below"
    return f"`{json.dumps(value)}`" if not isinstance(value, str) else f"`{value}`"


def _rows(props: dict[str, Any], prefix: str, out: list[str], own_row: bool = True) -> None:
    """One table row per key under ``prefix`` (but the top key's where ``own_row`` is false), nested objects' keys
    after their own row."""
    for key, prop in props.items():
        name = f"{prefix}.{key}" if prefix else key
        description = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
        if own_row:
            out.append(f"| `{name}` | {_type(prop)} | {_default(prop)} | {description} |")
        nested = prop.get("properties") or next(
            (b.get("properties") for b in prop.get("anyOf", []) if b.get("type") == "object"), None)
        if nested:
            _rows(nested, name, out)
        for branch in prop.get("allOf", []):
            when = next(iter(branch.get("if", {}).get("properties", {}).items()), None)
            if when and branch.get("then", {}).get("properties"):
                out.append(f"| *when `{name}.{when[0]}` is `{when[1]['const']}`:* | | | |")
                _rows(branch["then"]["properties"], name, out)


def docs() -> str:
    """docs/config.md: every key of the config schema, with its type, default and description."""
    schema = load_schema()
    lines = [
        "# Configuration keys",
        "",
        "<!-- Generated by `python -m bnn_sgmcmc.schema docs` (`make docs`) from workflow/schemas/config.schema.yaml; "
        "a test fails when this page is stale. -->",
        "",
        "Every key of `config.yaml` (and of `--config` / `--configfile` overrides), its type and allowed values, "
        "its default and what it does, from the schema that checks them. A key not listed here stops the run "
        "before any job, named with the keys allowed there. A sampler's kernel takes its own keys besides those "
        "below: [kernels.md](kernels.md) lists them, generated from the kernel modules.",
    ]
    for key, prop in schema["properties"].items():
        lines += ["", f"## `{key}`", "", " ".join(str(prop.get("description", "")).split()), ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        if key == "samplers":
            entry = prop["additionalProperties"]
            defaults = ", ".join(f"`{name}` ({entry_['kernel']})" for name, entry_ in prop["default"].items())
            lines.append(f"| *default* | | | {defaults} |")
            _rows({k: v for k, v in entry["properties"].items()}, "samplers.<name>", lines)
            lines.append("| *the kernel's own keys* | | | Each kernel's, with their defaults: "
                         "[kernels.md](kernels.md). |")
        else:
            scalar = prop.get("type") != "object" and "anyOf" not in prop
            _rows({key: prop}, "", lines, own_row=scalar)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["docs"]:
        sys.exit("usage: python -m bnn_sgmcmc.schema docs > docs/config.md")
    sys.stdout.write(docs())
