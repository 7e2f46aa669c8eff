"""The config schema (bnn_sgmcmc.schema): read once with the kernels' part, nested strings typed, and a key
foreign to a sampler's kernel or schedule named in one line."""

from __future__ import annotations

import pytest
from conftest import REPO

from bnn_sgmcmc import kernels, schema
from bnn_sgmcmc.errors import ConfigError

#: The end of the message for an unknown kernel: the registered ones.
UNKNOWN = f"unknown kernel 'nuts'; choose one of {', '.join(kernels.names())}"


@pytest.mark.parametrize("entry, match", [
    ({"kernel": "sgld", "step_size": 1e-3, "alpha": 2.0},
     r"samplers.sampler: 'alpha' is not a setting of kernel sgld.*\(sghmc, sghmc_persistent, sgnht have it\)"),
    ({"kernel": "psgld", "step_size": 1e-3, "num_integration_steps": 3},
     r"'num_integration_steps' is not a setting of kernel psgld.*\(hmc, sghmc, sghmc_persistent have it\)"),
    ({"kernel": "nuts", "step_size": 1e-3}, UNKNOWN),
    ({"kernel": "sgld", "step_size": 1e-3, "schedule": {"kind": "constant", "gamma": 0.6}},
     r"'gamma' is not a setting of kind constant.*\(polynomial has it\)"),
])
def test_a_key_foreign_to_the_kernel_or_schedule_is_named(entry, match):
    with pytest.raises(ConfigError, match=match):
        schema.sampler_settings(entry)


def test_the_schema_is_read_once_and_each_caller_gets_its_own_copy():
    """load_schema parses with libyaml where PyYAML has it: the same objects as yaml.safe_load; and since
    validation fills defaults into a config by reference, a change to one copy reaches no other."""
    import yaml

    path = REPO / "workflow/schemas/config.schema.yaml"
    expected = schema.with_kernels(yaml.safe_load(path.read_text()))  # the file's, with the kernel modules' part
    assert schema.load_schema() == expected == schema.load_schema(str(path))
    first = schema.with_defaults({"samplers": {"s": {"kernel": "sgld", "step_size": 1e-4}}})
    first["shift"]["rotations"].append(45)
    first["sampling"]["batch_size"] = 7
    second = schema.with_defaults({"samplers": {"s": {"kernel": "sgld", "step_size": 1e-4}}})
    assert 45 not in second["shift"]["rotations"] and second["sampling"]["batch_size"] != 7
    assert schema.load_schema() == expected


def test_nested_config_strings_get_the_schemas_types():
    """`--config sampling='{chains: 8}'` reaches the Snakefile as '8': coerce types it, and only where the schema asks."""
    from bnn_sgmcmc.schema import coerce, load_schema

    schema = load_schema()  # as the Snakefile: the file's, with the kernels' own keys
    config = {
        "seed": "3",
        "data": {"source": "123", "image_shape": ["28", "28"]},
        "sampling": {"chains": "8", "compilation_cache": "null", "eval_every": "ten"},
        "samplers": {"mine": {"kernel": "sgld", "step_size": "4.5e-5"},
                     "hot": {"kernel": "sghmc", "step_size": "1e-3", "num_integration_steps": "5"}},
    }
    coerce(config, schema)
    assert config["seed"] == 3 and config["data"]["source"] == "123"  # a string stays a string
    assert config["data"]["image_shape"] == [28, 28]
    assert config["sampling"]["chains"] == 8 and config["sampling"]["compilation_cache"] is None
    assert config["sampling"]["eval_every"] == "ten"  # left for the schema to reject by name
    assert config["samplers"]["mine"]["step_size"] == pytest.approx(4.5e-5)
    assert config["samplers"]["hot"]["num_integration_steps"] == 5  # a kernel's own key, typed too


def _schema_keys(props: dict, prefix: str = "") -> list[str]:
    """Every key path of a schema's properties, into nested objects, an object branch of anyOf and if/then blocks
    (a sampler's entry as samplers.<name>)."""
    keys = []
    for key, prop in props.items():
        name = f"{prefix}.{key}" if prefix else key
        keys.append(name)
        if key == "samplers" and not prefix:
            keys += _schema_keys(prop["additionalProperties"]["properties"], "samplers.<name>")
            continue
        nested = prop.get("properties") or next(
            (b.get("properties") for b in prop.get("anyOf", []) if b.get("type") == "object"), None)
        keys += _schema_keys(nested or {}, name)
        for branch in prop.get("allOf", []):
            keys += _schema_keys(branch.get("then", {}).get("properties", {}), name)
    return keys


def test_docs_config_md_is_the_schemas_and_names_every_key():
    """docs/config.md is generated from the schema (make docs), the single source of the keys and their defaults:
    a schema changed without it fails, and every key path of the schema has its row."""
    page = (REPO / "docs/config.md").read_text()
    assert page == schema.docs(), "docs/config.md is stale: run make docs"
    keys = _schema_keys(schema.load_schema()["properties"])
    assert len(keys) > 60 and "samplers.<name>.schedule.exploration" in keys and "reference.target_acceptance" in keys
    missing = [key for key in keys if f"`{key}`" not in page and key not in ("samplers",)]
    assert not missing, missing
