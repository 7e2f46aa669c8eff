"""How an output was made: package versions, host, device, time.

Every file the workflow writes carries these records (HDF5 attributes or a JSON
sidecar) next to the config values and seed that produced it.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import socket
from pathlib import Path
from typing import Any

PACKAGES = (
    "bnn-sgmcmc",
    "numpy",
    "jax",
    "jaxlib",
    "flax",
    "blackjax",
    "optax",
    "datasets",
    "h5py",
    "pandas",
    "matplotlib",
    "snakemake",
)


def versions() -> dict[str, str]:
    """Installed versions of the packages that shape the results (absent ones omitted)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def xla_cpu_threads() -> int:
    """The threads XLA's CPU client runs a program on, sized as XLA sizes them (``DefaultThreadPoolSize`` in
    xla/pjrt/utils.cc): ``PJRT_NPROC`` or ``NPROC`` where set, else the processors this process may run on.

    XLA shares a product's sums among them, so CPU results depend on this number
    (``sampling.cpu_threads`` sets it for the sampling jobs).
    """
    for name in ("PJRT_NPROC", "NPROC"):
        try:
            return max(0, int(os.environ[name]))
        except (KeyError, ValueError):
            continue
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu() -> dict[str, Any]:
    """The host processor's model and vector extensions (Linux; empty elsewhere), and XLA's CPU threads.

    XLA compiles for the processor it runs on, so the same program can round
    differently on another instruction set, and it splits sums among its
    threads: CPU results are bit-reproducible on one kind of processor with
    the same number of threads (:func:`xla_cpu_threads`), not across either.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"xla_threads": xla_cpu_threads()}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name", ""),
            "vector_extensions": sorted(f for f in flags if f.startswith(("avx", "fma", "sse4"))),
            "xla_threads": xla_cpu_threads()}


def device() -> dict[str, Any]:
    """The JAX backend and devices in use, and the host processor; only call where JAX is already needed."""
    import jax

    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device": str(devices[0]),
        "device_count": len(devices),
        "cpu": cpu(),
    }


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def record_stem(prefix: str, record: dict[str, Any]) -> str:
    """A benchmark record's file name without suffix: ``prefix-<device kind>-<created, as 2026-11-28T013607Z>``."""
    kind = str(record["device"].get("device_kind", "cpu")).replace(" ", "_")
    return f"{prefix}-{kind}-{record['created'].replace(':', '').replace('+0000', 'Z')}"


def record(**extra: Any) -> dict[str, Any]:
    """The common provenance block: time, host, platform, versions, plus ``extra``."""
    return {
        "created": now(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "versions": versions(),
        **extra,
    }
