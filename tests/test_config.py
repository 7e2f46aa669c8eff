"""The config's checks that JSON Schema cannot express (bnn_sgmcmc.config): the training set's size known before
any job, bad samplers stopping the workflow before any job, and config.yaml repeating the schema's defaults. (A key
foreign to the kernel is tests/test_schema.py's; the checks of one kernel are in tests/kernels/.)"""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, snakemake

from bnn_sgmcmc import kernels, schema
from bnn_sgmcmc.errors import ConfigError

#: The end of the message for an unknown kernel: the registered ones.
UNKNOWN = f"unknown kernel 'nuts'; choose one of {', '.join(kernels.names())}"


def test_the_training_set_size_is_known_before_any_job_for_idx_and_synthetic(idx_gz_folder, base_config):
    from bnn_sgmcmc.config import known_train_size

    data = base_config["data"] | {"source": str(idx_gz_folder)}
    assert known_train_size(data) == (30, f"the IDX files in '{idx_gz_folder}'")  # from the header alone
    assert known_train_size(base_config["data"] | {"source": "synthetic"}) == (
        base_config["data"]["synthetic"]["n_train"], "data.synthetic.n_train")
    assert known_train_size(base_config["data"] | {"source": "ylecun/mnist"}) is None  # known once downloaded


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
    defaults = schema.with_defaults({})
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


def test_a_config_file_that_is_not_yaml_is_named_with_its_line(tmp_path):
    """Snakemake's own message for a tab in a config file names neither the file nor the line; `make check-config`
    (python -m bnn_sgmcmc.configfiles) names both, and says what to do; valid files merge as Snakemake merges them
    and are checked as the Snakefile checks them."""
    import subprocess
    import sys

    from bnn_sgmcmc import configfiles

    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling:\n  chains: 2\n\tshards: 2\n")
    out = subprocess.run([sys.executable, "-m", "bnn_sgmcmc.configfiles", str(REPO / "config.yaml"), str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == (
        f"ERROR: {bad}, line 3, column 1: found character '\\t' that cannot start any token; YAML indents with "
        "spaces only: replace the tab with spaces.")
    assert configfiles.merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": 3}, "d": [2]}) == {"a": {"b": 3, "c": 2},
                                                                                              "d": [2]}
    small = tmp_path / "small.yaml"
    small.write_text("data: {source: synthetic}\nsampling: {chains: 2, shards: 3}\n")
    with pytest.raises(ConfigError, match="sampling.shards = 3 exceeds sampling.chains = 2"):
        configfiles.check([str(REPO / "config.yaml"), str(small)])
    small.write_text("data: {source: synthetic}\nsampling: {chains: 4}\n")
    assert configfiles.check([str(REPO / "config.yaml"), str(small)])["sampling"]["chains"] == 4
