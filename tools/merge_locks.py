"""Merge ``pip freeze`` outputs, one per Python version, into one constraints file.

    python tools/merge_locks.py 3.11.txt 3.12.txt > constraints.txt

Each file is named for the interpreter's ``major.minor``. A pin that every
version shares is written plain; one that differs (JAX 0.11 and newer need
Python 3.12) is written once per run of versions with the same pin, with a
``python_version`` marker, which pip evaluates: every interpreter installs
the newest set that it can run.
"""

from __future__ import annotations

import sys
from pathlib import Path


def read_freeze(path: Path) -> dict[str, str]:
    """``{name: version}`` of the ``name==version`` lines of a ``pip freeze`` output."""
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip()] = version.strip()
    return pins


def merge(freezes: dict[str, dict[str, str]]) -> list[str]:
    """Constraint lines for ``{python_version: pins}``, sorted by name, case-insensitively."""
    versions = sorted(freezes, key=lambda v: tuple(int(p) for p in v.split(".")))
    names = sorted({name for pins in freezes.values() for name in pins}, key=str.lower)
    lines = []
    for name in names:
        pins = [freezes[v].get(name) for v in versions]
        if None not in pins and len(set(pins)) == 1:
            lines.append(f"{name}=={pins[0]}")
            continue
        start = 0
        while start < len(versions):
            end = start
            while end + 1 < len(versions) and pins[end + 1] == pins[start]:
                end += 1
            if pins[start] is not None:
                bounds = [f'python_version >= "{versions[start]}"'] if start > 0 else []
                bounds += [f'python_version < "{versions[end + 1]}"'] if end + 1 < len(versions) else []
                lines.append(f"{name}=={pins[start]} ; {' and '.join(bounds)}")
            start = end + 1
    return lines


def main(paths: list[str]) -> None:
    if not paths:
        sys.exit("usage: merge_locks.py MAJOR.MINOR.txt [MAJOR.MINOR.txt ...]")
    freezes = {Path(p).name.removesuffix(".txt"): read_freeze(Path(p)) for p in paths}
    print("\n".join(merge(freezes)))


if __name__ == "__main__":
    main(sys.argv[1:])
