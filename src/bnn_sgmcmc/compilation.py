"""JAX's persistent compilation cache, shared by every job that compiles (sampling and diagnostics), the
threads XLA runs the sampling jobs' CPU programs on, and how XLA autotunes their GPU matrix products."""

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


#: ``sampling.gpu_autotuning``: the XLA flags of each policy. XLA autotunes every distinct matrix shape of a
#: GPU program when it compiles it (most of a program's 4 to 9 s compile on an H100, docs/benchmarks-history.md).
GPU_AUTOTUNING: dict[str, tuple[str, ...]] = {
    "default": (),  # XLA's: cuBLAS's algorithms and XLA's Triton matrix-product kernels
    "cublas": ("--xla_gpu_enable_triton_gemm=false",),  # cuBLAS's algorithms only
    "none": ("--xla_gpu_autotune_level=0",),  # no autotuning: XLA's first choice
}


def use_gpu_autotuning(policy: str | None) -> tuple[str, ...]:
    """Autotune a sampling job's GPU matrix products as ``sampling.gpu_autotuning`` says; return its flags.

    XLA reads ``XLA_FLAGS`` when JAX starts its first backend, so the flags go
    there before; a process that has already started JAX without them is
    refused. A CPU ignores them. Measured on an H100 (2026-11-26, the
    benchmark's programs): ``cublas`` compiled in 1.9 to 2.8 s against 3.2 to
    4.9 s, SGLD ran as fast and SGHMC 25 % slower; ``none`` ran 1.5 to 4 times
    slower.
    """
    flags = GPU_AUTOTUNING[policy or "default"]
    current = os.environ.get("XLA_FLAGS", "").split()
    missing = [f for f in flags if f not in current]
    if not missing:
        return flags
    from jax._src import xla_bridge

    from bnn_sgmcmc.errors import ConfigError

    if xla_bridge.backends_are_initialized():
        raise ConfigError(
            f"sampling.gpu_autotuning = {policy}: this process's JAX started without {' '.join(missing)} in "
            "XLA_FLAGS; start a new process (as the workflow's jobs do) or set gpu_autotuning to default."
        )
    os.environ["XLA_FLAGS"] = " ".join([*current, *missing])
    return flags
