"""Compare two finished runs of the workflow: every HDF5 dataset bit for bit, every table cell but timings.

    python tools/compare_results.py RUN_A RUN_B

RUN_A and RUN_B are working directories (each with a results/ folder), say the tests' synthetic workflow run
before and after a refactor. Prints each difference (datasets, the files' attributes, table cells) and exits
1 if any differs. Attributes and table columns that record when or how fast something ran (seconds,
timestamps, versions, the device) are not compared, nor are figures (drawn from what the tables hold).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

#: Table columns and attribute names that measure time or describe the machine, not the results.
TIMING = {"seconds", "second", "wall", "created", "fetched", "host", "versions", "device", "compile", "elapsed"}


def _timing(name: str) -> bool:
    return bool(TIMING & set(re.split(r"[/_.]", name.lower())))


def datasets(path: Path) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if not _timing(k)}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def attributes(path: Path) -> dict[str, Any]:
    """The file's root attributes as h5io reads them (JSON ones decoded), but timings and the machine."""
    from bnn_sgmcmc import h5io

    with h5py.File(path, "r") as f:
        return _without_timings(h5io.read_attrs(f))


def compare_h5(a: Path, b: Path) -> list[str]:
    da, db = datasets(a), datasets(b)
    problems = [f"{a}: dataset {n} only in one run" for n in sorted(set(da) ^ set(db))]
    aa, ab = attributes(a), attributes(b)
    problems += [f"{a}: attribute {k} differs: {aa.get(k)!r} / {ab.get(k)!r}"[:400]
                 for k in sorted(set(aa) | set(ab)) if repr(aa.get(k)) != repr(ab.get(k))]
    for name in sorted(set(da) & set(db)):
        if _timing(name):
            continue
        x, y = da[name], db[name]
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            problems.append(f"{a}: {name} differs")
    return problems


def compare_tsv(a: Path, b: Path) -> list[str]:
    ta, tb = pd.read_csv(a, sep="\t", dtype=str), pd.read_csv(b, sep="\t", dtype=str)
    if list(ta.columns) != list(tb.columns) or ta.shape != tb.shape:
        return [f"{a}: columns or shape differ"]
    keep = [c for c in ta.columns if not _timing(c)]
    # Rows in the order of their results: a table ranked by a timing (ESS per second) may list them in another.
    ta, tb = (t[keep].fillna("").sort_values(keep, kind="stable").reset_index(drop=True) for t in (ta, tb))
    differ = ~(ta == tb)
    return [f"{a}: column {c} differs in {int(differ[c].sum())} rows" for c in keep if differ[c].any()]


def main(argv: list[str]) -> int:
    run_a, run_b = (Path(p) / "results" for p in argv)
    files = sorted(p.relative_to(run_a) for p in run_a.rglob("*") if p.suffix in (".h5", ".tsv"))
    problems, compared = [], 0
    for rel in files:
        other = run_b / rel
        if not other.exists():
            problems.append(f"{rel}: missing from {run_b}")
            continue
        problems += (compare_h5 if rel.suffix == ".h5" else compare_tsv)(run_a / rel, other)
        compared += 1
    extra = sorted(p.relative_to(run_b) for p in run_b.rglob("*") if p.suffix in (".h5", ".tsv")
                   and not (run_a / p.relative_to(run_b)).exists())
    problems += [f"{rel}: only in {run_b}" for rel in extra]
    print("\n".join(problems) or f"{compared} files compared: every dataset and table cell (but timings) identical")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
