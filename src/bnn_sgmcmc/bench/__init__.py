"""Benchmarks of the package's programs, one command each, and the record they write.

* ``python -m bnn_sgmcmc.bench`` (:mod:`bnn_sgmcmc.bench.speed`): the reference
  notebook's loop against this package's fused sampler;
* ``python -m bnn_sgmcmc.bench.evaluation``: one matrix shape for every
  evaluation set against one per set;
* ``python -m bnn_sgmcmc.bench.function_space``: what the function-space
  diagnostics cost;
* ``python -m bnn_sgmcmc.bench.precision``: what each of the hmc kernel's
  ``matmul_precision`` values costs;
* ``python -m bnn_sgmcmc.bench.reference``: which exact-gradient kernel and
  trajectory length the reference posterior should use.

Each writes its JSON record through :func:`write_record`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def write_record(folder: str | os.PathLike, prefix: str, record: dict[str, Any]) -> Path:
    """Write a benchmark's JSON ``record`` to ``folder/<provenance.record_stem(prefix, record)>.json``; return the path."""
    from bnn_sgmcmc import h5io, provenance

    path = Path(folder) / f"{provenance.record_stem(prefix, record)}.json"
    h5io.write_json(path, record)
    return path
