"""Logging for workflow jobs: everything into the rule's log, warnings and the one-line error on the console too."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bnn_sgmcmc.errors import USER_ERRORS, os_error_fields


def process_seconds() -> float | None:
    """Seconds since this process started, from Linux's /proc (10 ms resolution); None where there is none.

    What a job spends before its own code runs (Python, Snakemake's script
    preamble, imports) is invisible from inside it otherwise.
    """
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # Field 22 of /proc/self/stat, counted after the command name, which may hold spaces.
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


#: What to do when the file system refuses a write, by errno.
_NO_ACCESS = "give your user write access to {folder} (ls -ld {folder}) or run in a folder you own, then rerun"
FILE_SYSTEM_ADVICE = {
    errno.EACCES: _NO_ACCESS,
    errno.EPERM: _NO_ACCESS,
    errno.EROFS: "that file system is read-only: run the workflow in a writable folder",
    errno.ENOSPC: "the disk is full: free space on it (df -h {folder}), then rerun",
    errno.EDQUOT: "your disk quota is used up: free space (or ask for more), then rerun",
}


def file_system_message(err: BaseException) -> str | None:
    """One line for a write the file system refused (permissions, read-only, full), naming the path and what
    to do; None for any other error. h5py's errors carry the C library's errno and path in their text."""
    for cause in (err, err.__cause__, err.__context__):
        if not isinstance(cause, OSError):
            continue
        code, path, reason = os_error_fields(cause)
        if code in FILE_SYSTEM_ADVICE and path:
            folder = os.path.dirname(os.path.abspath(path)) or "."
            return f"cannot write {path}: {reason}; {FILE_SYSTEM_ADVICE[code].format(folder=folder)}."
    return None


def cannot_write(path: str | os.PathLike) -> str | None:
    """Why ``path`` could not be written as a new or replaced file, in one line that says what to do; None where
    it can. It tries: a temporary file in the folder, removed at once, and an existing file opened for update
    (unchanged). Permission bits alone do not say, for root, an immutable folder or a read-only file system."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        return f"cannot write {path}: it is a folder; name a file, for example {path / 'report.html'}."
    if not folder.is_dir():
        return (f"cannot write {path}: the folder {folder} does not exist; create it (mkdir -p {folder}) "
                "or name a file in a folder that exists.")
    try:
        if path.exists():
            with open(path, "r+b"):
                pass
        else:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                pass
    except OSError as err:
        as_path = OSError(err.errno, err.strerror, str(path))
        return file_system_message(as_path) or f"cannot write {path}: {err.strerror}."
    return None


#: Set by Ctrl-C (SIGINT) in a job run under :func:`to_file`; see :func:`stop_if_interrupted`.
_interrupted = threading.Event()


def _on_sigint(signum: int, frame: Any) -> None:
    _interrupted.set()
    raise KeyboardInterrupt


def _unraisable(previous: Callable[[Any], None], args: Any) -> None:
    if isinstance(args.exc_value, KeyboardInterrupt):
        logging.getLogger("bnn_sgmcmc").info("Ctrl-C came inside a callback that cannot raise: stopping at the "
                                             "end of this chunk")
        return
    previous(args)


def stop_if_interrupted() -> None:
    """Raise KeyboardInterrupt again if Ctrl-C came and was swallowed; call it where the job may stop.

    Python raises KeyboardInterrupt wherever the main thread is. Where that is
    a callback that cannot raise (a weakref callback or ``__del__`` that the
    garbage collector runs), Python prints "Exception ignored in ..." and the
    job runs on, while Snakemake waits for it after Ctrl-C: with two jobs
    interrupted at once, one went on sampling in 1 of 12 runs on a loaded CPU.
    """
    if _interrupted.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def _sigint_noted() -> Iterator[None]:
    """Note Ctrl-C for :func:`stop_if_interrupted` (only where Python's own handler is in place, in the
    main thread: a job started with SIGINT ignored keeps ignoring it), and keep a swallowed one out of the log."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _interrupted.clear()
    hook = sys.unraisablehook
    signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = functools.partial(_unraisable, hook)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = hook
        _interrupted.clear()


@contextlib.contextmanager
def to_file(path: str | Path, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send logging and stderr to ``path`` for the duration of a job.

    A user error (bad data, bad config, a diverging chain) is logged as one
    line, also printed to the console (the real stderr, which Snakemake shows),
    and ends the job with exit status 1; any other exception is logged with its
    traceback and raised again. Ctrl-C ends it with one line and exit status
    130, also where Python swallowed the interrupt (:func:`stop_if_interrupted`).
    The log says how long the process ran before the job's code started
    (start-up: Python, imports) and when it finished.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    console = sys.stderr
    with open(path, "a", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(level)
        # Warnings (a checkpoint not used, a set that says nothing) go to the console too; errors are printed below.
        shown = logging.StreamHandler(console)
        shown.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        shown.addFilter(lambda record: record.levelno == logging.WARNING)
        ours = logging.getLogger("bnn_sgmcmc")
        ours.addHandler(shown)
        logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing is noise here
        sys.stderr = fh
        started = process_seconds()
        if started is not None:
            ours.info("start-up: %.2f s from process start to the job's code", started)
        try:
            with _sigint_noted():
                yield ours
            if started is not None:
                ours.info("job done: %.2f s since process start", process_seconds())
        except USER_ERRORS as err:
            ours.error("%s", err)
            print(f"ERROR: {err}", file=console)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            ours.error("interrupted")
            print("Interrupted: rerun the same command to resume from the last checkpoint.", file=console)
            raise SystemExit(130) from None
        except OSError as err:
            message = file_system_message(err)
            if message is None:
                ours.exception("job failed")
                raise
            ours.error("%s", message)
            print(f"ERROR: {message}", file=console)
            raise SystemExit(1) from None
        except Exception:
            # A bug, not bad input: keep the whole traceback in the rule's log too.
            ours.exception("job failed")
            raise
        finally:
            sys.stderr = console
            root.removeHandler(handler)
            ours.removeHandler(shown)
