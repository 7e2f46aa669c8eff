"""Conda environments agree with the pip set-up, and every rule names one."""

from __future__ import annotations

import re

import pytest
import tomllib
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def ranges() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(r.name): r for r in reqs}


def env_pins(path) -> list[Requirement]:
    spec = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
    return [Requirement(p) for p in pip]


def test_there_are_environments_for_data_sampling_cpu_and_cuda_and_reports():
    assert {p.name for p in ENVS} >= {"data.yaml", "jax.yaml", "jax-cuda.yaml", "report.yaml"}


@pytest.mark.parametrize("env", ENVS, ids=[p.name for p in ENVS])
def test_every_pin_matches_constraints_and_pyproject(env):
    pins, allowed = constraints(), ranges()
    for req in env_pins(env):
        name = canonicalize_name(req.name)
        (spec,) = req.specifier  # exactly one ==version
        assert spec.operator == "==", f"{env.name}: {req} is not pinned"
        assert pins.get(name) == spec.version, f"{env.name}: {req} but constraints.txt has {pins.get(name)}"
        if name in allowed:
            assert allowed[name].specifier.contains(spec.version), f"{env.name}: {req} outside pyproject's {allowed[name]}"


def test_every_rule_names_an_environment_a_log_and_a_script():
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)+)", smk.read_text(), re.M):
            if name == "all":
                continue
            for directive in ("conda:", "log:", "script:"):
                assert f"    {directive}" in body, f"{smk.name}: rule {name} lacks {directive}"
