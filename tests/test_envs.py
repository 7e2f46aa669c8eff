"""Conda environments agree with the pip set-up, and every rule names one."""

from __future__ import annotations

import json
import re

import pytest
import tomllib
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def constraints(python: str) -> dict[str, str]:
    """constraints.txt's pins for Python ``python`` (major.minor): plain lines, and those whose marker it meets."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"python_version": python}):
                (spec,) = req.specifier
                pins[canonicalize_name(req.name)] = spec.version
    return pins


def env_python(path) -> str:
    """The major.minor of the environment's ``python=`` dependency."""
    spec = yaml.safe_load(path.read_text())
    (python,) = [d.split("=", 1)[1] for d in spec["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    return python


def test_constraints_pin_each_package_once_per_python_and_markers_split_only_by_version():
    """tools/merge_locks.py's output: each Python from 3.11 gets one pin per package, the core ones included,
    and the markers name nothing but the Python version."""
    lines = [Requirement(line) for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line]
    for python in ("3.11", "3.12", "3.13"):
        names = [canonicalize_name(r.name) for r in lines if r.marker is None or r.marker.evaluate({"python_version": python})]
        assert len(names) == len(set(names)), python
        assert {"jax", "jaxlib", "flax", "blackjax", "snakemake", "numpy"} <= set(names), python
    for req in lines:
        assert req.marker is None or set(re.findall(r"\w+(?= *[<>=])", str(req.marker))) == {"python_version"}, req


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
    pins, allowed = constraints(env_python(env)), ranges()
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


def test_every_report_rule_runs_on_the_submit_host():
    """report.smk's rules are small and read the gathered files: with profiles/slurm none may go to sbatch."""
    text = (REPO / "workflow/rules/report.smk").read_text()
    rules = set(re.findall(r"^rule (\w+):", text, re.M))
    block = re.search(r"^localrules:\n((?:    \w+,?\n)+)", text, re.M)
    assert block, "report.smk has no localrules block"
    local = set(re.findall(r"\w+", block.group(1)))
    assert rules and rules == local, f"not local: {sorted(rules - local)}; not rules: {sorted(local - rules)}"


def rule_environments() -> dict[str, tuple[str, list[str]]]:
    """Each rule's script (file name) and the environment files it may run in (both sampling ones for
    ``SAMPLING_ENV``), read from the rule files."""
    rules = {}
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)+)", smk.read_text(), re.M):
            script = re.search(r"^    script:\n\s+\"([^\"]+)\"", body, re.M)
            conda = re.search(r"^    conda:\n\s+(\S+)", body, re.M)
            if script and conda:
                env = conda.group(1).strip('"')
                envs = ["jax.yaml", "jax-cuda.yaml"] if env == "SAMPLING_ENV" else [env.rsplit("/", 1)[1]]
                rules[name] = (script.group(1).rsplit("/", 1)[1], envs)
    return rules


def installed_closure(requirements: list[Requirement]) -> set[str]:
    """The distributions that pip installs for ``requirements``: them and, recursively, what they require
    (markers evaluated here, with the extras asked for), as far as this environment has them."""
    from importlib import metadata

    seen: set[str] = set()
    todo = [(r, tuple(r.extras)) for r in requirements]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:  # e.g. the CUDA plugins, absent from a CPU test run
            continue
        for line in requires:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((sub, tuple(sub.extras)))
    return seen


@pytest.mark.workflow
def test_every_rules_environment_holds_what_its_job_imports(finished_run):
    """Under --sdm conda each rule runs in its env file's packages only: every module the package imported in
    that rule's job of the synthetic run (tests/import_audit) must come from a distribution the env installs."""
    import sys
    from importlib import metadata

    workdir, _ = finished_run
    records = [json.loads(p.read_text()) for p in (workdir / "import-audit").glob("*.json")]
    rules = rule_environments()
    by_script = {script: (rule, envs) for rule, (script, envs) in rules.items()}
    audited = {r["script"] for r in records}
    assert audited >= {script for script, _ in rules.values()} - {"download.py"}, "a rule's job was not audited"
    owners = metadata.packages_distributions()
    closures = {env.name: installed_closure(env_pins(env)) for env in ENVS}
    missing = set()
    for record in records:
        rule, envs = by_script[record["script"]]
        for module in record["modules"]:
            if module in sys.stdlib_module_names or module == "bnn_sgmcmc" or module not in owners:
                continue
            for env in envs:
                if not any(canonicalize_name(d) in closures[env] for d in owners[module]):
                    missing.add(f"rule {rule} imports {module} ({', '.join(owners[module])}), which envs/{env} lacks: "
                                f"add its constraints.txt pin to the env's pip list")
    assert not missing, "\n".join(sorted(missing))


def test_the_import_audit_sees_lazy_imports_and_only_the_packages_own(tmp_path):
    """The recorder notes what bnn_sgmcmc imports, in a function too, and not what its libraries import."""
    import os
    import subprocess
    import sys

    script = tmp_path / ".snakemake" / "scripts" / "tmpab12.report_diagnostics.py"
    script.parent.mkdir(parents=True)
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'src')!r})\n"
        "import json\n"  # the script's own imports are not the package's
        "import numpy as np\n"
        "from bnn_sgmcmc import diagnostics\n"
        "diagnostics.rhat(np.random.default_rng(0).normal(size=(2, 8, 1)))\n"  # imports jax inside a function
    )
    env = os.environ | {"BNN_IMPORT_AUDIT": str(tmp_path), "PYTHONPATH": str(REPO / "tests/import_audit")}
    subprocess.run([sys.executable, str(script)], check=True, env=env)
    (record,) = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert record["script"] == "report_diagnostics.py"
    assert {"numpy", "jax", "blackjax"} <= set(record["modules"])
    assert "json" not in record["modules"] and "jaxlib" not in record["modules"]  # jax's import, not ours
