"""What verifying files on read costs a finished run: the SHA-256 of what each job reads, over the run's time.

    python benchmarks/verify_cost.py WORKDIR SNAKEMAKE_LOG

WORKDIR is a finished run's working folder, SNAKEMAKE_LOG the log of the run that made it (under
WORKDIR/.snakemake/log/). For every job the log lists, each HDF5 input is digested as its reader verifies it
(every dataset of a warmup or predictive file but a report's skipped function-space draws, the splits of the
data file that the job reads), timed, and summed; against the run's elapsed time in the log. It prints one
line per file kind and the total.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from pathlib import Path

import h5py

from bnn_sgmcmc import h5io


def digest_seconds(path: Path, skip: tuple[str, ...] = (), splits: tuple[str, ...] | None = None) -> float:
    """Seconds to read and digest the datasets a reader of ``path`` checks (the reading itself left out)."""
    seconds = 0.0
    with h5py.File(path, "r") as f:
        names = []
        f.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        for name in names:
            top = name.split("/", 1)[0]
            if top in skip or (splits is not None and top not in splits):
                continue
            value = f[name][...]
            start = time.perf_counter()
            h5io.array_digest(value)
            seconds += time.perf_counter() - start
    return seconds


def main(workdir: str, log: str) -> None:
    text = Path(log).read_text()
    jobs = re.findall(r"rule (\w+):\n    input: ([^\n]*)", text)
    elapsed = re.search(r"Elapsed time: (\d+):(\d+):(\d+)", text)
    run_seconds = int(elapsed.group(1)) * 3600 + int(elapsed.group(2)) * 60 + int(elapsed.group(3))
    spent, reads = Counter(), Counter()
    cache: dict[tuple, float] = {}
    for rule, inputs in jobs:
        for name in (p.strip() for p in inputs.split(",")):
            if not name.endswith(".h5"):
                continue
            kind = "data" if "/data/" in name else "warmup" if name.endswith("warmup.h5") else "predictive"
            # Warmup and sampling jobs read both data splits; report jobs the test split and no draws.
            key = (name, rule in ("warmup", "sample", "gather", "diagnostics"))
            if key not in cache:
                full = key[1]
                cache[key] = digest_seconds(Path(workdir) / name, skip=() if full else ("draws",),
                                            splits=None if full or kind != "data" else ("test",))
            spent[kind] += cache[key]
            reads[kind] += 1
    # Each file is digested once more when it is written (checkpoints aside: about one a minute a job).
    spent["writing"] = sum(digest_seconds(path) for path in (Path(workdir) / "results").rglob("*.h5"))
    reads["writing"] = len(list((Path(workdir) / "results").rglob("*.h5")))
    total = sum(spent.values())
    for kind in spent:
        print(f"{kind}: {reads[kind]} {'files' if kind == 'writing' else 'reads'}, {spent[kind]:.2f} s of SHA-256")
    print(f"total: {total:.2f} s over the run's {run_seconds} s ({100 * total / run_seconds:.2f} %)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
