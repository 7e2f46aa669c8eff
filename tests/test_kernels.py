"""The kernel registry: every module of bnn_sgmcmc.kernels declares itself, the schema, the docs and the sampler
zoo come from those declarations, and reading them needs no JAX. Each kernel's own tests (at least a known
Gaussian posterior) are in tests/kernels/test_<name>.py."""

from __future__ import annotations

import re
import subprocess
import sys

import jsonschema
import pytest
import yaml
from conftest import REPO, snakemake

from bnn_sgmcmc import kernels, schema
from bnn_sgmcmc.kernels import __main__ as registry_cli

NAMES = kernels.names()


def test_the_registry_is_the_kernel_modules_and_the_schema_takes_its_names():
    found = sorted(p.stem for p in (REPO / "src/bnn_sgmcmc/kernels").glob("*.py") if not p.stem.startswith("_"))
    assert list(NAMES) == found and {"sgld", "sghmc", "sghmc_persistent", "sgnht", "psgld", "hmc"} <= set(NAMES)
    entry = schema.load_schema()["properties"]["samplers"]["additionalProperties"]
    assert entry["properties"]["kernel"]["enum"] == list(NAMES)
    assert [block["if"]["properties"]["kernel"]["const"] for block in entry["allOf"]] == list(NAMES)
    with pytest.raises(ValueError, match=f"unknown kernel 'nuts'; the registered kernels are {', '.join(NAMES)}"):
        kernels.module("nuts")


@pytest.mark.parametrize("name", NAMES)
def test_every_kernel_declares_its_settings_cost_and_place_in_the_zoo(name):
    """SETTINGS are JSON Schema properties, each with a default the schema itself accepts and a description; none
    shadows a key every sampler takes; the gradient count is positive under the defaults and says how in its
    docstring; a kernel the default config does not run, and which takes minibatches, gives its zoo settings."""
    module = kernels.module(name)
    assert module.__doc__ and module.grad_evals_per_step.__doc__
    common = schema.load_schema()["properties"]["samplers"]["additionalProperties"]["properties"]
    for key, prop in module.SETTINGS.items():
        assert key not in common
        assert prop["description"].strip() and "default" in prop, key
        jsonschema.Draft202012Validator(prop).validate(prop["default"])
    settings = schema.sampler_settings({"kernel": name, "step_size": 1e-3})
    assert set(settings) == {"kernel", "step_size", "temperature", "schedule", *module.SETTINGS}
    # A baseline's sampling steps may cost nothing (a trained member kept, a Gaussian draw).
    assert kernels.grad_evals_per_step(name, settings) >= int(kernels.markov_chain(name))
    example = getattr(module, "EXAMPLE", None)
    if name not in registry_cli.default_kernels() and not kernels.full_batch(name) and kernels.markov_chain(name):
        assert example is not None, f"{name}: the sampler zoo needs its EXAMPLE settings"
    if example is not None:
        schema.sampler_settings({"kernel": name, **example})  # valid settings


def keeps_only_a_mode(name: str) -> bool:
    """An optimiser: one draw per chain, its trained weights (the ``map`` kernel)."""
    return not kernels.markov_chain(name) and kernels.phase_steps(name, schema.sampler_settings(
        {"kernel": name, "step_size": 1e-3}), {}).get("sampling_steps") == 1


@pytest.mark.parametrize("name", NAMES)
def test_every_kernel_has_its_own_tests_with_a_known_gaussian_posterior(name):
    """A sampler's (or a Gaussian approximation's) tests recover a known Gaussian posterior; an optimiser's find
    a known posterior's mode."""
    own = REPO / "tests/kernels" / f"test_{name}.py"
    assert own.is_file(), f"kernel {name} has no tests of its own ({own.relative_to(REPO)})"
    wanted = "test_finds_a_known_posterior_mode" if keeps_only_a_mode(name) else "test_recovers_a_gaussian_posterior"
    assert re.search(rf"^def {wanted}\(", own.read_text(), re.M), (own, wanted)


def test_the_declarations_are_read_without_jax_as_the_snakefile_reads_them():
    """The Snakefile checks the config in Snakemake's own environment, where JAX need not be installed: importing
    every kernel module, loading the schema and checking a config imports neither JAX nor BlackJAX."""
    code = (
        "import sys\n"
        "from bnn_sgmcmc import config, invocation, kernels, plan, schema, sources\n"
        "for name in kernels.names(): kernels.module(name)\n"
        "cfg = schema.with_defaults({'data': {'source': 'synthetic'}, "
        "'samplers': {n: {'kernel': n, 'step_size': 1e-3} for n in kernels.names()}})\n"
        "config.check(cfg)\n"
        "print(sorted(m for m in ('jax', 'blackjax', 'flax') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_docs_kernels_md_is_the_registrys():
    """docs/kernels.md is generated from the modules (make docs); a kernel's module changed without it fails."""
    assert (REPO / "docs/kernels.md").read_text() == registry_cli.docs(), "docs/kernels.md is stale: run make docs"


def test_the_sampler_zoo_names_every_kernel_and_schedule_and_plans_one_job_each(tmp_path):
    """config.yaml, examples/sampler-zoo.yaml and `python -m bnn_sgmcmc.kernels zoo` (as benchmarks/sampler_zoo.sh
    runs them): every SG-MCMC kernel of the registry and every schedule, one warmup and one sampling job each."""
    generated = subprocess.run([sys.executable, "-m", "bnn_sgmcmc.kernels", "zoo"], capture_output=True, text=True,
                               check=True).stdout
    (tmp_path / "zoo-kernels.yaml").write_text(generated)
    zoo = REPO / "examples/sampler-zoo.yaml"
    out = snakemake(tmp_path, "-n", configfiles=(zoo, tmp_path / "zoo-kernels.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, flags=re.M))
    merged = (yaml.safe_load((REPO / "config.yaml").read_text())["samplers"] | yaml.safe_load(zoo.read_text())["samplers"]
              | yaml.safe_load(generated)["samplers"])
    assert jobs["warmup"] == jobs["sample"] == str(len(merged))
    settings = [schema.sampler_settings(entry) for entry in merged.values()]
    # Every SG-MCMC kernel, and config.yaml's baseline; a full-batch kernel (hmc) is the reference posterior's.
    sg_mcmc = {n for n in NAMES if not kernels.full_batch(n) and kernels.markov_chain(n)}
    assert {s["kernel"] for s in settings} == sg_mcmc | registry_cli.default_kernels()
    assert {"constant", "polynomial", "cyclical"} <= {s["schedule"]["kind"] for s in settings}
