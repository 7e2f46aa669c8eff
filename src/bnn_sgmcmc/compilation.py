"""JAX's persistent compilation cache, shared by every job that compiles (sampling and diagnostics), and the
threads XLA runs the sampling jobs' CPU programs on."""

from __future__ import annotations

import os
from pathlib import Path


def enable_compilation_cache(directory: str | None) -> str | None:
    """Use JAX's persistent compilation cache, so later jobs and reruns skip compiling.

    ``directory`` comes from the config; if null, ``JAX_COMPILATION_CACHE_DIR``
    or ``~/.cache/bnn_sgmcmc/jax`` is used. An empty string turns the cache off.
    """
    import jax

    if directory is None:
        directory = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(Path.home() / ".cache/bnn_sgmcmc/jax")
    if not directory:
        jax.config.update("jax_compilation_cache_dir", None)  # off, even where the environment names one
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(directory)


def use_cpu_threads(threads: int | None) -> None:
    """Run XLA's CPU programs on ``threads`` threads (``sampling.cpu_threads``); None leaves XLA's default.

    CPU results depend on the thread count (XLA splits sums among the threads), so a fixed count gives the
    same chains on machines with different numbers of cores. XLA reads it (``PJRT_NPROC``) when JAX starts
    its CPU client: a process that has already started it and runs on another count is refused.
    """
    if threads is None:
        return
    from jax._src import xla_bridge

    from bnn_sgmcmc import provenance
    from bnn_sgmcmc.errors import ConfigError

    if not xla_bridge.backends_are_initialized():
        os.environ["PJRT_NPROC"] = str(threads)
    elif (running := provenance.xla_cpu_threads()) != threads:
        raise ConfigError(
            f"sampling.cpu_threads = {threads}: this process's JAX already runs on {running} CPU threads; start a "
            "new process (as the workflow's jobs do) or set cpu_threads to null."
        )
