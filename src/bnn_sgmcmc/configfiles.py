"""Config files read as Snakemake reads them, with the file and line of what is wrong.

Snakemake reads ``--configfile`` files before the Snakefile runs, and a file
that is not valid YAML stops it with "Config file is not valid JSON or YAML"
and neither the file (one of several, perhaps) nor the line. This checks the
files first:

    python -m bnn_sgmcmc.configfiles config.yaml examples/reference.yaml     (make check-config FILES="...")

Each file is parsed on its own (a YAML error names the file, line and column,
and what to do about a tab); the files are then merged in order, as Snakemake
merges them (a later file's mapping updates an earlier one's, key by key),
and the result is checked as the Snakefile checks it: the schema, its
defaults, and the checks across keys. One line says what is wrong, or that
the config is valid.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

from bnn_sgmcmc.errors import ConfigError


def load(path: str | Path) -> dict[str, Any]:
    """One config file's mapping; a ConfigError naming the file, line and column of a YAML error."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it ({err.strerror}); check the path.") from err
    try:
        loaded = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = " ".join(str(err.problem or err.context or "not valid YAML").split())
        lines = text.splitlines()
        line = lines[mark.line] if mark and mark.line < len(lines) else ""
        hint = "YAML indents with spaces only: replace the tab with spaces" if "\t" in line else "fix the YAML there"
        raise ConfigError(f"{where}: {problem}; {hint}.") from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file holds a mapping of keys (seed: 0, samplers: ...), not a "
                          f"{type(loaded).__name__}.")
    return loaded


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` merged into ``base`` as Snakemake merges config files: mappings key by key, the rest replaced."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check(paths: list[str]) -> dict[str, Any]:
    """The files' merged config, checked as the Snakefile checks it (its defaults filled in)."""
    from bnn_sgmcmc import config, schema

    merged: dict[str, Any] = {}
    for path in paths:
        merged = merge(merged, load(path))
    loaded = schema.load_schema()
    schema.check_sampler_keys(merged, loaded)
    schema.check_schema(merged, loaded)
    config.check(merged)
    return merged


def main(argv: list[str] | None = None) -> int:
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m bnn_sgmcmc.configfiles CONFIG.yaml [MORE.yaml ...]", file=sys.stderr)
        return 2
    try:
        check(paths)
    except ConfigError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(f"{' + '.join(paths)}: a valid config.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
