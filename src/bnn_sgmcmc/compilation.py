"""JAX's persistent compilation cache, shared by every job that compiles: sampling and diagnostics."""

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
