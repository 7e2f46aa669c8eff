"""The config's checks of the samplers (bnn_sgmcmc.config): a key foreign to the kernel or the schedule, and
bad samplers stopping the workflow before any job. (The checks of one kernel are in tests/kernels/.)"""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, snakemake

from bnn_sgmcmc import config, kernels
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
        config.sampler_settings(entry)


def test_bad_samplers_stop_the_workflow_before_any_job(tmp_path, base_config):
    base_config["data"]["source"] = "synthetic"
    cases = [
        ({"bad": {"kernel": "sgld", "step_size": 1e-3, "alpha": 2.0}},
         "samplers.bad: 'alpha' is not a setting of kernel sgld"),
        ({"bad": {"kernel": "nuts", "step_size": 1e-3}}, UNKNOWN),
        ({"bad": {"kernel": "sgld", "step_size": 1e-3, "schedule": {"kind": "cyclical", "cycles": 1000, "exploration": 0.9}}},
         "samplers.bad.schedule: with 1000 cycles, exploration 0.9 and sampling.thinning 1, none of the 1000"),
    ]
    for samplers, message in cases:
        cfg = dict(base_config, samplers=samplers)
        out = snakemake(tmp_path, "-n", config=cfg)
        assert out.returncode != 0 and message in out.stdout + out.stderr, out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def _leaves(tree, path=()):
    """(path, value) of every scalar or list in a nested mapping."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, (*path, key))
    else:
        yield path, tree


def test_config_yaml_repeats_the_defaults_and_says_where_it_does_not():
    """config.yaml shows the notebook's protocol, with a comment per block; the defaults live in the schema and the
    kernel modules only. Every value it gives must equal the default, but on a line marked ``# not the default``
    (with the reason): a deliberate override."""
    text = (REPO / "config.yaml").read_text()
    overridden = {line.split(":")[0].strip() for line in text.splitlines() if "# not the default" in line}
    defaults = config.with_defaults({})
    differ = []
    for path, value in _leaves(yaml.safe_load(text)):
        default = defaults
        for key in path:
            default = default.get(key, "<no default>") if isinstance(default, dict) else "<no default>"
        if value != default and path[-1] not in overridden:
            differ.append(f"{'.'.join(path)}: {value!r}, the default {default!r}")
    assert not differ, differ
    # Every sampler the defaults run is in config.yaml, with nothing else.
    assert set(yaml.safe_load(text)["samplers"]) == set(defaults["samplers"])
