"""Logging for workflow jobs: everything into the rule's log, warnings and the one-line error on the console too."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from bnn_sgmcmc.errors import USER_ERRORS


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
        code, path, reason = cause.errno, cause.filename, cause.strerror
        if code is None:
            found = re.search(r"name = '([^']*)', errno = (\d+), error message = '([^']*)'", str(cause))
            if found:
                path, code, reason = found.group(1), int(found.group(2)), found.group(3)
        if code in FILE_SYSTEM_ADVICE and path:
            folder = os.path.dirname(os.path.abspath(path)) or "."
            return f"cannot write {path}: {reason}; {FILE_SYSTEM_ADVICE[code].format(folder=folder)}."
    return None


@contextlib.contextmanager
def to_file(path: str | Path, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send logging and stderr to ``path`` for the duration of a job.

    A user error (bad data, bad config, a diverging chain) is logged as one
    line, also printed to the console (the real stderr, which Snakemake shows),
    and ends the job with exit status 1; any other exception is logged with its
    traceback and raised again. The log says how long the process ran before
    the job's code started (start-up: Python, imports) and when it finished.
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
