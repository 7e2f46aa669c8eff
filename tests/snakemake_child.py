"""A Snakemake process forked from one that has already imported Snakemake (see conftest.snakemake).

A fork server imports this module once per pytest worker: Snakemake's command line and the plugins its
registries load while building the argument parser, about 1.5 s of every 1-3 s ``snakemake`` call on a 2-core
CPU. Each call then forks a child of the server, which runs :func:`main`: the call's working folder,
environment, stdout and stderr, then ``snakemake.cli.main`` with its arguments, the same code as the command
from argument parsing on. The server is a fresh interpreter, not the pytest worker (which has started JAX's
threads), so a fork copies nothing but these imports.
"""

from __future__ import annotations

import atexit
import os
import sys

import snakemake.cli
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry
from snakemake_interface_logger_plugins.registry import LoggerPluginRegistry
from snakemake_interface_report_plugins.registry import ReportPluginRegistry
from snakemake_interface_storage_plugins.registry import StoragePluginRegistry

for _registry in (ExecutorPluginRegistry, LoggerPluginRegistry, ReportPluginRegistry, StoragePluginRegistry):
    _registry()


def main(argv: list[str], cwd: str, env: dict[str, str], stdout: str, stderr: str) -> None:
    """Run ``snakemake *argv`` in ``cwd`` with ``env``, its output in the files ``stdout`` and ``stderr``; exit with
    its status (a traceback on stderr and status 1 for an exception it does not handle, as the interpreter)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, stdout), (2, stderr)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = ["snakemake", *argv]
    code = 1
    try:
        snakemake.cli.main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()  # as the interpreter does at exit: logging's handlers flushed and closed, ...
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
